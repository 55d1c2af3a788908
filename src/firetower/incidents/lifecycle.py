"""Pure rules of an incident's life: allowed transitions, timestamps derived from the timeline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    triage = "triage"
    investigating = "investigating"
    identified = "identified"
    mitigated = "mitigated"
    resolved = "resolved"
    closed = "closed"
    declined = "declined"
    merged = "merged"
    canceled = "canceled"


ACTIVE = (Status.triage, Status.investigating, Status.identified, Status.mitigated)

# Forward through the story, back when a fix did not hold, or out while nothing is resolved
# yet: declined only from triage (a decision there), canceled from any but mitigated
# (then it was real: resolve it), merged until resolved (a mitigated duplicate too). closed,
# declined, merged and canceled are final.
TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.triage: (
        Status.investigating,
        Status.identified,
        Status.mitigated,
        Status.resolved,
        Status.declined,
        Status.merged,
        Status.canceled,
    ),
    Status.investigating: (
        Status.identified,
        Status.mitigated,
        Status.resolved,
        Status.merged,
        Status.canceled,
    ),
    Status.identified: (
        Status.investigating,
        Status.mitigated,
        Status.resolved,
        Status.merged,
        Status.canceled,
    ),
    Status.mitigated: (Status.investigating, Status.identified, Status.resolved, Status.merged),
    Status.resolved: (Status.investigating, Status.closed),
    Status.closed: (),
    Status.declined: (),
    Status.merged: (),
    Status.canceled: (),
}


class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class Source(StrEnum):
    manual = "manual"
    alert = "alert"
    probe = "probe"
    slo = "slo"
    user_report = "user-report"
    dependency = "dependency"


class IncidentRole(StrEnum):
    commander = "commander"
    communications_lead = "communications_lead"
    scribe = "scribe"
    operations_lead = "operations_lead"


def format_ref(incident_id: int) -> str:
    """An incident's reference as people say it: INC-42."""
    return f"INC-{incident_id}"


def allowed_transitions(current: Status) -> tuple[Status, ...]:
    return TRANSITIONS[current]


class _Event(Protocol):
    kind: str
    at: datetime
    before: Any
    after: Any


@dataclass(frozen=True)
class Lifecycle:
    impact_started_at: datetime | None
    detected_at: datetime | None
    declared_at: datetime | None
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _append_order(event: _Event) -> int:
    order = getattr(event, "id", None)
    return order if isinstance(order, int) else 0


def derive_lifecycle(events: Iterable[_Event]) -> Lifecycle:
    """Replay the timeline in append order; the result is what the incident's columns must say.

    Append order is the ``id`` of stored events (events without one keep the order given),
    never their timestamps: two entries may share an instant, and a server whose clock is
    behind may write an entry stamped earlier than the one before it. Sorting by time would
    then replay "reopened, resolved" for "resolved, reopened".

    acknowledged: the first acknowledgement, or the first move out of triage.
    mitigated: the first time it reached mitigated (or resolved, if mitigation was skipped).
    resolved and closed: the latest, cleared again by a reopen.
    """
    impact = detected = declared = acknowledged = mitigated = resolved = closed = None
    for event in sorted(events, key=_append_order):
        after = event.after if isinstance(event.after, dict) else {}
        if event.kind == "declared":
            declared = event.at
            detected = _parse(after.get("detected_at")) or event.at
            impact = _parse(after.get("impact_started_at"))
        elif event.kind == "impact_started_changed":
            impact = _parse(after.get("impact_started_at"))
        elif event.kind == "acknowledged":
            acknowledged = acknowledged or event.at
        elif event.kind == "status_changed":
            to = after.get("status")
            if to != Status.triage and event.before and event.before.get("status") == Status.triage:
                acknowledged = acknowledged or event.at
            if to in (Status.mitigated, Status.resolved):
                mitigated = mitigated or event.at
            if to == Status.resolved:
                resolved = event.at
            elif to == Status.closed:
                closed = event.at
            elif to in ACTIVE:
                resolved = closed = None
    return Lifecycle(impact, detected, declared, acknowledged, mitigated, resolved, closed)
