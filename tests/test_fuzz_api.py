"""Fuzz the whole API from its own OpenAPI: no input gets a 5xx, every answer fits the schema.

Runs on SQLite only: it exercises validation and error mapping, which do not depend on the
backend, and the PostgreSQL half would double the suite's slowest test for little more.
The backend-specific refusals (NUL in text, out-of-range ids) have their own tests on both
backends in test_incidents_api.py and test_api_contract.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.settings import Settings
from tests.conftest import SECRET
from tests.factories import Factory

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_app(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    home = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, home / "firetower.db")
    fuzz_settings = Settings(
        env="test",
        home=home,
        database_url=f"sqlite:///{home / 'firetower.db'}",
        secret_key=SECRET,
        embedded_worker=False,
    )
    database = Database(fuzz_settings)
    app = create_app(fuzz_settings, database=database, start_worker=False, configure_logs=False)
    with TestClient(app) as client:
        factory = Factory(app.state.runtime, client)
        admin = factory.user(Role.admin, email="fuzz-admin@example.com")
        # Something to find: fuzzed references sometimes hit real rows.
        factory.service("api", tier=1, estimated_users=100)
        factory.incident(admin.actor, title="seed", services=["api"])
        factory.incident(admin.actor, title="seed 2")
        yield app, admin.headers
    database.dispose()


def test_api_never_fails_and_keeps_to_its_schema(
    fuzz_app: tuple[FastAPI, dict[str, str]],
) -> None:
    """Each operation gets a few generated requests as an admin (so auth lets them through).

    Operations are driven one by one with Hypothesis (schemathesis's pytest loader does not
    work with this pytest); every failure is collected so one run reports them all.
    """
    app, headers = fuzz_app
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        excluded = [positive_data_acceptance]
        if operation.path == "/readyz":
            # 503 is how readiness says "no worker heartbeat" (none runs here); its shape is
            # still checked against the schema, and test_api_contract checks its meaning.
            excluded.append(not_a_server_error)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            # Schema-valid input may still be refused on meaning (a detection time in the
            # future, an unknown service, a transition not allowed): 4xx there is correct, so
            # the "positive data must be accepted" check is off; every other check runs.
            case.call_and_validate(headers=headers, excluded_checks=excluded)  # noqa: B023 - run at once

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation at once
            failures.append(f"{operation.label}:\n{exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
