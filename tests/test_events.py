"""The event bus: reactions inside the transaction, listeners after a successful commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from firetower.db import Database
from firetower.events import Event, EventBus, ReactionLoop, record, unit_of_work
from firetower.jobs import Job, WorkerHeartbeat, enqueue
from firetower.runtime import Runtime
from firetower.settings import Settings


@dataclass(frozen=True)
class Declared(Event):
    name: str


@dataclass(frozen=True)
class Paged(Event):
    name: str


@dataclass(frozen=True)
class SpecialDeclared(Declared):
    pass


class Boom(Exception):
    pass


def _job_count(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def _beat_count(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(WorkerHeartbeat)) or 0)


def _change(session: Session, name: str) -> None:
    """A stand-in for a domain change: a row written in the operation's transaction."""
    from firetower import clock

    session.add(
        WorkerHeartbeat(
            worker_id=name, hostname="h", pid=1, started_at=clock.now(), last_seen_at=clock.now()
        )
    )


def _page_on_declared(session: Session, event: Any) -> None:
    enqueue(session, "page", {"name": event.name})


def test_reaction_enqueues_in_the_same_transaction(database: Database) -> None:
    bus = EventBus()
    bus.react(Declared, _page_on_declared)
    with unit_of_work(database.sessions, bus) as session:
        _change(session, "a")
        record(session, Declared("a"))
    assert _job_count(database) == 1
    assert _beat_count(database) == 1


def test_failed_operation_rolls_back_the_job_its_reaction_enqueued(database: Database) -> None:
    bus = EventBus()
    bus.react(Declared, _page_on_declared)

    def fail_later(session: Session, event: Any) -> None:
        raise Boom("second reaction fails after the first enqueued")

    bus.react(Declared, fail_later)
    with pytest.raises(Boom), unit_of_work(database.sessions, bus) as session:
        _change(session, "a")
        record(session, Declared("a"))
    assert _job_count(database) == 0
    assert _beat_count(database) == 0


def test_failure_in_the_operation_runs_no_reaction(database: Database) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.react(Declared, lambda session, event: seen.append(event))
    with pytest.raises(Boom), unit_of_work(database.sessions, bus) as session:
        record(session, Declared("a"))
        raise Boom
    assert seen == []


def test_after_commit_listener_runs_after_commit_only(database: Database) -> None:
    bus = EventBus()
    observed: list[tuple[str, int]] = []
    # The listener looks at the database from another session: the change must be visible.
    bus.listen(Declared, lambda event: observed.append((event.name, _beat_count(database))))
    with unit_of_work(database.sessions, bus) as session:
        _change(session, "a")
        record(session, Declared("a"))
        assert observed == []
    assert observed == [("a", 1)]


def test_after_commit_listener_never_runs_on_rollback(database: Database) -> None:
    bus = EventBus()
    observed: list[Event] = []
    bus.listen(Declared, observed.append)
    bus.react(Declared, lambda session, event: (_ for _ in ()).throw(Boom()))
    with pytest.raises(Boom), unit_of_work(database.sessions, bus) as session:
        _change(session, "a")
        record(session, Declared("a"))
    assert observed == []
    assert _beat_count(database) == 0


def test_after_commit_listener_not_run_when_commit_fails(database: Database) -> None:
    bus = EventBus()
    observed: list[Event] = []
    bus.listen(Declared, observed.append)
    with unit_of_work(database.sessions, None) as session:
        _change(session, "dup")
    clash = pytest.raises(Exception, match=r"(?i)unique|duplicate")
    with clash, unit_of_work(database.sessions, bus) as session:
        _change(session, "dup")  # the primary key clash surfaces at flush/commit
        record(session, Declared("dup"))
    assert observed == []


def test_failing_listener_does_not_undo_the_change(database: Database) -> None:
    bus = EventBus()
    later: list[Event] = []

    def broken(event: Any) -> None:
        raise Boom("live update hiccup")

    bus.listen(Declared, broken)
    bus.listen(Declared, later.append)
    with unit_of_work(database.sessions, bus) as session:
        _change(session, "a")
        record(session, Declared("a"))
    assert _beat_count(database) == 1
    assert later == [Declared("a")], "a listener after the failing one still runs"


def test_reactions_to_reactions_drain(database: Database) -> None:
    bus = EventBus()
    order: list[str] = []

    def declared(session: Session, event: Any) -> None:
        order.append(f"declared:{event.name}")
        record(session, Paged(event.name))

    def paged(session: Session, event: Any) -> None:
        order.append(f"paged:{event.name}")
        enqueue(session, "notify", {"name": event.name})

    bus.react(Declared, declared)
    bus.react(Paged, paged)
    listened: list[Event] = []
    bus.listen(Event, listened.append)
    with unit_of_work(database.sessions, bus) as session:
        record(session, Declared("a"))
        record(session, Declared("b"))
    assert order == ["declared:a", "declared:b", "paged:a", "paged:b"]
    assert _job_count(database) == 2
    assert listened == [Declared("a"), Declared("b"), Paged("a"), Paged("b")]


def test_a_once_per_round_reaction_runs_once_for_the_events_recorded_together(
    database: Database,
) -> None:
    bus = EventBus()
    once: list[str] = []
    each: list[str] = []
    bus.react(Declared, lambda session, event: once.append(event.name), once_per_round=True)
    bus.react(Declared, lambda session, event: each.append(event.name))
    # A reaction of the first round records one more: the next round runs it again.
    bus.react(Paged, lambda session, event: record(session, Declared(f"after {event.name}")))
    listened: list[Event] = []
    bus.listen(Declared, listened.append)
    with unit_of_work(database.sessions, bus) as session:
        for name in ("a", "b", "c"):
            record(session, Declared(name))
        record(session, Paged("p"))
    assert once == ["a", "after p"]
    assert each == ["a", "b", "c", "after p"]
    assert listened == [Declared(n) for n in ("a", "b", "c", "after p")], "listeners see all"


def test_subclass_events_reach_base_reactions(database: Database) -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.react(Declared, lambda session, event: seen.append("base"))
    bus.react(SpecialDeclared, lambda session, event: seen.append("special"))
    with unit_of_work(database.sessions, bus) as session:
        record(session, SpecialDeclared("a"))
    assert sorted(seen) == ["base", "special"]


def test_reaction_loop_is_refused_and_rolled_back(database: Database) -> None:
    bus = EventBus()
    bus.react(Declared, lambda session, event: record(session, Paged(event.name)))
    bus.react(Paged, lambda session, event: record(session, Declared(event.name)))
    bus.react(Paged, _page_on_declared)
    loop = pytest.raises(ReactionLoop, match="feed each other")
    with loop, unit_of_work(database.sessions, bus) as session:
        record(session, Declared("a"))
    assert _job_count(database) == 0


def test_runtime_transaction_uses_the_runtime_bus(settings: Settings, database: Database) -> None:
    runtime = Runtime(settings=settings, database=database)
    runtime.bus.react(Declared, _page_on_declared)
    with runtime.transaction() as session:
        record(session, Declared("a"))
    with runtime.read() as session:
        job = session.scalars(select(Job)).one()
    assert job.kind == "page"
    assert job.payload == {"name": "a"}
