"""Many requests at once on a real server must not stall each other.

With a one-connection pool, any database wait on the event loop (rather than in the thread
pool) deadlocks the server: the loop waits for the connection, and the request holding it
waits for the loop. Every request must still succeed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from firetower import db
from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database, make_engine
from firetower.events import unit_of_work
from firetower.jobs import Job, enqueue
from tests.cli_support import live_server, logs_kept_apart


def test_concurrent_requests_share_a_tiny_pool_without_stalling(settings, factory):
    tiny = settings.model_copy(
        update={
            "database_pool_size": 1,
            "database_max_overflow": 0,
            "database_pool_timeout_seconds": 5,
        }
    )
    database = Database(tiny)
    app = create_app(tiny, database=database, start_worker=False, configure_logs=False)
    responder = factory.user(Role.responder)
    factory.incident(title="Search is slow")
    with logs_kept_apart(), live_server(app) as url:
        headers = {"Authorization": f"Bearer {responder.token}"}

        def one(n: int) -> int:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                if n % 4 == 0:
                    return client.post("/api/v1/incidents", json={"title": f"load {n}"}).status_code
                return client.get("/api/v1/incidents").status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(one, range(36)))
    database.dispose()
    assert statuses.count(200) == 27, statuses
    assert statuses.count(201) == 9, statuses


def test_sqlite_writers_of_one_process_queue_instead_of_failing(settings):
    """A write that outlasts SQLite's busy timeout must not make the next writer fail."""
    if not settings.is_sqlite:
        pytest.skip("SQLite only: PostgreSQL writers wait on row locks, not on one file lock")
    engine = make_engine(settings.resolved_database_url)
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=50"))
    database = Database(settings, engine=engine)
    holding = threading.Event()

    def slow_writer() -> None:
        with unit_of_work(database.sessions, None) as session:
            enqueue(session, "slow")
            holding.set()
            time.sleep(0.5)  # ten times the busy timeout

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert holding.wait(30)
    with unit_of_work(database.sessions, None) as session:
        enqueue(session, "second")
    thread.join(30)
    with database.session() as session:
        kinds = sorted(session.scalars(select(Job.kind)))
    database.dispose()
    assert kinds == ["second", "slow"]


def test_a_stuck_sqlite_writer_makes_others_fail_not_hang(settings, monkeypatch):
    """Queueing has a limit: behind a writer that never finishes, the next one gets an error."""
    if not settings.is_sqlite:
        pytest.skip("SQLite only: PostgreSQL writers wait on row locks, not on one file lock")
    monkeypatch.setattr(db, "WRITER_LOCK_WAIT_SECONDS", 0.1)
    engine = make_engine(settings.resolved_database_url)
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=50"))
    database = Database(settings, engine=engine)
    holding, release = threading.Event(), threading.Event()

    def stuck_writer() -> None:
        with unit_of_work(database.sessions, None) as session:
            enqueue(session, "stuck")
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=stuck_writer)
    thread.start()
    try:
        assert holding.wait(30)
        with (
            pytest.raises(OperationalError, match="database is locked"),
            unit_of_work(database.sessions, None) as session,
        ):
            enqueue(session, "second")
    finally:
        release.set()
        thread.join(30)
    with database.session() as session:
        kinds = sorted(session.scalars(select(Job.kind)))
    database.dispose()
    assert kinds == ["stuck"]
