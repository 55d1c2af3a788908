"""The durable job queue on SQLite and PostgreSQL: enqueue, leases, retries, dead letters, cron."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from firetower import clock
from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.db import Database
from firetower.events import unit_of_work
from firetower.jobs import (
    CLEANUP_KIND,
    DEAD,
    QUEUED,
    SUCCEEDED,
    Job,
    JobContext,
    JobRegistry,
    Schedule,
    Worker,
    WorkerHeartbeat,
    WorkerStatus,
    backoff_seconds,
    enqueue,
    retry_dead,
    worker_status,
)
from firetower.runtime import Runtime
from firetower.settings import Settings
from tests.factories import Factory
from tests.job_worker_proc import marks, marks_metadata, record_mark

T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


# -- helpers ------------------------------------------------------------------------------
def with_settings(settings: Settings, **changes: Any) -> Database:
    return Database(settings.model_copy(update=changes))


def add_job(database: Database, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
    with unit_of_work(database.sessions, None) as session:
        job_id = enqueue(session, kind, payload, **kw)
    assert job_id is not None
    return job_id


def load(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def mark_rows(database: Database) -> list[tuple[int, int, str]]:
    with database.session() as session:
        rows = session.execute(
            select(marks.c.job_id, marks.c.attempt, marks.c.worker).order_by(
                marks.c.job_id, marks.c.attempt
            )
        )
        return [(r.job_id, r.attempt, r.worker) for r in rows]


def wait_for(condition: Callable[[], bool], what: str, deadline_seconds: float = 60) -> None:
    """Poll until ``condition`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {deadline_seconds:.0f}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def marks_table(database: Database) -> Iterator[None]:
    marks_metadata.create_all(database.engine)
    yield
    marks_metadata.drop_all(database.engine)


@pytest.fixture
def registry() -> JobRegistry:
    return JobRegistry()


@pytest.fixture
def worker(database: Database, registry: JobRegistry) -> Worker:
    return Worker(database, registry, worker_id="worker-a")


# -- enqueue ------------------------------------------------------------------------------
def test_enqueue_joins_the_callers_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError), unit_of_work(database.sessions, None) as session:
        assert enqueue(session, "page", {"to": "alice"}) is not None
        raise RuntimeError("the change that caused the job fails")
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0

    job_id = add_job(database, "page", {"to": "alice"})
    job = load(database, job_id)
    assert (job.kind, job.payload, job.status, job.attempts) == (
        "page",
        {"to": "alice"},
        QUEUED,
        0,
    )


def test_enqueue_takes_max_attempts_from_settings(settings: Settings) -> None:
    database = with_settings(settings, job_max_attempts=3)
    try:
        assert load(database, add_job(database, "page")).max_attempts == 3
        assert load(database, add_job(database, "page", max_attempts=5)).max_attempts == 5
    finally:
        database.dispose()


def test_enqueue_refuses_bad_arguments(database: Database) -> None:
    with unit_of_work(database.sessions, None) as session:
        with pytest.raises(ValueError, match="max_attempts"):
            enqueue(session, "page", max_attempts=0)
        with pytest.raises(ValueError, match="run_at must carry a time zone"):
            enqueue(session, "page", run_at=datetime(2030, 1, 1))


def test_idempotency_key_deduplicates(database: Database) -> None:
    first = add_job(database, "page", {"n": 1}, idempotency_key="page:INC-1:alice")
    with unit_of_work(database.sessions, None) as session:
        assert enqueue(session, "page", {"n": 2}, idempotency_key="page:INC-1:alice") is None
        assert enqueue(session, "page", {"n": 3}, idempotency_key="page:INC-1:bob") is not None
    with database.session() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
    assert [(j.id == first, j.payload) for j in jobs] == [(True, {"n": 1}), (False, {"n": 3})]


def test_idempotency_key_of_a_rolled_back_enqueue_is_free(database: Database) -> None:
    with pytest.raises(RuntimeError), unit_of_work(database.sessions, None) as session:
        enqueue(session, "page", idempotency_key="k")
        raise RuntimeError
    assert add_job(database, "page", idempotency_key="k") > 0


# -- running ------------------------------------------------------------------------------
def test_success_marks_succeeded(database: Database, registry: JobRegistry, worker: Worker) -> None:
    seen: list[tuple[int, str, int, str | None, dict[str, Any]]] = []

    @registry.handler("page")
    def page(context: JobContext, payload: dict[str, Any]) -> None:
        seen.append(
            (context.job_id, context.kind, context.attempt, context.idempotency_key, payload)
        )

    job_id = add_job(database, "page", {"to": "alice"}, idempotency_key="p1")
    with FrozenClock(T0):
        assert worker.run_once() == 1
    assert seen == [(job_id, "page", 1, "p1", {"to": "alice"})]
    job = load(database, job_id)
    assert (job.status, job.attempts, job.leased_until, job.finished_at) == (
        SUCCEEDED,
        1,
        None,
        T0,
    )
    with FrozenClock(T0 + timedelta(days=1)):
        assert worker.run_once() == 0, "a succeeded job is never claimed again"


def test_prepare_runs_outside_the_transaction_and_hands_its_result_over(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    """A job's network I/O (``prepare``) must not hold the write lock or the job's row lock:
    another writer touching the very job row finishes while ``prepare`` is still running."""
    job_id = add_job(database, "probe", {"target": "db-1"})
    other_writer_done = threading.Event()
    other_writer_error: list[BaseException] = []

    def touch_the_job_row() -> None:
        try:
            with unit_of_work(database.sessions, None) as session:
                session.execute(update(Job).where(Job.id == job_id).values(max_attempts=9))
            other_writer_done.set()
        except BaseException as exc:  # reported to the test below
            other_writer_error.append(exc)

    def fetch(payload: dict[str, Any]) -> dict[str, Any]:
        writer = threading.Thread(target=touch_the_job_row)
        writer.start()
        writer.join(timeout=5)
        return {"target": payload["target"], "writer_finished": other_writer_done.is_set()}

    seen: list[Any] = []
    registry.handler("probe", prepare=fetch)(
        lambda context, payload: seen.append((context.prepared, payload))
    )
    assert worker.run_once() == 1
    assert not other_writer_error, other_writer_error
    assert seen == [({"target": "db-1", "writer_finished": True}, {"target": "db-1"})]
    job = load(database, job_id)
    assert (job.status, job.max_attempts) == (SUCCEEDED, 9)


def test_a_failing_prepare_is_retried_and_its_handler_never_runs(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    def unreachable(payload: dict[str, Any]) -> None:
        raise ConnectionError("probe target refused the connection")

    ran: list[str] = []
    registry.handler("probe", prepare=unreachable)(lambda context, payload: ran.append("x"))
    with FrozenClock(T0):
        job_id = add_job(database, "probe")
        assert worker.run_once() == 1
    job = load(database, job_id)
    assert ran == []
    assert (job.status, job.attempts) == (QUEUED, 1)
    assert "probe target refused the connection" in (job.last_error or "")


def test_job_due_later_waits(database: Database, registry: JobRegistry, worker: Worker) -> None:
    registry.handler("page")(lambda context, payload: None)
    with FrozenClock(T0) as frozen:
        job_id = add_job(database, "page", run_at=T0 + timedelta(minutes=5))
        assert worker.run_once() == 0
        frozen.advance(minutes=5)
        assert worker.run_once() == 1
    assert load(database, job_id).status == SUCCEEDED


def test_failures_back_off_then_dead_letter(settings: Settings, registry: JobRegistry) -> None:
    database = with_settings(
        settings, job_backoff_base_seconds=10, job_backoff_max_seconds=35, job_max_attempts=5
    )
    worker = Worker(database, registry)
    calls: list[int] = []

    @registry.handler("flaky")
    def flaky(context: JobContext, payload: dict[str, Any]) -> None:
        calls.append(context.attempt)
        raise ConnectionError(f"receiver down (attempt {context.attempt})")

    try:
        with FrozenClock(T0) as frozen:
            job_id = add_job(database, "flaky")
            for attempt in range(1, 5):
                assert worker.run_once() == 1
                job = load(database, job_id)
                assert job.status == QUEUED
                assert job.attempts == attempt
                assert job.last_error == f"ConnectionError: receiver down (attempt {attempt})"
                ceiling = min(35.0, 10.0 * 2 ** (attempt - 1))
                delay = (job.run_at - frozen.current).total_seconds()
                assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
                # Not due a moment before its time, due at it.
                frozen.current = job.run_at - timedelta(milliseconds=1)
                assert worker.run_once() == 0
                frozen.current = job.run_at
            assert worker.run_once() == 1
            job = load(database, job_id)
            assert (job.status, job.attempts, job.finished_at) == (DEAD, 5, frozen.current)
            assert job.last_error == "ConnectionError: receiver down (attempt 5)"
            frozen.advance(days=30)
            assert worker.run_once() == 0, "a dead job is never claimed"
        assert calls == [1, 2, 3, 4, 5]
    finally:
        database.dispose()


def test_backoff_grows_within_bounds_and_caps() -> None:
    for attempt in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff_seconds(attempt, base=2.0, cap=300.0) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), attempt
        assert len(set(samples)) > 1, "jitter spreads retries"
    # A huge attempt count (max_attempts has no upper bound) still gives the cap.
    assert 150 <= backoff_seconds(5000, base=2.0, cap=300.0) <= 300


def test_retry_dead_gives_a_fresh_budget(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    fail = [True]

    @registry.handler("page")
    def page(context: JobContext, payload: dict[str, Any]) -> None:
        if fail[0]:
            raise RuntimeError("no route to pager")

    job_id = add_job(database, "page", max_attempts=1)
    worker.run_once()
    assert load(database, job_id).status == DEAD
    with unit_of_work(database.sessions, None) as session:
        assert retry_dead(session, job_id) is True
        assert retry_dead(session, job_id) is False, "only a dead job can be retried"
    job = load(database, job_id)
    assert (job.status, job.attempts, job.finished_at) == (QUEUED, 0, None)
    fail[0] = False
    assert worker.run_once() == 1
    assert load(database, job_id).status == SUCCEEDED
    with unit_of_work(database.sessions, None) as session:
        assert retry_dead(session, job_id) is False
        assert retry_dead(session, 999_999) is False


def test_unknown_kind_is_dead_lettered_with_a_clear_error(
    database: Database, worker: Worker
) -> None:
    job_id = add_job(database, "no.such.kind")
    assert worker.run_once() == 1
    job = load(database, job_id)
    assert job.status == DEAD
    assert job.attempts == 1
    assert job.last_error == "no handler is registered for job kind 'no.such.kind'"


@pytest.mark.usefixtures("marks_table")
def test_handler_writes_commit_with_the_job(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    @registry.handler("write")
    def write(context: JobContext, payload: dict[str, Any]) -> None:
        record_mark(context, "worker-a")
        context.session.flush()
        if context.attempt == 1:
            raise RuntimeError("fails after writing")

    job_id = add_job(database, "write")
    worker.run_once()
    assert load(database, job_id).status == QUEUED
    assert mark_rows(database) == [], "a failed attempt's writes are rolled back"
    with FrozenClock(clock.now() + timedelta(seconds=1)):
        worker.run_once()
    assert load(database, job_id).status == SUCCEEDED
    assert mark_rows(database) == [(job_id, 2, "worker-a")]


def test_handler_events_are_dispatched(database: Database, settings: Settings) -> None:
    from tests.test_events import Declared

    runtime = Runtime(settings=settings, database=database)
    runtime.bus.react(Declared, lambda session, event: enqueue(session, "follow-up"))
    seen: list[Any] = []
    runtime.bus.listen(Declared, seen.append)

    @runtime.jobs.handler("declare")
    def declare(context: JobContext, payload: dict[str, Any]) -> None:
        from firetower.events import record

        record(context.session, Declared("x"))

    add_job(database, "declare")
    Worker(database, runtime.jobs, runtime.bus).run_once()
    with database.session() as session:
        kinds = sorted(session.scalars(select(Job.kind)))
    assert kinds == ["declare", "follow-up"]
    assert seen == [Declared("x")]


# -- leases -------------------------------------------------------------------------------
def test_expired_lease_is_taken_by_another_worker(
    database: Database, registry: JobRegistry
) -> None:
    ran: list[str] = []
    registry.handler("page")(lambda context, payload: ran.append("ran"))
    first = Worker(database, registry, worker_id="first")
    second = Worker(database, registry, worker_id="second")
    with FrozenClock(T0) as frozen:
        job_id = add_job(database, "page")
        [claimed] = first.claim()  # and then the first worker dies
        assert claimed.id == job_id
        assert second.run_once() == 0, "the lease still holds"
        frozen.advance(seconds=database.settings.job_lease_seconds + 1)
        assert second.run_once() == 1
    job = load(database, job_id)
    # The first worker never started the job: its claim spent no attempt.
    assert (job.status, job.attempts, job.lease_owner) == (SUCCEEDED, 1, "second")
    assert ran == ["ran"]


def test_job_whose_lease_ran_out_in_a_batch_is_not_run_twice(
    database: Database, registry: JobRegistry
) -> None:
    ran: list[str] = []
    registry.handler("page")(lambda context, payload: ran.append(context.kind))
    slow = Worker(database, registry, worker_id="slow")
    fast = Worker(database, registry, worker_id="fast")
    with FrozenClock(T0) as frozen:
        job_id = add_job(database, "page")
        [claimed] = slow.claim()
        # The slow worker is busy with earlier jobs of its batch past the lease...
        frozen.advance(seconds=database.settings.job_lease_seconds + 1)
        assert fast.run_once() == 1
        # ...and reaches this job only now: it must not run it again.
        outcome = slow.run_job(claimed)
    assert ran == ["page"], "the handler ran a second time"
    assert outcome == "lease lost"
    job = load(database, job_id)
    assert (job.status, job.lease_owner, job.attempts) == (SUCCEEDED, "fast", 1)


def test_job_on_its_last_attempt_that_waited_in_a_batch_is_not_dead_lettered(
    database: Database, registry: JobRegistry
) -> None:
    """Its lease ran out while earlier jobs of the batch ran: it never started, so it spent
    no attempt, and another worker runs it instead of dead-lettering it."""
    ran: list[tuple[str, int]] = []

    @registry.handler("slow")
    def slow(context: JobContext, payload: dict[str, Any]) -> None:
        frozen.advance(seconds=database.settings.job_lease_seconds + 1)  # it took long

    registry.handler("page")(lambda context, payload: ran.append((payload["by"], context.attempt)))
    busy = Worker(database, registry, worker_id="busy", batch_size=2)
    idle = Worker(database, registry, worker_id="idle")
    with FrozenClock(T0) as frozen:
        add_job(database, "slow")
        job_id = add_job(database, "page", {"by": "either"}, max_attempts=1)
        slow_job, waiting = busy.claim()
        assert busy.run_job(slow_job) == "succeeded"
        # The waiting job's lease has run out: the idle worker takes it and runs it.
        assert idle.run_once() == 1
        job = load(database, job_id)
        assert (job.status, job.lease_owner, job.attempts, job.last_error) == (
            SUCCEEDED,
            "idle",
            1,
            None,
        )
        # The busy worker reaches it only now, and leaves it alone.
        assert busy.run_job(waiting) == "lease lost"
    assert ran == [("either", 1)]
    assert load(database, job_id).status == SUCCEEDED


class WorkerDied(BaseException):
    """Stands for a worker dying mid-job: nothing after it runs, its transaction rolls back."""


def test_expired_lease_on_the_last_attempt_dead_letters(
    database: Database, registry: JobRegistry
) -> None:
    ran: list[int] = []

    @registry.handler("poison")
    def poison(context: JobContext, payload: dict[str, Any]) -> None:
        ran.append(context.attempt)
        raise WorkerDied

    with FrozenClock(T0) as frozen:
        job_id = add_job(database, "poison", max_attempts=2)
        for name in ("crashes-1", "crashes-2"):
            with pytest.raises(WorkerDied):
                Worker(database, registry, worker_id=name).run_once()
            frozen.advance(seconds=database.settings.job_lease_seconds + 1)
        assert Worker(database, registry, worker_id="third").run_once() == 0
    job = load(database, job_id)
    assert (job.status, job.attempts) == (DEAD, 2)
    assert job.last_error is not None and "lease expired on the last attempt" in job.last_error
    assert ran == [1, 2], "a job that killed its worker every time is not run again"


def test_failure_with_an_expired_but_untaken_lease_still_counts(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    @registry.handler("page")
    def page(context: JobContext, payload: dict[str, Any]) -> None:
        raise RuntimeError("nope")

    with FrozenClock(T0) as frozen:
        job_id = add_job(database, "page")
        [claimed] = worker.claim()
        frozen.advance(seconds=database.settings.job_lease_seconds + 1)
        assert worker.run_job(claimed) == "retried"
    assert load(database, job_id).status == QUEUED


def test_stop_finishes_the_running_job_and_gives_back_the_rest_of_the_batch(
    database: Database, registry: JobRegistry
) -> None:
    first_started, finish_first = threading.Event(), threading.Event()
    ran: list[int] = []

    @registry.handler("page")
    def page(context: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload["n"])
        if payload["n"] == 0:
            first_started.set()
            assert finish_first.wait(60), "the test never let the first job finish"

    job_ids = [add_job(database, "page", {"n": n}) for n in range(3)]
    stopping = Worker(database, registry, worker_id="stopping", batch_size=3)
    stopping.start_in_thread()
    try:
        assert first_started.wait(60), "the worker never started the first job"
        stopping.stop(0)  # what SIGTERM does: ask, without waiting
        finish_first.set()
    finally:
        finish_first.set()
        stopping.stop(60)
    assert stopping._thread is not None and not stopping._thread.is_alive()
    assert ran == [0], "the worker started claimed jobs after it was asked to stop"
    jobs = [load(database, job_id) for job_id in job_ids]
    assert [(j.status, j.attempts, j.lease_owner, j.leased_until) for j in jobs] == [
        (SUCCEEDED, 1, "stopping", None),
        (QUEUED, 0, None, None),
        (QUEUED, 0, None, None),
    ]
    # Another worker takes them at once (no lease to wait out), on their first attempt.
    assert Worker(database, registry, worker_id="next").run_once() == 2
    jobs = [load(database, job_id) for job_id in job_ids[1:]]
    assert [(j.status, j.attempts, j.lease_owner) for j in jobs] == [(SUCCEEDED, 1, "next")] * 2
    assert ran == [0, 1, 2]


def test_a_heartbeat_that_fails_never_strands_the_rest_of_the_batch(
    database: Database, registry: JobRegistry
) -> None:
    """The worker beats between the jobs of a batch (and tries again after each job while
    beating fails). A beat that failed (its table unreadable here; a busy or broken database
    elsewhere) ended the pass: the jobs claimed after it stayed leased, unrun, until their
    lease ran out, and lost an attempt."""
    ran: list[int] = []

    @registry.handler("page")
    def page(context: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    job_ids = [add_job(database, "page", {"n": n}) for n in range(3)]
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE worker_heartbeats RENAME TO heartbeats_away"))
    try:
        assert Worker(database, registry, worker_id="beating", batch_size=3).run_once() == 3
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("ALTER TABLE heartbeats_away RENAME TO worker_heartbeats"))
    assert ran == [0, 1, 2]
    jobs = [load(database, job_id) for job_id in job_ids]
    assert [(j.status, j.attempts) for j in jobs] == [(SUCCEEDED, 1)] * 3


# -- schedules ----------------------------------------------------------------------------
def test_two_workers_tick_one_due_schedule_once(database: Database) -> None:
    registry = JobRegistry()
    registry.schedule("digest", "*/5 * * * *", "digest", {"team": "core"})
    one = Worker(database, registry, worker_id="one")
    two = Worker(database, registry, worker_id="two")
    with FrozenClock(T0 + timedelta(seconds=30)) as frozen:
        one.sync_schedules()
        two.sync_schedules()
        with database.session() as session:
            assert session.get(Schedule, "digest").next_run_at == T0 + timedelta(minutes=5)  # type: ignore[union-attr]
        assert one.tick_schedules() + two.tick_schedules() == 0
        frozen.current = T0 + timedelta(minutes=5)
        assert one.tick_schedules() + two.tick_schedules() == 1
        assert one.tick_schedules() + two.tick_schedules() == 0
        frozen.current = T0 + timedelta(minutes=10, seconds=1)
        assert two.tick_schedules() + one.tick_schedules() == 1
    with database.session() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        row = session.get(Schedule, "digest")
    assert [j.payload for j in jobs] == [
        {"team": "core", "scheduled_for": (T0 + timedelta(minutes=5)).isoformat()},
        {"team": "core", "scheduled_for": (T0 + timedelta(minutes=10)).isoformat()},
    ]
    assert row is not None and row.next_run_at == T0 + timedelta(minutes=15)


def test_concurrent_ticks_enqueue_one_job(database: Database) -> None:
    registry = JobRegistry()
    registry.schedule("digest", "0 * * * *", "digest")
    workers = [Worker(database, registry, worker_id=f"w{i}") for i in range(4)]
    fired: list[int] = []
    errors: list[BaseException] = []
    with FrozenClock(T0 - timedelta(minutes=1)) as frozen:
        workers[0].sync_schedules()
        frozen.current = T0
        gate = threading.Barrier(len(workers))

        def tick(worker: Worker) -> None:
            try:
                gate.wait()
                fired.append(worker.tick_schedules())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=tick, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert sorted(fired) == [0, 0, 0, 1]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_missed_runs_are_not_made_up(database: Database) -> None:
    registry = JobRegistry()
    registry.schedule("digest", "* * * * *", "digest")
    worker = Worker(database, registry)
    with FrozenClock(T0) as frozen:
        worker.sync_schedules()
        frozen.advance(hours=3)  # no worker ran for three hours
        assert worker.tick_schedules() == 1
        assert worker.tick_schedules() == 0


def test_sync_schedules_keeps_next_run_times(database: Database) -> None:
    registry = JobRegistry()
    registry.schedule("digest", "0 9 * * *", "digest", {"v": 1})
    registry.schedule("gone", "0 9 * * *", "gone")
    with FrozenClock(T0):
        Worker(database, registry).sync_schedules()
    with FrozenClock(T0 + timedelta(hours=1)):
        # a restart an hour later keeps the time already set
        Worker(database, registry).sync_schedules()
        with database.session() as session:
            assert session.get(Schedule, "digest").next_run_at == datetime(  # type: ignore[union-attr]
                2030, 1, 8, 9, 0, tzinfo=UTC
            )
        # a changed payload keeps the time; a removed schedule is deleted
        changed = JobRegistry()
        changed.schedule("digest", "0 9 * * *", "digest", {"v": 2})
        Worker(database, changed).sync_schedules()
        with database.session() as session:
            row = session.get(Schedule, "digest")
            assert row is not None
            assert (row.payload, row.next_run_at) == (
                {"v": 2},
                datetime(2030, 1, 8, 9, 0, tzinfo=UTC),
            )
            assert session.get(Schedule, "gone") is None
        # a changed cron starts over from now
        recron = JobRegistry()
        recron.schedule("digest", "30 13 * * *", "digest", {"v": 2})
        Worker(database, recron).sync_schedules()
        with database.session() as session:
            assert session.get(Schedule, "digest").next_run_at == datetime(  # type: ignore[union-attr]
                2030, 1, 7, 13, 30, tzinfo=UTC
            )


def test_invalid_cron_is_refused() -> None:
    registry = JobRegistry()
    with pytest.raises(ValueError, match=r"schedule 'x': '61 \* \* \* \*' is not a cron"):
        registry.schedule("x", "61 * * * *", "k")
    with pytest.raises(ValueError, match="not a cron"):
        registry.schedule("x", "every day", "k")
    assert registry.schedules == {}


def test_duplicate_handler_is_refused() -> None:
    registry = JobRegistry()
    registry.handler("k")(lambda context, payload: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.handler("k")(lambda context, payload: None)


def test_broken_schedule_row_does_not_stop_the_queue(
    database: Database, registry: JobRegistry, worker: Worker
) -> None:
    registry.handler("page")(lambda context, payload: None)
    with unit_of_work(database.sessions, None) as session:
        session.add(Schedule(name="bad", cron="not cron", kind="x", payload={}, next_run_at=T0))
    job_id = add_job(database, "page")
    with FrozenClock(T0 + timedelta(minutes=1)):
        assert worker.run_once() == 1
    assert load(database, job_id).status == SUCCEEDED


# -- retention ----------------------------------------------------------------------------
def test_cleanup_schedule_deletes_old_succeeded_jobs(
    settings: Settings, database: Database
) -> None:
    runtime = Runtime(settings=settings, database=database)
    assert runtime.jobs.schedules["jobs.cleanup"].payload == {"keep_days": 14.0}
    runtime.jobs.handler("page")(lambda context, payload: None)
    worker = Worker(database, runtime.jobs)
    with FrozenClock(T0) as frozen:
        old = add_job(database, "page")
        dead = add_job(database, "no.handler")
        worker.run_once()
        frozen.advance(days=10)
        recent = add_job(database, "page")
        worker.run_once()
        waiting = add_job(database, "page", run_at=T0 + timedelta(days=90))
        frozen.advance(days=5)  # old finished 15 days ago, recent 5
        worker.sync_schedules()
        with database.session() as session:
            due = session.get(Schedule, "jobs.cleanup")
            assert due is not None
        frozen.current = due.next_run_at
        assert worker.run_once() == 1
    with database.session() as session:
        left = {job_id: kind for job_id, kind in session.execute(select(Job.id, Job.kind))}
    assert old not in left
    assert {dead, recent, waiting} <= set(left)
    assert sorted(left.values()).count(CLEANUP_KIND) == 1


def test_retention_follows_the_setting(settings: Settings, database: Database) -> None:
    shorter = settings.model_copy(update={"job_retention_days": 2.5})
    runtime = Runtime(settings=shorter, database=database)
    assert runtime.jobs.schedules["jobs.cleanup"].payload == {"keep_days": 2.5}


# -- concurrency --------------------------------------------------------------------------
def _drain_with_workers(
    settings: Settings, job_count: int, worker_count: int
) -> tuple[list[int], list[tuple[int, int, str]]]:
    """Run ``worker_count`` workers (own engines, own threads) until ``job_count`` jobs ran."""
    ran: list[int] = []
    ran_lock = threading.Lock()
    errors: list[BaseException] = []
    databases = [Database(settings) for _ in range(worker_count + 1)]
    setup = databases[-1]

    registry = JobRegistry()

    @registry.handler("count")
    def count(context: JobContext, payload: dict[str, Any]) -> None:
        record_mark(context, str(threading.current_thread().name))
        with ran_lock:
            ran.append(context.job_id)

    with unit_of_work(setup.sessions, None) as session:
        for n in range(job_count):
            enqueue(session, "count", {"n": n})

    def remaining() -> int:
        with setup.session() as session:
            return int(
                session.scalar(select(func.count()).select_from(Job).where(Job.status != SUCCEEDED))
                or 0
            )

    gate = threading.Barrier(worker_count)

    def work(database: Database, name: str) -> None:
        worker = Worker(database, registry, worker_id=name, batch_size=7)
        deadline = time.monotonic() + 300
        try:
            gate.wait()
            while time.monotonic() < deadline:
                if worker.run_once() == 0 and remaining() == 0:
                    return
            errors.append(TimeoutError(f"{name}: queue not drained within 300 s"))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(databases[i], f"w{i}"), name=f"w{i}")
        for i in range(worker_count)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        return ran, mark_rows(setup)
    finally:
        for database in databases:
            database.dispose()


def _assert_each_ran_once(
    database: Database, job_count: int, ran: list[int], rows: list[tuple[int, int, str]]
) -> None:
    with database.session() as session:
        jobs = session.scalars(select(Job)).all()
    assert len(jobs) == job_count
    assert {(j.status, j.attempts) for j in jobs} == {(SUCCEEDED, 1)}
    assert sorted(ran) == sorted(j.id for j in jobs), "each handler ran exactly once"
    assert len(rows) == job_count
    assert {(job_id, attempt) for job_id, attempt, _ in rows} == {(j.id, 1) for j in jobs}


@pytest.mark.usefixtures("marks_table")
def test_postgres_workers_never_run_a_job_twice(database: Database, settings: Settings) -> None:
    if database.dialect != "postgresql":
        pytest.skip("needs FOR UPDATE SKIP LOCKED (PostgreSQL); SQLite has a single writer")
    ran, rows = _drain_with_workers(settings, job_count=500, worker_count=4)
    _assert_each_ran_once(database, 500, ran, rows)


@pytest.mark.usefixtures("marks_table")
def test_two_threads_claim_correctly(database: Database, settings: Settings) -> None:
    # On SQLite the claim's select-then-update runs under BEGIN IMMEDIATE (one writer).
    ran, rows = _drain_with_workers(settings, job_count=200, worker_count=2)
    _assert_each_ran_once(database, 200, ran, rows)


def test_postgres_claims_skip_locked_rows(database: Database, settings: Settings) -> None:
    if database.dialect != "postgresql":
        pytest.skip("FOR UPDATE SKIP LOCKED exists on PostgreSQL only; SQLite has one writer")
    registry = JobRegistry()
    first_id = add_job(database, "k")
    second_id = add_job(database, "k")
    other = Database(settings)
    try:
        # Another worker's transaction holds the first job's row (as a running handler does).
        with other.engine.connect() as connection, connection.begin():
            connection.execute(update(Job).where(Job.id == first_id).values(lease_owner="holder"))
            claimed = Worker(database, registry, worker_id="claimer").claim()
            assert [j.id for j in claimed] == [second_id], (
                "the locked row is skipped, not waited on"
            )
    finally:
        other.dispose()


# -- heartbeat, readiness, dead-letter API ------------------------------------------------
def test_heartbeat_rows(database: Database, worker: Worker) -> None:
    with FrozenClock(T0) as frozen:
        worker.heartbeat()
        frozen.advance(seconds=10)
        worker.heartbeat()
        with unit_of_work(database.sessions, None) as session:
            session.add(
                WorkerHeartbeat(
                    worker_id="long-gone",
                    hostname="h",
                    pid=1,
                    started_at=T0 - timedelta(days=3),
                    last_seen_at=T0 - timedelta(days=2),
                )
            )
        worker.heartbeat()
    with database.session() as session:
        beats = session.scalars(select(WorkerHeartbeat)).all()
    assert [(b.worker_id, b.started_at, b.last_seen_at) for b in beats] == [
        ("worker-a", worker.started_at, T0 + timedelta(seconds=10))
    ], "a heartbeat older than a day is pruned"


def test_readyz_needs_a_worker_heartbeat(client: Any, database: Database, worker: Worker) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "not ready",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "worker": "no worker heartbeat on record; 0 jobs waiting",
        },
        "worker": {"alive": False, "last_seen_at": None, "waiting_jobs": 0},
    }
    with FrozenClock(clock.now()) as frozen:
        worker.heartbeat()
        beat = frozen.current
        answer = client.get("/readyz")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "status": "ready",
            "checks": {"database": "ok", "migrations": "ok", "worker": "ok"},
            "worker": {
                "alive": True,
                "last_seen_at": beat.isoformat().replace("+00:00", "Z"),
                "waiting_jobs": None,
            },
        }
        frozen.advance(seconds=database.settings.worker_heartbeat_stale_seconds)
        assert client.get("/readyz").status_code == 200, "a beat exactly at the limit is fresh"
        frozen.advance(seconds=1)
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["worker"] == {
        "alive": False,
        "last_seen_at": beat.isoformat().replace("+00:00", "Z"),
        "waiting_jobs": 0,
    }
    assert answer.json()["checks"]["worker"] == (
        f"no worker heartbeat since {beat:%Y-%m-%d %H:%M:%S} UTC; 0 jobs waiting"
    )


def _beats(database: Database) -> list[tuple[str, datetime, datetime | None]]:
    with database.session() as session:
        rows = session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.worker_id))
        return [(b.worker_id, b.last_seen_at, b.stopped_at) for b in rows]


def _status(database: Database) -> WorkerStatus:
    with database.session() as session:
        return worker_status(
            session, stale_seconds=database.settings.worker_heartbeat_stale_seconds
        )


def _run_and_stop(worker: Worker, database: Database) -> None:
    """Start the worker's loop, wait for its first heartbeat, and stop it cleanly."""
    worker.start_in_thread()
    try:
        wait_for(lambda: _status(database).alive, "the worker's heartbeat")
    finally:
        worker.stop()
    assert worker._thread is not None and not worker._thread.is_alive()


def test_a_worker_that_stops_cleanly_keeps_when_it_last_ran(
    client: Any, database: Database, worker: Worker
) -> None:
    """Its heartbeat stays, marked stopped: never alive however fresh, and /readyz says since
    when no worker has run, where it said none was on record."""
    stopped = T0 + timedelta(seconds=7)
    with FrozenClock(T0) as frozen:
        worker.start_in_thread()
        try:
            wait_for(lambda: _status(database).alive, "the worker's heartbeat")
            frozen.advance(seconds=7)
        finally:
            worker.stop()
        answer = client.get("/readyz")  # at once: the stop is well inside the stale window
    assert answer.status_code == 503
    assert answer.json()["worker"] == {
        "alive": False,
        "last_seen_at": "2030-01-07T12:00:07Z",
        "waiting_jobs": 0,
    }
    assert answer.json()["checks"]["worker"] == (
        "no worker heartbeat since 2030-01-07 12:00:07 UTC; 0 jobs waiting"
    )
    assert _beats(database) == [("worker-a", stopped, stopped)]


def test_stopped_workers_rows_do_not_pile_up(database: Database, registry: JobRegistry) -> None:
    """A live worker's heartbeat deletes the stopped workers' rows: after any number of
    starts and stops, one row says when the last one stopped."""
    with FrozenClock(T0) as frozen:
        for name in ("worker-a", "worker-b", "worker-c"):
            _run_and_stop(Worker(database, registry, worker_id=name), database)
            frozen.advance(seconds=60)
        stopped = T0 + timedelta(seconds=120)
        status = _status(database)
        assert (status.alive, status.last_seen_at) == (False, stopped)
        assert _beats(database) == [("worker-c", stopped, stopped)]
        # A worker that runs alongside a stopped one's row is alive, and prunes the row.
        Worker(database, registry, worker_id="worker-d").heartbeat()
        status = _status(database)
    assert (status.alive, status.last_seen_at) == (True, T0 + timedelta(seconds=180))
    assert _beats(database) == [("worker-d", T0 + timedelta(seconds=180), None)]


def test_readyz_counts_the_jobs_waiting_for_a_worker(
    client: Any, database: Database, worker: Worker
) -> None:
    """Waiting: what a worker would take now. Due jobs and jobs whose worker died on their
    lease count; a job due later, or one whose lease still runs, does not."""
    stale_seconds = database.settings.worker_heartbeat_stale_seconds
    with FrozenClock(clock.now()) as frozen:
        worker.heartbeat()
        frozen.advance(seconds=stale_seconds - 1)
        claimed = add_job(database, "page")
        assert [job.id for job in worker.claim()] == [claimed]
        add_job(database, "page")
        add_job(database, "page", run_at=frozen.current + timedelta(hours=1))
        frozen.advance(seconds=2)  # the heartbeat is stale; the claimed job's lease runs
        assert client.get("/readyz").json()["worker"]["waiting_jobs"] == 1
        frozen.advance(seconds=database.settings.job_lease_seconds)
        answer = client.get("/readyz").json()
    assert answer["worker"]["waiting_jobs"] == 2
    assert answer["checks"]["worker"].endswith("; 2 jobs waiting")


def test_readyz_reports_pending_migrations(client: Any, database: Database, worker: Worker) -> None:
    worker.heartbeat()
    with database.engine.begin() as connection:
        head = connection.scalar(text("SELECT version_num FROM alembic_version"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    try:
        answer = client.get("/readyz")
    finally:  # the PostgreSQL database outlives this test
        with database.engine.begin() as connection:
            connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
    assert answer.status_code == 503
    assert answer.json()["checks"]["migrations"] == "pending"
    assert client.get("/readyz").status_code == 200


def test_dead_letter_api_is_admin_only(factory: Factory, database: Database) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    dead_id = add_job(database, "no.handler", {"to": "alice"})
    queued_id = add_job(database, "other", run_at=clock.now() + timedelta(days=1))
    Worker(database, JobRegistry()).run_once()

    assert responder.get("/api/v1/jobs/dead").status_code == 403
    assert responder.post(f"/api/v1/jobs/{dead_id}/retry").status_code == 403
    assert load(database, dead_id).status == DEAD

    listed = admin.get("/api/v1/jobs/dead")
    assert listed.status_code == 200
    [shown] = listed.json()
    assert shown["id"] == dead_id
    assert shown["payload"] == {"to": "alice"}
    assert shown["last_error"] == "no handler is registered for job kind 'no.handler'"

    answer = admin.post(f"/api/v1/jobs/{queued_id}/retry")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"] == "job_id"
    for absurd in (0, 2**70):
        refused = admin.post(f"/api/v1/jobs/{absurd}/retry")
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "job_id"

    assert admin.post(f"/api/v1/jobs/{dead_id}/retry").status_code == 202
    assert load(database, dead_id).status == QUEUED
    assert admin.get("/api/v1/jobs/dead").json() == []


# -- outage -------------------------------------------------------------------------------
def test_worker_loop_survives_a_database_outage(settings: Settings) -> None:
    database = with_settings(settings, worker_poll_interval_seconds=0.01)
    registry = JobRegistry()
    registry.handler("page")(lambda context, payload: None)
    registry.schedule("digest", "0 * * * *", "digest")
    worker = Worker(database, registry)
    moved = ("jobs", "job_schedules", "worker_heartbeats")
    with database.engine.begin() as connection:
        for table in moved:
            connection.execute(text(f"ALTER TABLE {table} RENAME TO away_{table}"))
    renamed = True
    try:
        worker.start_in_thread()
        wait_for(lambda: worker.consecutive_failures >= 3, "the worker to hit the outage")
        assert worker._thread is not None and worker._thread.is_alive()
        with database.engine.begin() as connection:
            for table in moved:
                connection.execute(text(f"ALTER TABLE away_{table} RENAME TO {table}"))
        renamed = False
        job_id = add_job(database, "page")
        wait_for(lambda: load(database, job_id).status == SUCCEEDED, "the job after recovery")
        wait_for(lambda: worker.consecutive_failures == 0, "the failure count to reset")
        with database.session() as session:
            assert session.get(WorkerHeartbeat, worker.worker_id) is not None
            assert session.get(Schedule, "digest") is not None, "schedules synced once up"
    finally:
        worker.stop()
        if renamed:
            with database.engine.begin() as connection:
                for table in moved:
                    connection.execute(text(f"ALTER TABLE away_{table} RENAME TO {table}"))
        database.dispose()
    after = Database(settings)
    try:
        with after.session() as session:
            beat = session.get(WorkerHeartbeat, worker.worker_id)
            stopped = beat is not None and beat.stopped_at is not None
    finally:
        after.dispose()
    assert stopped, "a stopped worker keeps its heartbeat, marked stopped"
