"""Group commit: concurrent requests' writes share one transaction, and never one failure.

Every test holds the writer threads inside an operation first (``hold_writers``), queues
operations behind them, then lets go: what was queued by then forms groups. The rows are
real services on SQLite and on PostgreSQL; a fresh session is the judge of what committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from firetower import clock
from firetower.catalog.models import Service
from firetower.db import BOUNDED_WRITES_OPTION, Database
from firetower.events import Event, record, unit_of_work
from firetower.metrics import REGISTRY
from firetower.runtime import (
    MAX_GROUP_OPERATIONS,
    POSTGRES_WRITER_THREADS,
    SQLITE_WRITER_THREADS,
    GroupCommit,
    Runtime,
)
from firetower.settings import Settings

T = TypeVar("T")
WAIT_SECONDS = 20


class Boom(Exception):
    pass


@pytest.fixture
def group(runtime: Runtime) -> Iterator[GroupCommit]:
    """The runtime's group commit, but never pausing the callers' loop (SQLite does): these
    tests hold a writer inside an operation while their loop queues more behind it. The
    pause has its own tests (``test_..._loop_...``)."""
    runtime.group.close()
    runtime.group = GroupCommit(runtime.transaction, writer_threads=writer_count(runtime))
    yield runtime.group
    runtime.group.close()


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT_SECONDS)

    return asyncio.run(bounded())


def writer_count(runtime: Runtime) -> int:
    sqlite = runtime.database.dialect == "sqlite"
    return SQLITE_WRITER_THREADS if sqlite else POSTGRES_WRITER_THREADS


class Held:
    """Keeps every writer thread busy inside an operation until ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.released = threading.Event()
        self.tasks: list[asyncio.Task[str]] = []

    def _hold(self, session: Session) -> str:
        self.entered.release()
        assert self.released.wait(WAIT_SECONDS), "never released"
        return "held"

    async def occupy(self, group: GroupCommit, writers: int) -> None:
        # One at a time: an idle writer takes each, so no writer holds two.
        for _ in range(writers):
            self.tasks.append(asyncio.create_task(group.run(self._hold)))
            assert await asyncio.to_thread(self.entered.acquire, timeout=WAIT_SECONDS)

    async def release(self) -> None:
        self.released.set()
        assert await asyncio.gather(*self.tasks) == ["held"] * len(self.tasks)


async def hold_writers(runtime: Runtime) -> Held:
    held = Held()
    await held.occupy(runtime.group, writer_count(runtime))
    return held


async def queue(
    group: GroupCommit, operations: list[Callable[[Session], Any]], weights: list[int] | None = None
) -> list[asyncio.Task[Any]]:
    """Submit in this order; on return every operation is queued."""
    tasks = [
        asyncio.create_task(group.run(op, weight=(weights[i] if weights else 1)))
        for i, op in enumerate(operations)
    ]
    await asyncio.sleep(0)  # each task runs up to its wait on the writer
    return tasks


@dataclass
class Journal:
    """Which session (so which transaction) ran which operation, in order."""

    entries: list[tuple[Session, str]]

    def insert(self, name: str, *, fail: bool = False) -> Callable[[Session], str]:
        def operation(session: Session) -> str:
            self.entries.append((session, name))
            session.add(Service(name=name, created_at=clock.now()))
            if fail:
                session.flush()  # its row is written in the transaction, then it fails
                raise Boom(name)
            return name

        return operation

    def groups(self) -> list[list[str]]:
        """Operation names per transaction, in the order they ran (first run only)."""
        by_session: dict[int, list[str]] = {}
        for session, name in self.entries:
            by_session.setdefault(id(session), []).append(name)
        return list(by_session.values())


def service_names(runtime: Runtime) -> list[str]:
    with runtime.read() as session:
        return sorted(session.scalars(select(Service.name)))


def commits_of(runtime: Runtime) -> list[Session]:
    commits: list[Session] = []
    event.listen(runtime.database.sessions, "after_commit", commits.append)
    return commits


def retried_groups() -> float:
    return REGISTRY.get_sample_value("firetower_group_commit_retried_total") or 0.0


def test_operations_queued_meanwhile_commit_together_in_one_transaction(
    runtime: Runtime, group: GroupCommit
) -> None:
    journal = Journal([])
    commits = commits_of(runtime)
    names = [f"svc-{n}" for n in range(10)]

    async def main() -> list[str]:
        held = await hold_writers(runtime)
        tasks = await queue(group, [journal.insert(name) for name in names])
        await held.release()
        return await asyncio.gather(*tasks)

    assert run_async(main) == names
    assert journal.groups() == [names]  # one session, in submission order
    assert len(commits) == writer_count(runtime) + 1  # the held operations, then the group
    assert service_names(runtime) == sorted(names)


def test_a_raising_operation_gets_its_exception_and_the_rest_of_its_group_commits(
    runtime: Runtime, group: GroupCommit
) -> None:
    journal = Journal([])
    retried_before = retried_groups()

    async def main() -> list[Any]:
        held = await hold_writers(runtime)
        tasks = await queue(
            group,
            [
                journal.insert("before"),
                journal.insert("doomed", fail=True),
                journal.insert("after"),
            ],
        )
        await held.release()
        return await asyncio.gather(*tasks, return_exceptions=True)

    before, doomed, after = run_async(main)
    assert (before, after) == ("before", "after")
    assert isinstance(doomed, Boom)
    assert str(doomed) == "doomed"
    assert service_names(runtime) == ["after", "before"]  # the failing one's row is gone
    assert journal.groups()[0] == ["before", "doomed"]  # it broke a shared transaction
    assert retried_groups() == retried_before + 1


def test_a_group_whose_commit_fails_is_retried_one_by_one(
    runtime: Runtime, group: GroupCommit
) -> None:
    """Two requests creating one unique name: each alone is fine, together the commit fails."""
    journal = Journal([])
    retried_before = retried_groups()

    async def main() -> list[Any]:
        held = await hold_writers(runtime)
        tasks = await queue(
            group, [journal.insert("checkout"), journal.insert("checkout"), journal.insert("cart")]
        )
        await held.release()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, second, other = run_async(main)
    assert (first, other) == ("checkout", "cart")
    assert isinstance(second, IntegrityError)
    assert service_names(runtime) == ["cart", "checkout"]
    assert journal.groups()[0] == ["checkout", "checkout", "cart"]  # failed at the commit
    assert retried_groups() == retried_before + 1


def test_a_failing_operation_alone_runs_once(runtime: Runtime, group: GroupCommit) -> None:
    journal = Journal([])
    retried_before = retried_groups()

    with pytest.raises(Boom):
        run_async(lambda: group.run(journal.insert("doomed", fail=True)))
    assert len(journal.entries) == 1
    assert service_names(runtime) == []
    assert retried_groups() == retried_before


@dataclass(frozen=True)
class Slowed(Event):
    """Recorded by an operation; its reaction makes the commit come late."""


def test_the_result_is_committed_by_the_time_run_returns(
    runtime: Runtime, group: GroupCommit
) -> None:
    # If an answer left before the commit, the reader would find nothing: the reaction
    # keeps the transaction open a while after the operations ran.
    runtime.bus.react(Slowed, lambda session, _event: threading.Event().wait(0.3))

    def insert_slowly(name: str) -> Callable[[Session], str]:
        def operation(session: Session) -> str:
            session.add(Service(name=name, created_at=clock.now()))
            record(session, Slowed())
            return name

        return operation

    async def run_then_read(name: str) -> list[str]:
        await group.run(insert_slowly(name))
        return service_names(runtime)

    async def main() -> list[list[str]]:
        alone = await run_then_read("alone")
        held = await hold_writers(runtime)
        tasks = [asyncio.create_task(run_then_read(f"grouped-{n}")) for n in range(3)]
        await asyncio.sleep(0)
        await held.release()
        return [alone, *await asyncio.gather(*tasks)]

    seen = run_async(main)
    assert seen[0] == ["alone"]
    for n, names in enumerate(seen[1:]):
        assert f"grouped-{n}" in names


def test_close_commits_what_is_queued_and_stops_the_writers(
    runtime: Runtime, group: GroupCommit
) -> None:
    journal = Journal([])
    names = [f"svc-{n}" for n in range(10)]

    def current_thread(session: Session) -> threading.Thread:
        return threading.current_thread()

    async def main() -> tuple[list[str], list[Any]]:
        held = await hold_writers(runtime)
        tasks = await queue(group, [current_thread, *(journal.insert(name) for name in names)])
        closing = asyncio.create_task(asyncio.to_thread(group.close))
        await asyncio.sleep(0.1)
        assert not closing.done()  # it waits for the held writers and for the queue
        await held.release()
        await closing
        committed_when_closed = service_names(runtime)
        group.close()  # idempotent
        return committed_when_closed, await asyncio.gather(*tasks)

    committed_when_closed, (writer, *results) = run_async(main)
    assert committed_when_closed == sorted(names)
    assert results == names
    assert writer.name.startswith("firetower-group-commit-")
    assert not writer.is_alive()


def test_after_close_an_operation_is_committed_in_its_own_transaction(
    runtime: Runtime, group: GroupCommit
) -> None:
    journal = Journal([])
    group.close()

    async def main() -> list[Any]:
        return await asyncio.gather(
            group.run(journal.insert("one")),
            group.run(journal.insert("two")),
            group.run(journal.insert("three", fail=True)),
            return_exceptions=True,
        )

    one, two, three = run_async(main)
    assert (one, two) == ("one", "two")
    assert isinstance(three, Boom)
    assert service_names(runtime) == ["one", "two"]
    assert len(journal.groups()) == 3  # one transaction each


def test_after_close_operations_run_on_callers_threads_not_writers(group: GroupCommit) -> None:
    def current_thread(session: Session) -> threading.Thread:
        return threading.current_thread()

    async def main() -> tuple[threading.Thread, threading.Thread]:
        before = await group.run(current_thread)
        group.close()
        return before, await group.run(current_thread)

    before, after = run_async(main)
    assert before.name.startswith("firetower-group-commit-")
    assert not before.is_alive()
    assert not after.name.startswith("firetower-group-commit-")


def test_a_group_stops_at_the_weight_and_count_caps(runtime: Runtime, group: GroupCommit) -> None:
    journal = Journal([])
    # The first is taken however heavy; 1 + 1 + 3,000 fit in 5,000, another 3,000 does not.
    weighted = {"heavy": 6_000, "a": 1, "b": 1, "c": 3_000, "d": 3_000}
    many = [f"svc-{n}" for n in range(MAX_GROUP_OPERATIONS + 10)]

    async def main() -> None:
        held = await hold_writers(runtime)
        tasks = await queue(
            group, [journal.insert(name) for name in weighted], list(weighted.values())
        )
        tasks += await queue(group, [journal.insert(name) for name in many])
        await held.release()
        await asyncio.gather(*tasks)

    run_async(main)
    # On PostgreSQL several writers run groups at once: compare the groups, not their order.
    assert sorted(journal.groups()) == sorted(
        [
            ["heavy"],
            ["a", "b", "c"],
            ["d", *many[: MAX_GROUP_OPERATIONS - 1]],
            many[MAX_GROUP_OPERATIONS - 1 :],
        ]
    )


def test_a_cancelled_caller_does_not_undo_or_break_the_group(
    runtime: Runtime, group: GroupCommit
) -> None:
    journal = Journal([])
    loop_errors: list[dict[str, Any]] = []

    async def main() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        held = await hold_writers(runtime)
        gone, kept = await queue(group, [journal.insert("gone"), journal.insert("kept")])
        gone.cancel()
        await held.release()
        result: str = await kept
        await asyncio.sleep(0.05)  # the cancelled one's answer arrives too, and is dropped
        return result

    assert run_async(main) == "kept"
    assert service_names(runtime) == ["gone", "kept"]
    assert loop_errors == []


def test_an_operation_runs_in_its_callers_context(group: GroupCommit) -> None:
    """Its log lines carry the request id bound by the request middleware."""

    def bound_request_id(session: Session) -> Any:
        return structlog.contextvars.get_contextvars().get("request_id")

    async def main() -> Any:
        structlog.contextvars.bind_contextvars(request_id="r-42")
        return await group.run(bound_request_id)

    assert run_async(main) == "r-42"


def test_the_app_closes_the_group_when_its_lifespan_ends(app: FastAPI, runtime: Runtime) -> None:
    def current_thread(session: Session) -> threading.Thread:
        return threading.current_thread()

    with TestClient(app) as client:
        writer = client.portal.call(runtime.group.run, current_thread)
        assert writer.is_alive()
    assert writer.name.startswith("firetower-group-commit-")
    assert not writer.is_alive()


@pytest.mark.parametrize(("processes", "on_postgresql"), [(1, 4), (2, 1), (8, 1)])
def test_on_postgresql_each_of_several_server_processes_keeps_one_writer(
    settings: Settings, database: Database, processes: int, on_postgresql: int
) -> None:
    """A lone process overlaps its round trips with four; several overlap them already, and
    more writers only contend for the same rows. SQLite has one writer whatever the count."""
    told = settings.model_copy(update={"web_processes": processes})
    runtime = Runtime(settings=told, database=database)
    sqlite = database.dialect == "sqlite"
    assert runtime.group.writer_threads == (SQLITE_WRITER_THREADS if sqlite else on_postgresql)


def test_an_operation_that_lost_a_race_on_postgresql_runs_once_more(
    runtime: Runtime, group: GroupCommit
) -> None:
    """A unique violation, deadlock or serialization failure on PostgreSQL means another
    writer got there first: run again, the operation sees its committed work. SQLite has one
    writer, so nothing races there and a failure is the caller's."""
    with runtime.transaction() as session:
        session.add(Service(name="taken", created_at=clock.now()))
    attempts: list[str] = []

    def insert_unless_taken(session: Session) -> str:
        name = "taken" if not attempts else "free"  # the second run sees the first's winner
        attempts.append(name)
        session.add(Service(name=name, created_at=clock.now()))
        session.flush()
        return name

    if runtime.database.dialect == "postgresql":
        assert run_async(lambda: group.run(insert_unless_taken)) == "free"
        assert attempts == ["taken", "free"]
        assert service_names(runtime) == ["free", "taken"]
    else:
        with pytest.raises(IntegrityError):
            run_async(lambda: group.run(insert_unless_taken))
        assert attempts == ["taken"]
        assert service_names(runtime) == ["taken"]


def test_batched_items_that_follow_one_another_go_to_one_call(
    runtime: Runtime, group: GroupCommit
) -> None:
    calls: list[list[str]] = []
    journal = Journal([])

    def add_services(session: Session, items: list[str]) -> list[str]:
        calls.append(list(items))
        session.add_all(Service(name=name, created_at=clock.now()) for name in items)
        return [f"added {name}" for name in items]

    async def main() -> list[str]:
        held = await hold_writers(runtime)
        first = [asyncio.create_task(group.run_batched(add_services, f"a{n}")) for n in range(3)]
        await asyncio.sleep(0)
        between = await queue(group, [journal.insert("plain")])
        last = [asyncio.create_task(group.run_batched(add_services, f"b{n}")) for n in range(2)]
        await asyncio.sleep(0)
        await held.release()
        return await asyncio.gather(*first, *between, *last)

    answers = run_async(main)
    assert answers == ["added a0", "added a1", "added a2", "plain", "added b0", "added b1"]
    assert calls == [["a0", "a1", "a2"], ["b0", "b1"]]  # the plain operation ran in between
    assert service_names(runtime) == sorted(["a0", "a1", "a2", "plain", "b0", "b1"])


def test_a_failing_batch_runs_each_item_again_alone(runtime: Runtime, group: GroupCommit) -> None:
    calls: list[list[str]] = []

    def add_services(session: Session, items: list[str]) -> list[str]:
        calls.append(list(items))
        if "bad" in items and len(items) > 1:
            raise Boom("together")
        session.add_all(Service(name=name, created_at=clock.now()) for name in items)
        return list(items)

    async def main() -> list[str]:
        held = await hold_writers(runtime)
        tasks = [
            asyncio.create_task(group.run_batched(add_services, name)) for name in ("x", "bad", "y")
        ]
        await asyncio.sleep(0)
        await held.release()
        return await asyncio.gather(*tasks)

    assert run_async(main) == ["x", "bad", "y"]
    assert calls == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]
    assert service_names(runtime) == ["bad", "x", "y"]


@contextlib.asynccontextmanager
async def ticking(ticks: list[float]) -> AsyncIterator[None]:
    """A task on the running loop that notes the time every 5 ms while the block runs."""

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    try:
        yield
    finally:
        ticker.cancel()


def test_on_sqlite_the_callers_loop_waits_while_its_group_commits(runtime: Runtime) -> None:
    """The write turn is held only as long as the work in it takes: the loop, which would
    take the GIL from the writer, stays parked meanwhile. PostgreSQL has no such turn."""

    async def main() -> int:
        ticks: list[float] = []

        def operation(session: Session) -> int:
            before = len(ticks)
            time.sleep(0.2)
            return len(ticks) - before

        async with ticking(ticks):
            return await runtime.group.run(operation)

    ticks_during_the_operation = run_async(main)
    if runtime.database.dialect == "sqlite":
        assert ticks_during_the_operation == 0
    else:
        assert ticks_during_the_operation > 0


def _hold_the_loop_until_begun(order: list[str], seconds: float) -> None:
    """Block the running loop, as a long callback would, until the group's operation has
    begun or ``seconds`` have passed; then note that the loop is free."""
    deadline = time.monotonic() + seconds
    while "begun" not in order and time.monotonic() < deadline:
        time.sleep(0.005)
    order.append("loop free")


def test_on_sqlite_a_group_begins_once_its_loop_has_parked(runtime: Runtime) -> None:
    """A loop parks when its current callback is done; begun before, the transaction would
    take turns at the GIL with that callback. PostgreSQL's groups begin at once, with the
    loop still held (however long its writer thread takes to begin, on a busy machine)."""
    order: list[str] = []
    sqlite = runtime.database.dialect == "sqlite"

    async def main() -> None:
        committed = asyncio.create_task(runtime.group.run(lambda session: order.append("begun")))
        await asyncio.sleep(0)  # queued: the writer takes the turn and asks the loop to park
        if sqlite:
            time.sleep(0.03)  # this callback holds the loop meanwhile, as parsing a body would
            order.append("loop free")
        else:
            _hold_the_loop_until_begun(order, seconds=10)
        await committed

    run_async(main)
    assert order == (["loop free", "begun"] if sqlite else ["begun", "loop free"])


def test_a_group_waits_for_a_busy_loop_to_park_only_so_long(runtime: Runtime) -> None:
    """A loop that does not get to park (a callback that runs long) does not hold the group
    back: past ``LOOP_PARK_WAIT_SECONDS`` it begins without it. The loop is held until the
    operation has begun, or for ten seconds should the group wait for it."""
    order: list[str] = []

    async def main() -> None:
        committed = asyncio.create_task(runtime.group.run(lambda session: order.append("begun")))
        await asyncio.sleep(0)
        _hold_the_loop_until_begun(order, seconds=10)
        await committed

    run_async(main)
    assert order == ["begun", "loop free"]


def test_on_sqlite_the_loop_resumes_only_once_the_write_turn_is_given_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken first, the loop would take the GIL from the writer, which still holds the turn
    that every writer of every process waits for."""
    lock = runtime.database.writer_lock
    if lock is None:
        pytest.skip("PostgreSQL has no write turn")
    ticks: list[float] = []
    ticks_while_giving_back: list[int] = []
    give_back = lock.release

    def release() -> None:
        if threading.current_thread().name.startswith("firetower-group-commit"):
            before = len(ticks)
            time.sleep(0.1)  # a resumed loop would tick about twenty times meanwhile
            ticks_while_giving_back.append(len(ticks) - before)
        give_back()

    monkeypatch.setattr(lock, "release", release)

    async def main() -> None:
        async with ticking(ticks):
            await runtime.group.run(lambda session: None)
            await asyncio.sleep(0.2)  # ticking on, past the giving back

    run_async(main)
    assert ticks_while_giving_back, "the group commit never gave the turn back"
    assert ticks_while_giving_back[-1] == 0, ticks_while_giving_back  # the last: the turn itself


def test_an_operation_that_waits_for_its_loop_is_not_stuck(runtime: Runtime) -> None:
    """No operation should, but one that waits for its caller's loop gets it back within
    ``LOOP_PAUSE_LIMIT_SECONDS`` instead of waiting forever."""

    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def answer() -> str:
            return "from the loop"

        def operation(session: Session) -> str:
            return asyncio.run_coroutine_threadsafe(answer(), loop).result(WAIT_SECONDS)

        return await runtime.group.run(operation)

    assert run_async(main) == "from the loop"


def test_on_sqlite_what_queues_while_the_writer_waits_for_the_turn_joins_its_group(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another writer holds the turn, requests go on queueing: the group is taken once
    the turn is held, so they commit with the first one instead of waiting for a turn more."""
    lock = runtime.database.writer_lock
    if lock is None:
        pytest.skip("PostgreSQL has no write turn")
    writer_waits = threading.Event()
    take_turn = lock.acquire

    def acquire(timeout: float = -1) -> bool:
        if threading.current_thread().name.startswith("firetower-group-commit"):
            writer_waits.set()
        return take_turn(timeout)

    monkeypatch.setattr(lock, "acquire", acquire)
    transactions: list[object] = []

    def operation(session: Session) -> None:
        session.connection()  # begun
        transactions.append(session.get_transaction())

    async def main() -> None:
        assert lock.acquire()  # another writer's turn
        try:
            first = asyncio.create_task(runtime.group.run(operation))
            while not writer_waits.is_set():
                await asyncio.sleep(0.01)
            later = [asyncio.create_task(runtime.group.run(operation)) for _ in range(2)]
            await asyncio.sleep(0.05)  # queued behind the waiting writer
        finally:
            lock.release()
        await asyncio.gather(first, *later)

    run_async(main)
    assert len(transactions) == 3
    assert all(transaction is transactions[0] for transaction in transactions)


def test_a_group_commits_in_a_bounded_write_session(runtime: Runtime) -> None:
    """A group is bounded (``MAX_GROUP_WEIGHT``), so on SQLite its statement journals stay in
    memory (``test_db_writer_lock``); on PostgreSQL the option changes nothing."""

    def temp_store(session: Session) -> tuple[bool, int | None]:
        # the database's engine itself: intake's caches are per engine
        assert session.get_bind() is runtime.database.engine
        connection = session.connection()
        bounded = bool(connection.get_execution_options().get(BOUNDED_WRITES_OPTION))
        if connection.dialect.name != "sqlite":
            return bounded, None
        return bounded, connection.exec_driver_sql("PRAGMA temp_store").scalar_one()

    assert run_async(lambda: runtime.group.run(temp_store)) == (
        True,
        2 if runtime.database.dialect == "sqlite" else None,  # 2: MEMORY
    )
    with unit_of_work(runtime.database.sessions, None) as session:
        assert temp_store(session) == (False, 0 if runtime.database.dialect == "sqlite" else None)
