"""The server-wide Prometheus URL (FIRETOWER_PROMETHEUS_URL) stands in for an SLO's own."""

from __future__ import annotations

from fastapi.testclient import TestClient

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.settings import Settings
from tests.factories import Factory
from tests.test_slos_import import SLOTH


def test_without_any_prometheus_url_an_import_is_refused_naming_it(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments")
    answer = responder.post("/api/v1/slos/import", json={"content": SLOTH})
    assert answer.status_code == 422
    assert answer.json()["field"] == "prometheus_url"
    assert responder.get("/api/v1/slos").json() == []


def test_the_setting_lets_slos_name_no_prometheus(
    factory: Factory, settings: Settings, database: Database
) -> None:
    factory.service("payments")
    configured = settings.model_copy(update={"prometheus_url": "http://127.0.0.1:9/"})
    same_database = Database(configured)  # sessions carry the settings they were made with
    app = create_app(configured, database=same_database, start_worker=False, configure_logs=False)
    with TestClient(app) as client:
        responder = factory.user(Role.responder)
        headers = {"authorization": f"Bearer {responder.token}"}
        answer = client.post("/api/v1/slos/import", json={"content": SLOTH}, headers=headers)
        assert answer.status_code == 200, answer.text
        [slo, *_] = client.get("/api/v1/slos", headers=headers).json()
        assert slo["sli"].get("url") in (None, "")
    same_database.engine.dispose()


def test_a_prometheus_url_that_is_not_http_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="prometheus_url"):
        Settings(prometheus_url="ftp://prometheus:9090")
