"""A real firetower server and Debian's Chromium for the browser tests.

The server is uvicorn in a background thread on a free port of 127.0.0.1, serving a
migrated SQLite file with the embedded worker running: one backend is enough here, the
HTTP tests cover PostgreSQL. Without /usr/bin/chromium these tests skip, saying so;
under CI=true a missing browser fails the run instead.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from firetower.app import create_app
from firetower.auth import service as auth_service
from firetower.auth.schemas import Role, UserCreate
from firetower.auth.service import Actor
from firetower.catalog import service as catalog_service
from firetower.catalog.schemas import ServiceCreate
from firetower.db import Database
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from firetower.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
SECRET = "browser-test-secret-" + "y" * 40
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SYSTEM = Actor.system("browser tests")
STARTUP_POLLS = 200  # x 0.05 s: how long to wait for uvicorn to listen


@dataclass
class LiveServer:
    url: str
    runtime: Runtime


def _seed(runtime: Runtime) -> None:
    """Two responders and a small catalog, made through the service functions."""
    with runtime.transaction() as session:
        for email in ("ana@example.com", "bo@example.com"):
            auth_service.create_user(
                session,
                SYSTEM,
                UserCreate(email=email, role=Role.responder, password=PASSWORD),
            )
        catalog_service.create_service(
            session, SYSTEM, ServiceCreate(name="payments", tier=1, estimated_users=8000)
        )
        catalog_service.create_service(
            session,
            SYSTEM,
            ServiceCreate(name="checkout", tier=2, estimated_users=20000, depends_on=["payments"]),
        )
        catalog_service.create_service(
            session, SYSTEM, ServiceCreate(name="storefront", depends_on=["checkout"])
        )


def create_admin(runtime: Runtime, email: str = "root@example.com") -> None:
    """An admin who logs in with ``PASSWORD``, made through the service function."""
    with runtime.transaction() as session:
        auth_service.create_user(
            session, SYSTEM, UserCreate(email=email, role=Role.admin, password=PASSWORD)
        )


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(
        env="test",
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
        secret_key=SECRET,
        log_level="warning",
    )
    database = Database(settings)
    upgrade(database.engine)
    database.dispose()
    app = create_app(settings, start_worker=True, configure_logs=False)
    runtime: Runtime = app.state.runtime
    _seed(runtime)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(STARTUP_POLLS):
        if server.started or not thread.is_alive():
            break
        started.wait(0.05)
    if not server.started:
        server.should_exit = True
        thread.join(timeout=10)
        pytest.fail("uvicorn did not start serving the console")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()
        runtime.database.dispose()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if not CHROMIUM.exists():
        message = f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture
def browser(chromium_executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
