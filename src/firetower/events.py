"""Domain events: recorded by a change, handled in two phases.

A service function records events on its session (``record``). When the unit of work
commits, *transactional reactions* run first, inside the same transaction: they enqueue
durable jobs, so a page or a notification is written together with the change that
caused it or not at all. After the commit succeeds, *after-commit listeners* run for
ephemeral work (live updates to browsers); a failure there is logged and never undoes the
change. This is how ``incidents`` stays ignorant of who pages or who updates the status page.

Errors: a reaction's exception rolls the whole operation back and propagates; reactions
that keep recording events past ``MAX_REACTION_ROUNDS`` rounds raise ``ReactionLoop``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session

from firetower import db
from firetower.db import WRITER_LOCK_INFO

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of every domain event."""


TransactionalReaction = Callable[[Session, Any], None]
AfterCommitListener = Callable[[Any], None]


@dataclass
class EventBus:
    reactions: dict[type[Event], list[TransactionalReaction]] = field(
        default_factory=lambda: defaultdict(list)
    )
    listeners: dict[type[Event], list[AfterCommitListener]] = field(
        default_factory=lambda: defaultdict(list)
    )
    once_per_round: set[TransactionalReaction] = field(default_factory=set)

    def react(
        self,
        event_type: type[Event],
        reaction: TransactionalReaction,
        *,
        once_per_round: bool = False,
    ) -> None:
        """Run ``reaction`` in the transaction of each ``event_type`` event recorded.

        ``once_per_round``: for a reaction that reads the state rather than its event, run
        it once for all its events of a round (given the first of them), not once per event:
        the events of a round were all recorded before it runs, so it sees every change.
        """
        self.reactions[event_type].append(reaction)
        if once_per_round:
            self.once_per_round.add(reaction)

    def listen(self, event_type: type[Event], listener: AfterCommitListener) -> None:
        self.listeners[event_type].append(listener)

    def _matching(self, table: dict[type[Event], list[Any]], event: Event) -> Iterator[Any]:
        for event_type in type(event).__mro__:
            yield from table.get(event_type, ())


class ReactionLoop(RuntimeError):
    """Reactions kept recording events: almost surely two reactions feeding each other."""


MAX_REACTION_ROUNDS = 50
_PENDING = "firetower.pending_events"
_BUS = "firetower.bus"


def record(session: Session, event: Event) -> None:
    """Record an event on the session; handled when its unit of work commits."""
    session.info.setdefault(_PENDING, []).append(event)


@contextmanager
def unit_of_work(sessions: Callable[[], Session], bus: EventBus | None) -> Iterator[Session]:
    """One operation, one transaction: commit on success, roll back on any error."""
    session = sessions()
    session.info[_BUS] = bus
    writer_lock = session.info.get(WRITER_LOCK_INFO)
    # Past the wait, go on without the lock: SQLite's own busy timeout then decides, and a
    # caller gets "database busy" instead of hanging behind a stuck writer.
    locked = writer_lock is not None and writer_lock.acquire(timeout=db.WRITER_LOCK_WAIT_SECONDS)
    try:
        yield session
        handled: list[Event] = []
        # Reactions may record further events (a reaction to a reaction): drain until quiet.
        rounds = 0
        while pending := session.info.pop(_PENDING, []):
            rounds += 1
            if rounds > MAX_REACTION_ROUNDS:
                kinds = sorted({type(e).__name__ for e in pending})
                raise ReactionLoop(
                    f"reactions still recording events after {MAX_REACTION_ROUNDS} rounds "
                    f"({', '.join(kinds)}): two reactions probably feed each other"
                )
            ran_this_round: set[TransactionalReaction] = set()
            for event in pending:
                if bus is not None:
                    for reaction in bus._matching(bus.reactions, event):
                        if reaction in bus.once_per_round:
                            if reaction in ran_this_round:
                                continue
                            ran_this_round.add(reaction)
                        reaction(session, event)
                handled.append(event)
            session.flush()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        if locked and writer_lock is not None:
            writer_lock.release()
    if bus is None:
        return
    for event in handled:
        for listener in bus._matching(bus.listeners, event):
            try:
                listener(event)
            except Exception:  # a live-update hiccup must never undo a committed change
                log.exception("after-commit listener failed", event_type=type(event).__name__)
