"""Shared fixtures: the same suite runs on SQLite and on PostgreSQL.

Every test that uses ``database`` runs once per backend. The PostgreSQL runs need
FIRETOWER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/postgres); without
it they skip with that message, and under CI=true a missing URL fails the run instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from firetower.app import create_app
from firetower.db import Base, Database
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from firetower.settings import Settings
from tests.cli_support import live_server, logs_kept_apart
from tests.factories import Factory

POSTGRES_ENV = "FIRETOWER_TEST_POSTGRES_URL"
SECRET = "test-secret-" + "x" * 40


def _postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true but {POSTGRES_ENV} is not set: the PostgreSQL half of the suite must run"
        )
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (cheaper than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    settings = Settings(env="test", database_url=f"sqlite:///{path}", secret_key=SECRET)
    database = Database(settings)
    upgrade(database.engine)
    database.dispose()
    return path


@contextmanager
def _scratch_postgres_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database beside the admin URL's, dropped afterwards; its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    admin_url = _postgres_admin_url()
    if not admin_url:
        pytest.skip(
            f"PostgreSQL tests skipped: set {POSTGRES_ENV}="
            "postgresql+psycopg://USER@HOST/DB to run them"
        )
    with _scratch_postgres_database(admin_url, f"firetower_test_{worker_id}_{os.getpid()}") as url:
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables yet, on each backend, for migrating step by step."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'unmigrated.db'}"
        database = Database(Settings(env="test", home=tmp_path, database_url=url))
        yield database
        database.dispose()
        return
    shared_url = request.getfixturevalue("postgres_url")  # skips without PostgreSQL
    name = f"{make_url(shared_url).database}_unmigrated"
    with _scratch_postgres_database(shared_url, name) as url:
        database = Database(Settings(env="test", home=tmp_path, database_url=url))
        yield database
        database.dispose()


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The xdist worker name, or 'main' without xdist."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    # The generation counters stay: migrations made them, and intake reads them (TRUNCATE
    # fires no trigger, but every test opens a new engine, so no process cache outlives it).
    kept = {"intake_generations"}
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name not in kept)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "firetower.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        _truncate_all(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        home=tmp_path / "home",
        database_url=database_url,
        secret_key=SECRET,
        embedded_worker=False,
        job_backoff_base_seconds=0.01,
        job_backoff_max_seconds=0.05,
        job_lease_seconds=30,
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database=database, start_worker=False, configure_logs=False)


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    """The app served on a loopback port, for the CLI and curl examples, with its request
    logs kept out of the test's output."""
    with logs_kept_apart(), live_server(app) as url:
        yield url


@pytest.fixture
def factory(runtime: Runtime, client: TestClient) -> Factory:
    return Factory(runtime, client)
