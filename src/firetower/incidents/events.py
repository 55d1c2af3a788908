"""Events the incidents domain emits; other domains react to them, incidents knows none of them."""

from __future__ import annotations

from dataclasses import dataclass

from firetower.events import Event


@dataclass(frozen=True)
class IncidentEvent(Event):
    incident_id: int
    ref: str


@dataclass(frozen=True)
class IncidentDeclared(IncidentEvent):
    severity: str
    escalate_immediately: bool


@dataclass(frozen=True)
class IncidentEscalationFlagged(IncidentEvent):
    """The severity policy asks for immediate escalation (data, security or revenue at risk)."""

    rule: str


@dataclass(frozen=True)
class IncidentStatusChanged(IncidentEvent):
    before: str
    after: str


@dataclass(frozen=True)
class IncidentSeverityChanged(IncidentEvent):
    before: str
    after: str
    rule: str | None


@dataclass(frozen=True)
class IncidentResolved(IncidentEvent):
    pass


@dataclass(frozen=True)
class TimelineAppended(IncidentEvent):
    """Any timeline entry; live views listen to this one."""

    event_id: int
    kind: str
