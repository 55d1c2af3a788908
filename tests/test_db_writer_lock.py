"""SQLite writers take turns across processes, not only across the threads of one."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from firetower.db import Database, WriterLock
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


def test_a_writer_in_another_process_makes_this_one_wait(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite.writer")
    context = multiprocessing.get_context("spawn")
    held, released_at = context.Event(), context.Value("d", 0.0)
    other = context.Process(target=_hold_then_release, args=(path, held, released_at))
    other.start()
    try:
        assert held.wait(30), "the other process never took the lock"
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
    context = multiprocessing.get_context("spawn")
    held, released_at = context.Event(), context.Value("d", 0.0)
    other = context.Process(target=_hold_then_release, args=(path, held, released_at))
    other.start()
    assert held.wait(30)
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
