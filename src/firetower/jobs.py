"""Durable jobs: enqueued in the caller's transaction, leased by workers, retried, dead-lettered.

Work that must not be lost (a page, a notification, a runbook step) is a row in ``jobs``
written in the same transaction as the change that caused it. A worker leases due jobs
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has a single writer), runs the handler in
a transaction that also marks the job done, and on failure retries with exponential backoff
and jitter until ``max_attempts``, then dead-letters it. A job whose worker died is taken
again once its lease expires; one whose worker keeps dying on it is dead-lettered once its
attempts are spent. An attempt counts when the worker starts the job, not when it claims it:
a job whose lease ran out while it waited in its worker's batch spent nothing, and another
worker simply takes it. Before its handler runs, a worker confirms and renews its lease in the
handler's own transaction (on PostgreSQL that row lock also keeps other workers off it), so a
job whose lease ran out while it waited in a batch is never run by two workers. An
idempotency key makes a second enqueue of the same work a no-op. Cron schedules enqueue at
most one run per tick, however many workers run. See docs/jobs.md.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from croniter import croniter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from firetower import clock
from firetower.db import SETTINGS_INFO, Base, Database, JSONType, UTCDateTime
from firetower.events import EventBus, unit_of_work
from firetower.metrics import JOB_DURATION, JOBS_FINISHED

log = structlog.get_logger(__name__)

QUEUED, RUNNING, SUCCEEDED, DEAD = "queued", "running", "succeeded", "dead"
DEFAULT_MAX_ATTEMPTS = 8
CLEANUP_KIND = "jobs.cleanup"
# Longest pause between passes while the database is unreachable.
MAX_FAILURE_PAUSE_SECONDS = 30.0


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_jobs_due", "status", "run_at"),)


class Schedule(Base):
    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    cron: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Set when the worker stopped cleanly (then also its ``last_seen_at``): the row stays
    so that one can tell when a worker last ran, and is never counted alive. The next live
    worker's heartbeat deletes it."""


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its payload: its session (the job's transaction) and identity."""

    session: Session
    job_id: int
    kind: str
    attempt: int
    idempotency_key: str | None
    prepared: Any = None
    """What the kind's ``prepare`` step returned (None for kinds without one)."""


Handler = Callable[[JobContext, dict[str, Any]], None]
Prepare = Callable[[dict[str, Any]], Any]
"""Runs before the handler, outside any transaction: the place for network I/O."""


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str
    kind: str
    payload: dict[str, Any]


@dataclass
class JobRegistry:
    """Handlers by job kind and the cron schedules that feed them."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    prepares: dict[str, Prepare] = field(default_factory=dict)
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)

    def handler(self, kind: str, *, prepare: Prepare | None = None) -> Callable[[Handler], Handler]:
        """Register the handler of ``kind``; ``prepare`` (optional) runs first, outside the
        transaction, so a job that waits on the network (a probe, a query, a delivery) never
        holds the database's write lock while it waits. ``prepare`` may run more than once
        for one job (a retry, a lost lease): it must only read and fetch, never change state;
        the handler records what it found."""

        def register(func: Handler) -> Handler:
            if kind in self.handlers:
                raise ValueError(f"a handler for job kind {kind!r} is already registered")
            self.handlers[kind] = func
            if prepare is not None:
                self.prepares[kind] = prepare
            return func

        return register

    def schedule(
        self, name: str, cron: str, kind: str, payload: dict[str, Any] | None = None
    ) -> None:
        if not croniter.is_valid(cron):
            raise ValueError(f"schedule {name!r}: {cron!r} is not a cron expression")
        self.schedules[name] = ScheduleSpec(name, cron, kind, payload or {})


def _claimable(now: datetime) -> Any:
    """The jobs a worker would take at ``now``: queued and due, or running on a lease that
    ran out (their worker died or stalled)."""
    return or_(
        (Job.status == QUEUED) & (Job.run_at <= now),
        (Job.status == RUNNING) & (Job.leased_until < now),
    )


def _insert_for(session: Session) -> Callable[..., Any]:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _enqueue_statement(dialect: str, idempotent: bool) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, Job.__table__)
    statement = insert(table)
    if idempotent:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    return statement.returning(table.c.id)


_ENQUEUE = {
    (dialect, idempotent): _enqueue_statement(dialect, idempotent)
    for dialect in ("sqlite", "postgresql")
    for idempotent in (False, True)
}
"""Built once, on the table rather than the ORM class: intake enqueues on its hot path,
and building an ORM insert per call cost more than running it."""


def _owned_update(**values: Any) -> Any:
    """An update of one job that applies only while it is the caller's current attempt."""
    table = cast(Table, Job.__table__)
    return (
        update(table)
        .where(
            (table.c.id == bindparam("job_id"))
            & (table.c.lease_owner == bindparam("owner"))
            & (table.c.attempts == bindparam("attempt"))
            & (table.c.status == RUNNING)
        )
        .values(**values)
    )


_JOBS = cast(Table, Job.__table__)
_START = _owned_update(
    attempts=_JOBS.c.attempts + 1, leased_until=bindparam("lease_end", type_=UTCDateTime())
)
_RENEW = _owned_update(leased_until=bindparam("lease_end", type_=UTCDateTime()))
_SUCCEED = _owned_update(
    status=SUCCEEDED, finished_at=bindparam("finished", type_=UTCDateTime()), leased_until=None
)
"""The updates every job runs (start, renew, succeed), built once like ``_ENQUEUE``: building
them per job cost about as much as the extra commit that starting a job takes."""


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
) -> int | None:
    """Add a job in the caller's transaction. Returns its id, or None if the key was seen.

    ``max_attempts`` defaults to the ``job_max_attempts`` setting of the session's database.
    """
    now = clock.now()
    if max_attempts is None:
        settings = session.info.get(SETTINGS_INFO)
        max_attempts = settings.job_max_attempts if settings is not None else DEFAULT_MAX_ATTEMPTS
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1 (got {max_attempts})")
    if run_at is not None:
        run_at = clock.ensure_utc(run_at, field="run_at")
    values = {
        "kind": kind,
        "payload": payload or {},
        "status": QUEUED,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or now,
        "idempotency_key": idempotency_key,
        "created_at": now,
    }
    statement = _ENQUEUE[(session.get_bind().dialect.name, idempotency_key is not None)]
    return session.execute(statement, values).scalar_one_or_none()


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    # The exponent is bounded: 2**1100 does not fit a float, and the cap is reached long before.
    ceiling = min(cap, base * 2 ** min(max(attempt - 1, 0), 60))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Worker:
    """Leases due jobs and runs them; also beats its heart and ticks cron schedules."""

    def __init__(
        self,
        database: Database,
        registry: JobRegistry,
        bus: EventBus | None = None,
        *,
        worker_id: str | None = None,
        batch_size: int = 10,
    ) -> None:
        self.database = database
        self.registry = registry
        self.bus = bus
        self.settings = database.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch_size = batch_size
        self.started_at = clock.now()
        self.consecutive_failures = 0
        """Passes in a row that failed (the database is down, say); 0 once one succeeds."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = float("-inf")
        self._schedules_synced = False

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_seconds)

    # -- one pass -------------------------------------------------------------------------
    def claim(self) -> list[Job]:
        """Lease a batch of due jobs (and jobs whose lease expired) to this worker.

        Claiming spends no attempt (``_start`` counts one when the job starts), so a job that
        waited in a batch past its lease is simply taken again. A job whose lease expired
        after it started its last attempt (its worker died on it every time) is dead-lettered
        here instead of being run again.
        """
        now = clock.now()
        with unit_of_work(self.database.sessions, None) as session:
            # SQLite ignores FOR UPDATE; there BEGIN IMMEDIATE already makes this transaction
            # the only writer, so the select-then-update cannot interleave with another claim.
            due = (
                select(Job.id, Job.status, Job.attempts, Job.max_attempts)
                .where(_claimable(now))
                .order_by(Job.run_at, Job.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = session.execute(due).all()
            spent = [r.id for r in rows if r.status == RUNNING and r.attempts >= r.max_attempts]
            ids = [r.id for r in rows if r.id not in spent]
            if spent:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(spent))
                    .values(
                        status=DEAD,
                        finished_at=now,
                        leased_until=None,
                        last_error=(
                            "the lease expired on the last attempt: the worker running the job "
                            "died or stalled every time"
                        ),
                    )
                )
            if ids:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(ids))
                    .values(
                        status=RUNNING, leased_until=now + self.lease, lease_owner=self.worker_id
                    )
                )
            jobs = list(session.scalars(select(Job).where(Job.id.in_(ids)).order_by(Job.id)))
            session.expunge_all()
        for job_id in spent:
            log.error("job dead-lettered: its lease expired on the last attempt", job_id=job_id)
        return jobs

    def run_once(self) -> int:
        """Tick schedules, claim one batch and run it. Returns how many jobs were claimed.

        Once ``stop`` is asked, the job running finishes and the rest of the batch is released.
        """
        try:
            self.tick_schedules()
        except Exception:  # a broken schedule must not stop the queue
            log.exception("ticking schedules failed")
        jobs = self.claim()
        for index, job in enumerate(jobs):
            if self._stop.is_set():
                self._release(jobs[index:])
                break
            self.run_job(job)
            try:
                self._maybe_beat()
            except Exception:  # a missed beat must not strand the jobs claimed after it
                log.warning("worker heartbeat failed", worker_id=self.worker_id, exc_info=True)
        return len(jobs)

    def _release(self, jobs: list[Job]) -> int:
        """Give back claimed jobs this worker has not started: queued again, due as they were,
        so another worker takes them at once, with no attempt spent. Returns how many."""
        if not jobs:
            return 0
        with unit_of_work(self.database.sessions, None) as session:
            released = session.execute(
                update(Job)
                .where(or_(*(self._owned(job) for job in jobs)))
                .values(status=QUEUED, leased_until=None, lease_owner=None)
            )
        count = int(released.rowcount)  # type: ignore[attr-defined]
        log.info("claimed jobs released", count=count)
        return count

    def run_job(self, job: Job) -> str:
        """Run one claimed job. Returns the outcome: succeeded, retried, dead or lease lost."""
        structlog.contextvars.bind_contextvars(job_id=job.id, job_kind=job.kind)
        started = time.perf_counter()
        try:
            outcome = self._run(job)
        finally:
            JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("job_id", "job_kind")
        if outcome != "lease lost":
            JOBS_FINISHED.labels(job.kind, outcome).inc()
        return outcome

    def _owned(self, job: Job) -> Any:
        """The condition under which ``job`` is still this worker's current attempt."""
        return (
            (Job.id == job.id)
            & (Job.lease_owner == self.worker_id)
            & (Job.attempts == job.attempts)
            & (Job.status == RUNNING)
        )

    def _mine(self, job: Job, **params: Any) -> dict[str, Any]:
        """Parameters of an ``_owned_update`` of ``job``'s current attempt by this worker."""
        return {"job_id": job.id, "owner": self.worker_id, "attempt": job.attempts, **params}

    def _start(self, job: Job) -> None:
        """Count the attempt and renew the lease, committed before any of the job's work.

        Committed on its own, so the attempt still counts if the worker dies while the job
        runs (the handler's transaction dies with it); raises LeaseLost if another worker
        took the job while it waited in the batch.
        """
        with unit_of_work(self.database.sessions, None) as session:
            started = session.execute(_START, self._mine(job, lease_end=clock.now() + self.lease))
            if started.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(job.id)
        job.attempts += 1

    def _run(self, job: Job) -> str:
        try:
            self._start(job)
        except LeaseLost:
            log.warning("lease lost; another worker owns the job now")
            return "lease lost"
        handler = self.registry.handlers.get(job.kind)
        if handler is None:
            return self._fail(
                job, f"no handler is registered for job kind {job.kind!r}", final=True
            )
        prepare = self.registry.prepares.get(job.kind)
        prepared: Any = None
        try:
            if prepare is not None:
                # The lease was just confirmed: do the job's I/O with no transaction open;
                # the handler's transaction confirms the lease again.
                prepared = prepare(dict(job.payload))
            with unit_of_work(self.database.sessions, self.bus) as session:
                # Confirm and renew the lease first, in the handler's transaction: a job that
                # waited in the batch past its lease may have been taken by another worker.
                # On PostgreSQL the row stays locked until commit, so no claim can take it
                # while the handler runs, however long it runs.
                renewed = session.execute(
                    _RENEW, self._mine(job, lease_end=clock.now() + self.lease)
                )
                if renewed.rowcount != 1:  # type: ignore[attr-defined]
                    raise LeaseLost(job.id)
                handler(
                    JobContext(
                        session, job.id, job.kind, job.attempts, job.idempotency_key, prepared
                    ),
                    dict(job.payload),
                )
                done = session.execute(_SUCCEED, self._mine(job, finished=clock.now()))
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    raise LeaseLost(job.id)
        except LeaseLost:
            log.warning("lease lost; another worker owns the job now")
            return "lease lost"
        except Exception as exc:
            log.warning("job failed", attempt=job.attempts, error=str(exc))
            return self._fail(job, "".join(traceback.format_exception_only(exc)).strip())
        log.debug("job succeeded")
        return "succeeded"

    def _fail(self, job: Job, error: str, *, final: bool = False) -> str:
        dead = final or job.attempts >= job.max_attempts
        now = clock.now()
        values: dict[str, Any] = {"last_error": error[:4000], "leased_until": None}
        if dead:
            values.update(status=DEAD, finished_at=now)
        else:
            delay = backoff_seconds(
                job.attempts,
                base=self.settings.job_backoff_base_seconds,
                cap=self.settings.job_backoff_max_seconds,
            )
            values.update(status=QUEUED, run_at=now + timedelta(seconds=delay))
        with unit_of_work(self.database.sessions, None) as session:
            result = session.execute(update(Job).where(self._owned(job)).values(**values))
            kept = result.rowcount == 1  # type: ignore[attr-defined]
        if not kept:
            # Another worker took the job after our lease ran out; its attempt decides.
            log.warning("lease lost before the failure was recorded", error=error)
            return "lease lost"
        if dead:
            log.error("job dead-lettered", attempts=job.attempts, error=error)
            return "dead"
        return "retried"

    # -- schedules and heartbeat -----------------------------------------------------------
    def sync_schedules(self) -> None:
        """Make the schedules table match the registry, keeping next-run times already set.

        A schedule whose cron changed starts over from now; one whose payload changed keeps
        its next run; one no longer in the registry is deleted (it would fire forever).
        """
        now = clock.now()
        with unit_of_work(self.database.sessions, None) as session:
            existing = {s.name: s for s in session.scalars(select(Schedule))}
            for spec in self.registry.schedules.values():
                row = existing.get(spec.name)
                if row is None:
                    insert = _insert_for(session)
                    session.execute(
                        insert(Schedule)
                        .values(
                            name=spec.name,
                            cron=spec.cron,
                            kind=spec.kind,
                            payload=spec.payload,
                            next_run_at=croniter(spec.cron, now).get_next(datetime),
                        )
                        .on_conflict_do_nothing(index_elements=["name"])
                    )
                    continue
                if row.cron != spec.cron:
                    row.cron = spec.cron
                    row.next_run_at = croniter(spec.cron, now).get_next(datetime)
                if row.kind != spec.kind or row.payload != spec.payload:
                    row.kind, row.payload = spec.kind, spec.payload
            gone = set(existing) - set(self.registry.schedules)
            if gone:
                session.execute(delete(Schedule).where(Schedule.name.in_(gone)))
        self._schedules_synced = True

    def tick_schedules(self) -> int:
        """Enqueue one job per due schedule; a compare-and-set on next_run_at stops doubles.

        Runs missed while no worker ran are not made up: a due schedule fires once and its
        next run is computed from now.
        """
        now = clock.now()
        fired = 0
        with unit_of_work(self.database.sessions, None) as session:
            due = list(session.scalars(select(Schedule).where(Schedule.next_run_at <= now)))
            for row in due:
                if not croniter.is_valid(row.cron):
                    log.error("schedule has an invalid cron; skipped", schedule=row.name)
                    continue
                # Read before the UPDATE: it synchronises ``row`` to the following run.
                name, kind, payload, due_at = row.name, row.kind, dict(row.payload), row.next_run_at
                following = croniter(row.cron, now).get_next(datetime)
                won = session.execute(
                    update(Schedule)
                    .where(Schedule.name == name, Schedule.next_run_at == due_at)
                    .values(next_run_at=following, last_run_at=now)
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    enqueue(
                        session,
                        kind,
                        {**payload, "scheduled_for": due_at.isoformat()},
                        idempotency_key=f"schedule:{name}:{due_at.isoformat()}",
                    )
                    fired += 1
        return fired

    def heartbeat(self) -> None:
        """Say this worker is alive. Prunes the rows no longer needed to tell when a worker
        last ran, now that this one runs: stopped workers', and any older than a day (a
        worker that died without stopping)."""
        now = clock.now()
        with unit_of_work(self.database.sessions, None) as session:
            stale = now - timedelta(days=1)
            session.execute(
                delete(WorkerHeartbeat).where(
                    WorkerHeartbeat.worker_id != self.worker_id,
                    or_(
                        WorkerHeartbeat.last_seen_at < stale,
                        WorkerHeartbeat.stopped_at.is_not(None),
                    ),
                )
            )
            row = session.get(WorkerHeartbeat, self.worker_id)
            if row is None:
                session.add(
                    WorkerHeartbeat(
                        worker_id=self.worker_id,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=self.started_at,
                        last_seen_at=now,
                    )
                )
            else:
                row.last_seen_at, row.stopped_at = now, None
        self._last_beat = time.monotonic()

    def _maybe_beat(self) -> None:
        # Beat well inside the staleness window that /readyz applies.
        interval = min(5.0, self.settings.worker_heartbeat_stale_seconds / 3)
        if time.monotonic() - self._last_beat >= interval:
            self.heartbeat()

    def _mark_stopped(self) -> None:
        """Keep this worker's heartbeat, marked stopped now: never counted alive, it still
        says when a worker last ran ("no worker since ...") until another one beats."""
        now = clock.now()
        with unit_of_work(self.database.sessions, None) as session:
            session.execute(
                update(WorkerHeartbeat)
                .where(WorkerHeartbeat.worker_id == self.worker_id)
                .values(last_seen_at=now, stopped_at=now)
            )

    # -- loop -------------------------------------------------------------------------------
    def run_forever(self) -> None:
        """Run passes until ``stop``; a failing pass (database down) is logged and retried."""
        log.info("worker started", worker_id=self.worker_id)
        while not self._stop.is_set():
            try:
                if not self._schedules_synced:
                    self.sync_schedules()
                self._maybe_beat()
                ran = self.run_once()
            except Exception:
                self.consecutive_failures += 1
                pause = min(
                    self.settings.worker_poll_interval_seconds
                    * 2 ** min(self.consecutive_failures, 10),
                    MAX_FAILURE_PAUSE_SECONDS,
                )
                log.exception(
                    "worker pass failed; retrying",
                    failures=self.consecutive_failures,
                    pause_seconds=pause,
                )
                self._stop.wait(pause)
                continue
            self.consecutive_failures = 0
            if ran == 0:
                self._stop.wait(self.settings.worker_poll_interval_seconds)
        try:
            self._mark_stopped()
        except Exception:
            log.warning("could not mark the worker heartbeat stopped", exc_info=True)
        log.info("worker stopped", worker_id=self.worker_id)

    def start_in_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name="firetower-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_seconds: float = 10) -> None:
        """Finish the job running, release the claimed jobs not started, and end the loop;
        wait up to ``timeout_seconds`` for that (0: only ask, as the SIGTERM handler does)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)


class LeaseLost(Exception):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: lease taken by another worker")


class WorkerStatus(BaseModel):
    """Whether some worker is alive, when one last beat, and what waits for one."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    alive: bool
    """Some worker that has not stopped has beaten within ``worker_heartbeat_stale_seconds``."""
    last_seen_at: datetime | None
    """When a worker was last seen running: the latest heartbeat on record, or the moment
    the last one stopped cleanly; null when none is on record (no worker has run here, or
    none since an upgrade to schema 0027: before it, a clean stop deleted its heartbeat)."""
    waiting_jobs: int | None
    """Jobs a worker would take now; counted only when none is alive (null otherwise), so
    that the answer stays one small query while all is well."""


def worker_status(session: Session, *, stale_seconds: float) -> WorkerStatus:
    """Is a worker alive, and when was one last seen? What /readyz and the console ask.

    While a worker is alive this is one query on the small heartbeat table; without one it
    also counts the jobs waiting (pages, notifications, probes, SLO checks: nothing runs).
    A worker that stopped cleanly is never alive, however recent its last beat.
    """
    now = clock.now()
    running = case((WorkerHeartbeat.stopped_at.is_(None), WorkerHeartbeat.last_seen_at))
    last_seen, last_running = session.execute(
        select(func.max(WorkerHeartbeat.last_seen_at), func.max(running))
    ).one()
    if last_running is not None and last_running >= now - timedelta(seconds=stale_seconds):
        return WorkerStatus(alive=True, last_seen_at=last_seen, waiting_jobs=None)
    waiting = session.scalar(select(func.count()).select_from(Job).where(_claimable(now)))
    return WorkerStatus(alive=False, last_seen_at=last_seen, waiting_jobs=int(waiting or 0))


def dead_letters(session: Session, limit: int = 100) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.status == DEAD).order_by(Job.finished_at.desc()).limit(limit)
        )
    )


def retry_dead(session: Session, job_id: int) -> bool:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == DEAD)
        .values(
            status=QUEUED,
            attempts=0,
            run_at=clock.now(),
            finished_at=None,
            leased_until=None,
            lease_owner=None,
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def delete_succeeded_jobs(session: Session, *, finished_before: datetime) -> int:
    """Delete succeeded jobs finished before a time; dead jobs stay until someone acts."""
    result = session.execute(
        delete(Job).where(Job.status == SUCCEEDED, Job.finished_at < finished_before)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def register_maintenance(registry: JobRegistry, *, keep_succeeded_days: float) -> None:
    """The queue's own upkeep: a nightly job deleting succeeded jobs older than N days.

    Once a succeeded job is deleted its idempotency key can be used again.
    """

    @registry.handler(CLEANUP_KIND)
    def cleanup(context: JobContext, payload: dict[str, Any]) -> None:
        cutoff = clock.now() - timedelta(days=float(payload["keep_days"]))
        deleted = delete_succeeded_jobs(context.session, finished_before=cutoff)
        log.info("succeeded jobs deleted", count=deleted, finished_before=cutoff.isoformat())

    registry.schedule(
        "jobs.cleanup", "17 3 * * *", CLEANUP_KIND, {"keep_days": keep_succeeded_days}
    )


class JobRead(BaseModel):
    """A job as the dead-letter views show it."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
