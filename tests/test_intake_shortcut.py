"""Intake POSTs skip the router and FastAPI's request handling, and answer as if they had not.

The shortcut (app.intake_shortcut) calls an intake endpoint straight from the request
middleware; refusals still come from the app's own exception handlers, GETs still reach the
router, and each request is still counted under its route template.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Router

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from tests.factories import Factory
from tests.test_request_middleware import requests_counted


@pytest.fixture
def router_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths that reached the app's router."""
    calls: list[str] = []
    original = Router.__call__

    async def counted(self: Router, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counted)
    return calls


def _key(factory: Factory, kind: str) -> str:
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/integrations", json={"name": f"via-{kind}", "kind": kind})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _event(key: str) -> dict[str, Any]:
    return {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "disk full", "source": "db-1", "severity": "critical"},
    }


def test_intake_posts_never_reach_the_router(
    factory: Factory, app: FastAPI, router_calls: list[str]
) -> None:
    events_key, am_key = _key(factory, "pagerduty"), _key(factory, "alertmanager")
    router_calls.clear()
    with TestClient(app) as client:
        accepted = client.post("/v2/enqueue", json=_event(events_key))
        batch = client.post(
            f"/ingest/alertmanager/{am_key}", json={"status": "firing", "alerts": []}
        )
        health = client.get("/healthz")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "success"
    assert batch.status_code == 200, batch.text
    assert health.status_code == 200
    assert router_calls == ["/healthz"]


def test_refusals_are_the_apps_problem_answers(
    app: FastAPI, runtime: Runtime, router_calls: list[str]
) -> None:
    limit = runtime.settings.max_request_body_bytes

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused while the body is read
        yield b"x" * (limit + 1)

    with TestClient(app) as client:
        unknown = client.post("/ingest/alertmanager/" + "k" * 40, json={"alerts": []})
        too_large = client.post("/v2/enqueue", content=chunked())
    assert unknown.status_code == 401
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.headers["www-authenticate"] == "Bearer"
    assert "unknown or revoked integration key" in unknown.json()["detail"]
    assert too_large.status_code == 413
    assert too_large.json()["errors"] == [  # PagerDuty's shape, as its other refusals
        f"the body is {limit + 1} bytes or more; at most {limit} are accepted"
    ]
    assert router_calls == []


def test_other_methods_on_an_intake_path_still_reach_the_router(
    app: FastAPI, router_calls: list[str]
) -> None:
    with TestClient(app) as client:
        answer = client.get("/v2/enqueue")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert router_calls == ["/v2/enqueue"]


def test_an_intake_request_is_counted_under_its_route_template(
    factory: Factory, app: FastAPI
) -> None:
    key = _key(factory, "alertmanager")
    template = "/ingest/alertmanager/{key}"
    before = requests_counted("POST", template, 200)
    with TestClient(app) as client:
        answer = client.post(f"/ingest/alertmanager/{key}", json={"status": "firing", "alerts": []})
    assert answer.status_code == 200
    assert requests_counted("POST", template, 200) == before + 1
