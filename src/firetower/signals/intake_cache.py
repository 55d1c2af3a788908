"""What intake reads in every transaction and what rarely changes, kept by each process.

Every intake transaction needs the live integrations, the routing and inhibition rules,
the silences and maintenance windows, the catalog's services and, for each service, its
active incident. Read afresh, they were a third of the time an intake transaction holds
SQLite's write lock. Here a process keeps them as *views*, each stamped with the
generation of its topic (``IntakeGeneration``) it was read at; a transaction reads the
generations (one small query) and uses a view only while its generation is current.

Database triggers write a new random generation on every change (migration 0012), so
every writer invalidates every process's views: another server process, the worker, the
CLI, plain SQL. A view read inside a transaction that changed a watched table holds that
transaction's changes; should it roll back, its generation is never seen again, so the
view is never taken for current. A view is never changed once made: a newer one replaces
it, so threads share them without locks.

On PostgreSQL only the ``routing`` topic is kept. Intake there reads a service's active
incident under the service's row lock, and a generation that every incident opened
rewrites would make concurrent writers queue on its row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast
from weakref import WeakKeyDictionary

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from firetower import clock
from firetower.catalog.models import Service
from firetower.incidents.lifecycle import ACTIVE
from firetower.incidents.models import Incident, incident_services
from firetower.signals.models import (
    IntakeGeneration,
    Integration,
    MaintenanceWindow,
    Silence,
)
from firetower.signals.routing import Routing, compile_matchers

ROUTING = "routing"
INCIDENTS = "incidents"
View = TypeVar("View", "RoutingView", "IncidentsView")


class ServiceRef(NamedTuple):
    """What routing needs of a catalog service (a whole ORM object costs more to load)."""

    id: int
    name: str


class Timed(NamedTuple):
    """A silence's matchers, or a maintenance window's service, with when it applies."""

    what: Any
    starts_at: datetime
    ends_at: datetime

    def applies(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True, eq=False)
class RoutingView:
    """The ``routing`` topic as read at ``generation`` (None: not kept, read for one use)."""

    generation: int | None
    integrations: dict[str, Integration]
    """The live integrations by key prefix: in no session, shared, read-only."""
    routing: Routing
    silences: tuple[Timed, ...]
    """Silences neither expired nor ended when read (``what``: their compiled matchers)."""
    windows: tuple[Timed, ...]
    """Maintenance windows not ended when read (``what``: the service name)."""
    services: dict[str, ServiceRef]

    @classmethod
    def read(cls, session: Session, generation: int | None) -> RoutingView:
        now = clock.now()
        # Built from plain rows, outside any session: threads share them, and the session's
        # own instances (a caller may hold one) stay where they are.
        table = Integration.__table__
        live = session.execute(select(table).where(table.c.revoked_at.is_(None)))
        integrations = [Integration(**row._mapping) for row in live]
        silences = session.execute(
            select(Silence.matchers, Silence.starts_at, Silence.ends_at)
            .where(Silence.expired_at.is_(None))
            .where(Silence.ends_at > now)
            .order_by(Silence.id)
        )
        windows = session.execute(
            select(
                MaintenanceWindow.service_name,
                MaintenanceWindow.starts_at,
                MaintenanceWindow.ends_at,
            ).where(MaintenanceWindow.ends_at > now)
        )
        services = session.execute(select(Service.id, Service.name))
        return cls(
            generation,
            {integration.key_prefix: integration for integration in integrations},
            Routing.load(session),
            tuple(Timed(compile_matchers(what), *when) for what, *when in silences),
            tuple(Timed(*row) for row in windows),
            {name: ServiceRef(service_id, name) for service_id, name in services},
        )


ACTIVE_INCIDENTS = (
    select(incident_services.c.service_id, func.min(Incident.id))
    .join(Incident, Incident.id == incident_services.c.incident_id)
    .where(Incident.status.in_([s.value for s in ACTIVE]))
    .group_by(incident_services.c.service_id)
)
"""Each service's active incident, the oldest where it has several (as routing picks)."""


@dataclass(frozen=True, eq=False)
class IncidentsView:
    """The ``incidents`` topic as read at ``generation``."""

    generation: int | None
    active: dict[int, int]
    """The id of each service's active incident, by service id; absent: it has none."""

    @classmethod
    def read(cls, session: Session, generation: int | None) -> IncidentsView:
        return cls(generation, dict(session.execute(ACTIVE_INCIDENTS).all()))


@dataclass(eq=False)
class IntakeCache:
    """One process's views of one database, and the attach-note jobs known to be queued."""

    kept: dict[str, Any] = field(default_factory=dict)
    """The latest view of each topic, by topic."""
    attach_jobs: set[tuple[int, datetime]] = field(default_factory=set)
    """(incident id, minute) whose attach-note job a committed transaction queued, for the
    latest minute only: later requests of that minute need not try to queue it again."""
    _attach_minute: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def views(
        self, session: Session, *, with_incidents: bool
    ) -> tuple[RoutingView, IncidentsView | None]:
        """The current views, read again where a generation moved on since."""
        # At the driver: through the ORM this read cost about 0.4 million more instructions,
        # once per group commit and inside the write turn.
        generations: dict[str, int] = dict(
            session.connection().exec_driver_sql(_GENERATIONS).fetchall()
        )
        routing = self._current(session, ROUTING, generations, RoutingView.read)
        if not with_incidents:
            return routing, None
        return routing, self._current(session, INCIDENTS, generations, IncidentsView.read)

    def _current(
        self,
        session: Session,
        topic: str,
        generations: dict[str, int],
        read: Callable[[Session, int | None], View],
    ) -> View:
        generation = generations.get(topic)
        kept = self.kept.get(topic)
        if kept is not None and generation is not None and kept.generation == generation:
            return cast(View, kept)
        view = read(session, generation)
        # A missing generation (a database emptied by TRUNCATE) keeps nothing: read each time.
        if generation is not None:
            self.kept[topic] = view
        return view

    def last_routing(self) -> RoutingView | None:
        """The routing view last read, with no transaction: it may be out of date, so use it
        only for a guess that the transaction checks."""
        return cast(RoutingView | None, self.kept.get(ROUTING))

    def last_incidents(self) -> IncidentsView | None:
        """The incidents view last read (SQLite only), for a guess as ``last_routing``'s."""
        return cast(IncidentsView | None, self.kept.get(INCIDENTS))

    def attach_job_queued(self, incident_id: int, minute: datetime) -> None:
        """Remember a committed attach-note job of the latest minute (earlier ones are over)."""
        with self._lock:
            if self._attach_minute is None or minute > self._attach_minute:
                self.attach_jobs = set()
                self._attach_minute = minute
            if minute == self._attach_minute:
                self.attach_jobs.add((incident_id, minute))


_GENERATIONS = f"SELECT topic, generation FROM {IntakeGeneration.__tablename__}"  # noqa: S608

_CACHES: WeakKeyDictionary[Engine, IntakeCache] = WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def of(session: Session) -> IntakeCache:
    """This process's cache of the session's database (one per engine)."""
    bind = session.get_bind()
    return of_engine(bind if isinstance(bind, Engine) else bind.engine)


def of_engine(engine: Engine) -> IntakeCache:
    cache = _CACHES.get(engine)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.setdefault(engine, IntakeCache())
    return cache
