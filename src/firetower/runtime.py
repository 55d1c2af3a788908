"""What one firetower process holds: settings, database, event bus, job registry and the
group-commit writer that lets concurrent requests share one transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from firetower import db
from firetower.db import Database, WriterLock
from firetower.events import EventBus, unit_of_work
from firetower.jobs import CLEANUP_KIND, JobRegistry, register_maintenance
from firetower.metrics import GROUP_COMMIT_OPERATIONS, GROUP_COMMIT_RETRIED
from firetower.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

MAX_GROUP_OPERATIONS = 256
MAX_GROUP_WEIGHT = 5_000
"""A group stops growing at this many alerts, so one commit stays short (the first
operation of a group is always taken, however heavy)."""
SQLITE_WRITER_THREADS = 1  # SQLite has one writer anyway
POSTGRES_WRITER_THREADS = 4
"""Group commits a lone server process keeps in flight on PostgreSQL, so that its round
trips to the database overlap. Each of several processes (``serve --processes``) keeps one:
the processes overlap their round trips already, and more transactions at once only
contend for the same rows (an integration's, a service's open incident) with smaller
groups. Measured with two processes: four threads each took Alertmanager batches at the
same rate as one each with twice the p99, and half as many Events v2 events a second."""


def postgres_writer_threads(processes: int) -> int:
    """The group commit's writer threads in one of ``processes`` server processes."""
    return POSTGRES_WRITER_THREADS if processes == 1 else 1


LOOP_PAUSE_LIMIT_SECONDS = 1.0
"""The longest a caller's event loop stays paused for one SQLite group commit."""
LOOP_PARK_WAIT_SECONDS = 0.05
"""The longest a SQLite group commit waits for its callers' loops to pause before it begins."""


@dataclass(eq=False, slots=True)
class _Submitted:
    """One queued operation and where its outcome goes."""

    operation: Callable[[Session], Any]
    weight: int
    context: contextvars.Context  # the submitting request's (its request_id in the logs)
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    batch: Callable[[Session, list[Any]], list[Any]] | None = None
    item: Any = None

    def run(self, session: Session) -> Any:
        return self.context.run(self.operation, session)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        # A closed loop (RuntimeError) means nobody is waiting for this answer any more.
        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, self.future, result, error)


def _run_group(session: Session, group: list[_Submitted]) -> list[Any]:
    """Each operation's result, in order; a run of batched items goes to one call."""
    results: list[Any] = []
    start = 0
    while start < len(group):
        first = group[start]
        if first.batch is None:
            results.append(first.run(session))
            start += 1
            continue
        end = start + 1
        while end < len(group) and group[end].batch is first.batch:
            end += 1
        items = [submitted.item for submitted in group[start:end]]
        answers = first.context.run(first.batch, session, items)
        if len(answers) != len(items):
            raise RuntimeError(f"{first.batch!r} answered {len(answers)} of {len(items)} items")
        results.extend(answers)
        start = end
    return results


RACE_SQLSTATES = frozenset({"40P01", "40001", "23505"})
"""PostgreSQL's deadlock, serialization failure and unique violation: what a concurrent
writer causes (two requests locking services crosswise, inserting one new alert). Run once
more, the operation sees the other's committed work and usually succeeds."""


def _lost_a_race(error: BaseException) -> bool:
    return getattr(getattr(error, "orig", None), "sqlstate", None) in RACE_SQLSTATES


def run_once_more_if_raced(
    transaction: Callable[[], AbstractContextManager[Session]],
    operation: Callable[[Session], T],
) -> T:
    """Run ``operation`` in a ``transaction``, and once more in a new one if it lost a race
    (``RACE_SQLSTATES``): the second run sees what the other writer committed. Group commit
    runs a request alone this way, and ``Runtime.write`` a person's change."""
    try:
        with transaction() as session:
            return operation(session)
    except DBAPIError as error:
        if not _lost_a_race(error):
            raise
        log.warning(
            "operation lost a race, run once more",
            sqlstate=getattr(error.orig, "sqlstate", None),
            error=str(error.orig)[:200],
        )
    with transaction() as session:
        return operation(session)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the client went away; what the operation did stands
        if error is not None:
            log.warning(
                "operation failed after its caller went away",
                error=type(error).__name__,
                detail=str(error)[:500],
            )
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # a future refuses it, and would never settle
        future.set_exception(RuntimeError(f"operation raised {error!r}"))
    else:
        future.set_exception(error)


def _park(arrived: threading.Event, resume: threading.Event) -> None:
    """Run by a paused loop: tell the group commit, then wait (and the loop with it) until
    its commit is done."""
    arrived.set()
    resume.wait(LOOP_PAUSE_LIMIT_SECONDS)


class GroupCommit:
    """Runs the operations of concurrent requests one after another in ONE transaction.

    Per request, a transaction's fixed cost (BEGIN, the commit's fsync, SQLite's writer
    lock, a pool checkout) dwarfs a small write such as one alert; sharing it among the
    requests waiting at the same moment multiplies throughput without delaying anyone: a
    writer thread takes whatever is queued when it is free, and never waits for more.

    An operation gets the group's session and must only work through it: it must not
    commit, roll back or open another transaction, nor wait for its caller's event loop
    (on SQLite the loop is paused while the group commits); and it may run twice (if its
    group fails, every operation of the group runs again alone, so that one failing
    request never fails another), so it must have no effect outside the database.

    Its caller is answered only after the commit succeeded: a response means committed.

    After ``close()``, ``run`` still works but runs each operation alone in its own
    transaction on a worker thread (as before group commit): nothing is refused during
    shutdown, and an app whose lifespan starts again keeps working.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Session]],
        *,
        writer_threads: int,
        writer_lock: WriterLock | None = None,
    ) -> None:
        self._transaction = transaction
        self.writer_threads = writer_threads
        """How many transactions it keeps in flight at most (threads, started on first use)."""
        self._writer_lock = writer_lock
        self._pending: deque[_Submitted] = deque()
        self._wakeup = threading.Condition()
        self._writers: list[threading.Thread] = []
        self._closed = False

    async def run(self, operation: Callable[[Session], T], *, weight: int = 1) -> T:
        """``operation(session)`` committed in a group; its result, or its own exception.

        ``weight`` is how many alerts the operation carries: it bounds a group's size.
        """
        return await self._submit(operation, weight)

    async def run_batched(self, batch: Callable[[Session, list[Any]], list[T]], item: Any) -> T:
        """``batch(session, items)``'s result for ``item``, committed in a group.

        Items submitted with the same ``batch`` function that follow one another in a group
        go to ONE call, which returns a result per item in order: requests that each carry
        a single event share its statements, not only the transaction. ``batch`` must
        answer a refusal as a result, not raise it (a raise runs each item again alone, in
        ``batch(session, [item])``). It runs in the first item's request context.
        """
        return await self._submit(lambda session: batch(session, [item])[0], 1, batch, item)

    async def _submit(
        self,
        operation: Callable[[Session], Any],
        weight: int,
        batch: Callable[[Session, list[Any]], list[Any]] | None = None,
        item: Any = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        submitted = _Submitted(
            operation, weight, contextvars.copy_context(), loop, future, batch, item
        )
        with self._wakeup:
            closed = self._closed
            if not closed:
                if not self._writers:
                    self._start_writers()
                self._pending.append(submitted)
                self._wakeup.notify()
        if closed:
            return await asyncio.to_thread(self._alone, operation)
        return await future

    def close(self) -> None:
        """Run what is queued, then stop the writer threads. Idempotent."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
            writers = list(self._writers)
        for writer in writers:
            if writer is not threading.current_thread():
                writer.join()

    def _start_writers(self) -> None:
        for number in range(self.writer_threads):
            writer = threading.Thread(
                target=self._write, name=f"firetower-group-commit-{number}", daemon=True
            )
            writer.start()
            self._writers.append(writer)

    def _write(self) -> None:
        while self._wait_for_pending():
            if self._writer_lock is not None:
                self._commit_with_loops_paused(self._writer_lock)
            elif (group := self._take_group()) is not None:  # else another writer took it
                self._commit(group)

    def _wait_for_pending(self) -> bool:
        """Wait until an operation is queued; False once closed and drained."""
        with self._wakeup:
            while not self._pending:
                if self._closed:
                    return False
                self._wakeup.wait()
            return True

    def _commit_with_loops_paused(self, writer_lock: WriterLock) -> None:
        """Commit what is queued holding SQLite's write turn, with the requests' event loops
        paused.

        The group is taken once the turn is held and the loops are parked, not before: the
        requests that queued while this writer waited for the other processes' turns (and
        the one a loop was parsing when asked to park) join it instead of waiting for the
        next turn. Measured with two processes, groups grew from 3 to 7 operations.

        Every writer of every process waits while one holds the turn, so the holder must not
        wait too. Its own process's event loop is its rival: both need the GIL, which Python
        hands over every few milliseconds, and which each SQLite call lets go. With the loop
        parked until the commit is done, the turn is held only as long as the work in it
        takes; other processes take in requests meanwhile. (A loop waits at most
        ``LOOP_PAUSE_LIMIT_SECONDS``, should an operation ever need it.)

        A loop parks once the callback it runs (a request's parsing, say) is done; the
        transaction begins only then (or after ``LOOP_PARK_WAIT_SECONDS``): begun at once, it
        took turns at the GIL with that callback, and both took longer
        (docs/group-commit.md has the measurements).
        """
        if not writer_lock.acquire(timeout=db.WRITER_LOCK_WAIT_SECONDS):
            group = self._take_group()
            if group is not None:
                self._commit(group)  # past the wait: as a transaction would, go on without it
            return
        resume = threading.Event()
        group = None
        try:
            parked: list[threading.Event] = []
            with self._wakeup:
                loops = {submitted.loop for submitted in self._pending}
            for loop in loops:
                arrived = threading.Event()
                with suppress(RuntimeError):  # a closed loop: nobody to pause
                    loop.call_soon_threadsafe(_park, arrived, resume)
                    parked.append(arrived)
            deadline = time.monotonic() + LOOP_PARK_WAIT_SECONDS
            for arrived in parked:
                arrived.wait(max(0.0, deadline - time.monotonic()))
            group = self._take_group()  # what was queued meanwhile too
            if group is not None:
                self._commit(group)
        finally:
            try:
                writer_lock.release()  # first: a loop woken earlier takes the GIL from it
            finally:
                resume.set()

    def _take_group(self) -> list[_Submitted] | None:
        """The first queued operation and what else is queued already, up to the caps;
        None if nothing is queued. It never waits (``_wait_for_pending`` does)."""
        with self._wakeup:
            if not self._pending:
                return None
            first = self._pending.popleft()
            group, weight = [first], first.weight
            pending = self._pending
            while (
                pending
                and len(group) < MAX_GROUP_OPERATIONS
                and weight + pending[0].weight <= MAX_GROUP_WEIGHT
            ):
                following = pending.popleft()
                group.append(following)
                weight += following.weight
            return group

    def _commit(self, group: list[_Submitted]) -> None:
        GROUP_COMMIT_OPERATIONS.observe(len(group))
        if len(group) == 1:
            self._commit_alone(group[0])
            return
        try:
            with self._transaction() as session:
                results = _run_group(session, group)
        # Anything, even an operation's SystemExit, must still answer every caller.
        except BaseException as error:
            # Rolled back: which operation broke the group (maybe only together with an
            # earlier one, as two inserts of one unique name) is known only by running
            # each again alone.
            GROUP_COMMIT_RETRIED.inc()
            log.warning(
                "group commit failed; running its operations one by one",
                operations=len(group),
                error=type(error).__name__,
                detail=str(error)[:500],
            )
            for submitted in group:
                self._commit_alone(submitted)
            return
        for submitted, result in zip(group, results, strict=True):
            submitted.settle(result=result)

    def _commit_alone(self, submitted: _Submitted) -> None:
        try:
            result = run_once_more_if_raced(self._transaction, submitted.run)
        except BaseException as error:  # the caller's own failure, raised in its request
            submitted.settle(error=error)
        else:
            submitted.settle(result=result)

    def _alone(self, operation: Callable[[Session], T]) -> T:
        with self._transaction() as session:
            return operation(session)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    bus: EventBus = field(default_factory=EventBus)
    jobs: JobRegistry = field(default_factory=JobRegistry)
    group: GroupCommit = field(init=False, repr=False, compare=False)
    """Shares one transaction among concurrent requests' writes (see ``GroupCommit``)."""

    def __post_init__(self) -> None:
        if CLEANUP_KIND not in self.jobs.handlers:
            register_maintenance(self.jobs, keep_succeeded_days=self.settings.job_retention_days)
        writers = (
            SQLITE_WRITER_THREADS
            if self.database.dialect == "sqlite"
            else postgres_writer_threads(self.settings.web_processes)
        )
        self.group = GroupCommit(
            self._group_transaction, writer_threads=writers, writer_lock=self.database.writer_lock
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One operation, one transaction, events handled on commit."""
        with unit_of_work(self.database.sessions, self.bus) as session:
            yield session

    def write(self, operation: Callable[[Session], T]) -> T:
        """A person's operation in one transaction (``transaction``), run once more if it
        lost a race to a concurrent writer (``RACE_SQLSTATES``: PostgreSQL ended it as a
        deadlock or a serialization failure, or a row it inserted was inserted first).

        A merge waits for a group of intake requests that routes to the merged incident (for
        its service) and then resolves one of its alerts (which the merge holds); a
        declaration on two services holds one and waits for the other, which a group's first
        request routed to while its second waits for the first service. Each request keeps
        the lock order, the group does not, and PostgreSQL ends the person's operation. The
        person was answered 503 for what succeeds a moment later; run again, the operation
        loads everything afresh and decides on what the group committed. Intake's groups
        run again on their own (``GroupCommit``). ``operation`` must read what it changes
        from its session: nothing of the first run is kept."""
        return run_once_more_if_raced(self.transaction, operation)

    @contextmanager
    def _group_transaction(self) -> Iterator[Session]:
        """A group commit's transaction: its size is bounded (``MAX_GROUP_WEIGHT``)."""
        with self.transaction() as session:
            db.begin_bounded_writes(session)
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (on SQLite it neither waits for nor blocks a writer)."""
        with self.database.read_sessions() as session:
            yield session
