"""Durable jobs: enqueued in the caller's transaction, leased by workers, retried, dead-lettered.

Work that must not be lost (a page, a notification, a runbook step) is a row in ``jobs``
written in the same transaction as the change that caused it. A worker leases due jobs
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has a single writer), runs the handler in
a transaction that also marks the job done, and on failure retries with exponential backoff
and jitter until ``max_attempts``, then dead-letters it. A job whose worker died is taken
again once its lease expires. An idempotency key makes a second enqueue of the same work
a no-op. Cron schedules enqueue at most one run per tick, however many workers run.
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
from typing import Any

import structlog
from croniter import croniter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Index, Integer, String, Text, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from firetower import clock
from firetower.db import Base, Database, JSONType, UTCDateTime
from firetower.events import EventBus, unit_of_work
from firetower.metrics import JOB_DURATION, JOBS_FINISHED

log = structlog.get_logger(__name__)

QUEUED, RUNNING, SUCCEEDED, DEAD = "queued", "running", "succeeded", "dead"


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


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its payload: its session (the job's transaction) and identity."""

    session: Session
    job_id: int
    kind: str
    attempt: int
    idempotency_key: str | None


Handler = Callable[[JobContext, dict[str, Any]], None]


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
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)

    def handler(self, kind: str) -> Callable[[Handler], Handler]:
        def register(func: Handler) -> Handler:
            if kind in self.handlers:
                raise ValueError(f"a handler for job kind {kind!r} is already registered")
            self.handlers[kind] = func
            return func

        return register

    def schedule(
        self, name: str, cron: str, kind: str, payload: dict[str, Any] | None = None
    ) -> None:
        if not croniter.is_valid(cron):
            raise ValueError(f"schedule {name!r}: {cron!r} is not a cron expression")
        self.schedules[name] = ScheduleSpec(name, cron, kind, payload or {})


def _insert_for(session: Session) -> Callable[..., Any]:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
) -> int | None:
    """Add a job in the caller's transaction. Returns its id, or None if the key was seen."""
    now = clock.now()
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
    insert = _insert_for(session)
    statement = insert(Job).values(**values)
    if idempotency_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    result = session.execute(statement.returning(Job.id))
    return result.scalar_one_or_none()


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass -------------------------------------------------------------------------
    def claim(self) -> list[Job]:
        now = clock.now()
        lease = now + timedelta(seconds=self.settings.job_lease_seconds)
        with unit_of_work(self.database.sessions, None) as session:
            due = (
                select(Job.id)
                .where(
                    or_(
                        (Job.status == QUEUED) & (Job.run_at <= now),
                        (Job.status == RUNNING) & (Job.leased_until < now),
                    )
                )
                .order_by(Job.run_at, Job.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            ids = list(session.scalars(due))
            if not ids:
                return []
            session.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(
                    status=RUNNING,
                    attempts=Job.attempts + 1,
                    leased_until=lease,
                    lease_owner=self.worker_id,
                )
            )
            jobs = list(session.scalars(select(Job).where(Job.id.in_(ids)).order_by(Job.id)))
            session.expunge_all()
            return jobs

    def run_once(self) -> int:
        """Claim one batch and run it. Returns how many jobs were run."""
        self.tick_schedules()
        jobs = self.claim()
        for job in jobs:
            self._run(job)
        return len(jobs)

    def _run(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.id, job_kind=job.kind)
        started = time.perf_counter()
        try:
            handler = self.registry.handlers.get(job.kind)
            if handler is None:
                self._fail(job, f"no handler is registered for job kind {job.kind!r}", final=True)
                return
            try:
                with unit_of_work(self.database.sessions, self.bus) as session:
                    handler(
                        JobContext(session, job.id, job.kind, job.attempts, job.idempotency_key),
                        dict(job.payload),
                    )
                    done = session.execute(
                        update(Job)
                        .where(
                            Job.id == job.id,
                            Job.lease_owner == self.worker_id,
                            Job.attempts == job.attempts,
                            Job.status == RUNNING,
                        )
                        .values(status=SUCCEEDED, finished_at=clock.now(), leased_until=None)
                    )
                    if done.rowcount != 1:  # type: ignore[attr-defined]
                        raise LeaseLost(job.id)
            except LeaseLost:
                log.warning("lease lost; another worker owns the job now")
                return
            except Exception as exc:
                self._fail(job, "".join(traceback.format_exception_only(exc)).strip())
                log.warning("job failed", attempt=job.attempts, error=str(exc))
                return
            JOBS_FINISHED.labels(job.kind, "succeeded").inc()
            log.debug("job succeeded")
        finally:
            JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("job_id", "job_kind")

    def _fail(self, job: Job, error: str, *, final: bool = False) -> None:
        dead = final or job.attempts >= job.max_attempts
        values: dict[str, Any] = {"last_error": error[:4000], "leased_until": None}
        if dead:
            values.update(status=DEAD, finished_at=clock.now())
        else:
            delay = backoff_seconds(
                job.attempts,
                base=self.settings.job_backoff_base_seconds,
                cap=self.settings.job_backoff_max_seconds,
            )
            values.update(status=QUEUED, run_at=clock.now() + timedelta(seconds=delay))
        with unit_of_work(self.database.sessions, None) as session:
            session.execute(
                update(Job)
                .where(Job.id == job.id, Job.lease_owner == self.worker_id)
                .values(**values)
            )
        JOBS_FINISHED.labels(job.kind, "dead" if dead else "retried").inc()
        if dead:
            log.error("job dead-lettered", attempts=job.attempts, error=error)

    # -- schedules and heartbeat -----------------------------------------------------------
    def sync_schedules(self) -> None:
        """Make the schedules table match the registry, keeping next-run times already set."""
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
                elif row.cron != spec.cron or row.kind != spec.kind:
                    row.cron, row.kind, row.payload = spec.cron, spec.kind, spec.payload
                    row.next_run_at = croniter(spec.cron, now).get_next(datetime)

    def tick_schedules(self) -> int:
        """Enqueue one job per due schedule; a compare-and-set on next_run_at stops doubles."""
        now = clock.now()
        fired = 0
        with unit_of_work(self.database.sessions, None) as session:
            due = list(session.scalars(select(Schedule).where(Schedule.next_run_at <= now)))
            for row in due:
                following = croniter(row.cron, now).get_next(datetime)
                won = session.execute(
                    update(Schedule)
                    .where(Schedule.name == row.name, Schedule.next_run_at == row.next_run_at)
                    .values(next_run_at=following, last_run_at=now)
                )
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    enqueue(
                        session,
                        row.kind,
                        {**row.payload, "scheduled_for": row.next_run_at.isoformat()},
                        idempotency_key=f"schedule:{row.name}:{row.next_run_at.isoformat()}",
                    )
                    fired += 1
        return fired

    def heartbeat(self) -> None:
        now = clock.now()
        with unit_of_work(self.database.sessions, None) as session:
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
                row.last_seen_at = now
            stale = now - timedelta(days=1)
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < stale))

    # -- loop -------------------------------------------------------------------------------
    def run_forever(self) -> None:
        log.info("worker started", worker_id=self.worker_id)
        self.sync_schedules()
        last_beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last_beat >= 5:
                self.heartbeat()
                last_beat = time.monotonic()
            try:
                ran = self.run_once()
            except Exception:
                log.exception("worker pass failed; retrying")
                ran = 0
            if ran == 0:
                self._stop.wait(self.settings.worker_poll_interval_seconds)
        log.info("worker stopped", worker_id=self.worker_id)

    def start_in_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name="firetower-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_seconds: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)


class LeaseLost(Exception):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: lease taken by another worker")


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
        .values(status=QUEUED, attempts=0, run_at=clock.now(), finished_at=None)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


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
