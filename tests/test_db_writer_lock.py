"""SQLite writers take turns across processes, not only across the threads of one, leave
copying the write-ahead log to a checkpointer beside them, and a bounded transaction keeps
its statement journals out of temporary files."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from firetower import db
from firetower.db import Database, WriterLock
from firetower.events import unit_of_work
from firetower.settings import Settings
from tests.conftest import SECRET

HOLD_SECONDS = 0.3


def _hold_then_release(path: str, held: object, released_at: object) -> None:
    lock = WriterLock(path)
    lock.acquire()
    held.set()  # type: ignore[attr-defined]
    time.sleep(HOLD_SECONDS)
    released_at.value = time.monotonic()  # type: ignore[attr-defined]
    lock.release()


def _holder(path: str) -> tuple[Any, Any]:
    """Another process, holding the lock at ``path`` once this returns; and where it will
    note when it let go."""
    context = multiprocessing.get_context("spawn")
    held, released_at = context.Event(), context.Value("d", 0.0)
    other = context.Process(target=_hold_then_release, args=(path, held, released_at))
    other.start()
    assert held.wait(30), "the other process never took the lock"
    return other, released_at


def test_a_writer_in_another_process_makes_this_one_wait(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite.writer")
    other, released_at = _holder(path)
    try:
        lock = WriterLock(path)
        assert lock.acquire(timeout=30)
        acquired_at = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
        lock.release()
    finally:
        other.join(30)
    assert released_at.value > 0
    assert acquired_at >= released_at.value


def test_a_process_that_dies_holding_the_lock_frees_it(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite.writer")
    other, released_at = _holder(path)
    other.kill()
    other.join(30)
    lock = WriterLock(path)
    assert lock.acquire(timeout=5)
    lock.release()
    assert released_at.value == 0.0  # it never released: the kernel did


def test_two_databases_on_one_file_take_turns(tmp_path: Path) -> None:
    """Two Database objects open the lock file separately, as two processes would."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = (
        Database(Settings(env="test", database_url=url, secret_key=SECRET)) for _ in range(2)
    )
    lock_one = first.sessions.kw["info"]["firetower.writer_lock"]
    lock_two = second.sessions.kw["info"]["firetower.writer_lock"]
    assert lock_one.path == lock_two.path == str(tmp_path / "shared.db") + ".writer"
    order: list[str] = []
    lock_one.acquire()
    waiter = threading.Thread(
        target=lambda: (lock_two.acquire(), order.append("second"), lock_two.release())
    )
    waiter.start()
    waiter.join(HOLD_SECONDS)
    assert waiter.is_alive(), "the second database wrote while the first held the turn"
    order.append("first done")
    lock_one.release()
    waiter.join(30)
    assert order == ["first done", "second"]
    first.engine.dispose()
    second.engine.dispose()


def test_the_holding_thread_may_enter_again(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "db.writer"))
    assert lock.acquire()
    assert lock.acquire(timeout=1)  # re-entered, e.g. a unit of work inside another
    lock.release()
    other = WriterLock(str(tmp_path / "db.writer"))
    taken = threading.Event()
    waiter = threading.Thread(target=lambda: (other.acquire(), taken.set(), other.release()))
    waiter.start()
    assert not taken.wait(HOLD_SECONDS), "the outer hold ended at the inner release"
    lock.release()
    assert taken.wait(30)
    waiter.join(30)


def test_an_in_memory_database_has_no_lock_file() -> None:
    database = Database(Settings(env="test", database_url="sqlite://", secret_key=SECRET))
    assert database.sessions.kw["info"]["firetower.writer_lock"].path is None


def _write_megabytes(database: Database, transactions: int) -> None:
    with unit_of_work(database.sessions, None) as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS filler (body BLOB)"))
    for _ in range(transactions):
        with unit_of_work(database.sessions, None) as session:
            session.execute(
                text("INSERT INTO filler (body) VALUES (:body)"),
                [{"body": os.urandom(4096)} for _ in range(256)],
            )


def _log_pages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_commits_leave_the_log_to_the_checkpointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint would copy the log inside a commit every 1,000 pages; here
    the log grows until a checkpointer pass copies it and starts it over."""
    monkeypatch.setattr(db, "WAL_RESTART_FRAMES", 4_096)  # 16 MiB to write, not 128
    path = tmp_path / "busy.db"
    database = Database(Settings(env="test", database_url=f"sqlite:///{path}", secret_key=SECRET))
    assert database.checkpointer is not None
    lock = database.sessions.kw["info"]["firetower.writer_lock"]
    lock.first_write = None  # no thread: this test runs the passes itself
    _write_megabytes(database, transactions=12)  # 12 MiB, about 3,100 pages
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 3_000 * 4096, "a commit checkpointed the log"

    _write_megabytes(database, transactions=6)  # past WAL_RESTART_FRAMES
    pages, copied = database.checkpointer.checkpoint()
    assert pages >= db.WAL_RESTART_FRAMES
    assert copied == pages  # every committed page is in the database file now
    _write_megabytes(database, transactions=1)
    assert _log_pages(path) < 400, "the log did not start over"
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM filler")).scalar_one()
    assert rows == 19 * 256
    database.dispose()


def test_a_writing_process_runs_one_checkpointer_until_disposed(tmp_path: Path) -> None:
    database = Database(
        Settings(env="test", database_url=f"sqlite:///{tmp_path / 'x.db'}", secret_key=SECRET)
    )

    def running() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "firetower-wal-checkpoint"]

    before = len(running())
    _write_megabytes(database, transactions=2)
    assert len(running()) == before + 1
    database.dispose()
    assert len(running()) == before


def _open_temp_files() -> list[str]:
    """SQLite's temporary files that this process holds open (unlinked ``etilqs_`` files)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # listdir's own, closed by now
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [name for name in names if "etilqs_" in name]


def _journal_heavy_writes(session: Session) -> list[str]:
    """Statements that may fail half-way, each changing pages earlier ones changed (as
    intake's INSERTs of 100 alerts do); the temporary files open at the end."""
    for _ in range(3):
        session.execute(
            text("INSERT INTO filler (body) VALUES (:body)"),
            [{"body": os.urandom(1024)} for _ in range(200)],
        )
        session.execute(
            text("INSERT INTO filler (body) SELECT randomblob(1024) || body FROM filler")
        )
    return _open_temp_files()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_bounded_writes_keep_their_statement_journal_in_memory(tmp_path: Path) -> None:
    """Past 64 KiB SQLite spilled a statement journal to a temporary file, whose writes,
    creation and deletion fell inside the write turn. The group commit's transactions are
    bounded and keep it in memory; others, which may journal a whole table, keep a file."""
    database = Database(
        Settings(env="test", database_url=f"sqlite:///{tmp_path / 'x.db'}", secret_key=SECRET)
    )
    with unit_of_work(database.sessions, None) as session:
        session.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB UNIQUE)"))
    with unit_of_work(database.sessions, None) as session:
        db.begin_bounded_writes(session)
        bounded_connection = session.connection().connection.dbapi_connection
        assert _journal_heavy_writes(session) == []
    with unit_of_work(database.sessions, None) as session:
        # the same connection, back to SQLite's default
        assert session.connection().connection.dbapi_connection is bounded_connection
        assert len(_journal_heavy_writes(session)) == 1
    with database.session() as session:
        assert session.execute(text("SELECT count(*) FROM filler")).scalar_one() == 25_200
    database.dispose()
