"""Incident operations: the only code that changes an incident, each one landing on its timeline."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from firetower import clock
from firetower.auth import service as auth_service
from firetower.auth.models import User
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.catalog.models import Service
from firetower.db import MAX_ID
from firetower.errors import Conflict, InvalidInput, NotFound
from firetower.events import record
from firetower.incidents.events import (
    IncidentDeclared,
    IncidentEscalationFlagged,
    IncidentResolved,
    IncidentSeverityChanged,
    IncidentStatusChanged,
    TimelineAppended,
)
from firetower.incidents.lifecycle import (
    ACTIVE,
    IncidentRole,
    Severity,
    Source,
    Status,
    allowed_transitions,
    derive_lifecycle,
    format_ref,
)
from firetower.incidents.models import (
    Incident,
    Participant,
    RoleAssignment,
    Task,
    TimelineEvent,
    incident_services,
)
from firetower.incidents.schemas import (
    IncidentCreate,
    IncidentPage,
    IncidentRead,
    IncidentSummary,
    IncidentUpdate,
    RoleRead,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    TimelineEventRead,
)
from firetower.settings import SeverityPolicy, severity_rank

REF = re.compile(r"^INC-(\d{1,12})$")
POLICY_ACTOR = Actor.system("firetower severity policy")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_ref(ref: str, *, field: str = "ref") -> int:
    match = REF.match(ref.strip().upper())
    if not match:
        raise InvalidInput(f"{ref!r} is not an incident reference like INC-42", field=field)
    return int(match.group(1))


def get_incident(session: Session, ref: str, *, field: str = "ref", lock: bool = False) -> Incident:
    """Load an incident by reference; ``lock`` for a change (the row stays locked until commit).

    Without the lock two responders could both pass the transition check on PostgreSQL
    (e.g. one resolves while the other declines) and write an impossible story. SQLite
    serializes writers already (BEGIN IMMEDIATE).
    """
    incident = session.get(
        Incident,
        parse_ref(ref, field=field),
        with_for_update=True if lock else None,
        populate_existing=lock,  # what another transaction committed while this one waited
    )
    if incident is None:
        raise NotFound(f"no incident {ref}", field=field)
    return incident


def lock(session: Session, incident: Incident) -> None:
    """Lock the incident's row for this transaction and re-read it before deciding anything.

    Every change starts here, whoever calls (API, console, CLI, reactions): without it two
    responders could both pass the transition check on PostgreSQL (one resolves while the
    other declines) and write an impossible story. SQLite serializes writers already.
    The row is loaded (``one``), not only selected: the re-read happens as the result is
    read, and what a transaction committed while this one waited for the lock would
    otherwise stay unseen. See ``_lock_for_change`` for the order of locks.
    """
    if session.get_bind().dialect.name == "sqlite":
        return
    session.scalars(
        select(Incident)
        .where(Incident.id == incident.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


MergeLock = Callable[[Session, int], None]
"""Locks the rows of one domain that merging the incident (its id) will change."""
_MERGE_LOCKS: dict[str, MergeLock] = {}


def lock_first_on_merge(domain: str, lock: MergeLock) -> None:
    """Tell the incidents how ``domain`` locks what it changes when an incident is merged
    (signals: the incident's alerts, which move to the survivor), so that a merge locks
    them before the incident (``_lock_for_change``). Called when a runtime is assembled,
    never at import, like ``catalog.refer_to_services``; a second call for a domain
    replaces the first."""
    _MERGE_LOCKS[domain] = lock


def _lock_for_change(
    session: Session,
    incident: Incident,
    actor: Actor,
    *,
    merging_into: str | None = None,
    naming: Sequence[str] = (),
) -> None:
    """Lock the incident for a change by ``actor``, and refuse people on a merged one.

    A merged incident is a pointer to its survivor: people work there, not here. The
    status is read after the lock, so it is the committed one. Firetower itself
    (intake, reactions, policies: actors without a user) may still write, e.g. the note that
    a merged incident's alerts have cleared.

    Lock order on PostgreSQL, for every operation that locks more than one of these:
    **alerts, then services, then incidents**. Intake locks the alerts of a request first
    (to update them), then the services they route to (reading their active incidents under
    that lock), then the incidents it notes on or resolves. So before the incident:
    a merge (``merging_into`` the survivor's reference) locks what the reactions to a merge
    change afterwards (``lock_first_on_merge``: its alerts, which move to the survivor) and
    locks the incident's services as intake does, so that an alert routed to it at that
    moment joins it before the merge and moves with the others, instead of joining it once
    merged; and a change of its services locks those it is to name (``naming``). A
    declaration (``declare``) locks its services the same way before it writes the incident.
    Two incidents are locked in id order: two people merging two incidents into each other
    at once would otherwise each hold one. Taken after the incident, an alert or a service
    that intake holds while it waits for the incident would deadlock the two. An alert that
    joins the incident between the merge's first lock and the incident's is not locked
    first: the merge may still wait for it under the incident's lock, and PostgreSQL then
    ends one of the two: a window between two statements, where before the whole merge was
    one. A group of intake requests also keeps the order only request by request (the
    second may lock an alert of the incident after the first locked its service), and
    PostgreSQL ends one of it and a merge. Intake's group runs again; a person's change runs
    once more (``Runtime.write``), so that the merge goes through rather than answer 503.
    """
    if session.get_bind().dialect.name != "sqlite":
        if merging_into is not None:
            for domain in sorted(_MERGE_LOCKS):
                _MERGE_LOCKS[domain](session, incident.id)
        _lock_services(session, incident.id if merging_into is not None else None, naming)
        match = REF.match(merging_into.strip().upper()) if merging_into is not None else None
        survivor_id = int(match.group(1)) if match else None
        if survivor_id is not None and 0 < survivor_id < incident.id:
            # Refused later if it does not exist; locked now, before the merged one.
            session.scalars(
                select(Incident)
                .where(Incident.id == survivor_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one_or_none()
    lock(session, incident)
    if actor.user_id is None or incident.status != Status.merged.value:
        return
    survivor = incident.merged_into.ref if incident.merged_into is not None else None
    raise Conflict(
        f"{incident.ref} was merged into {survivor or 'another incident'}; "
        "make changes there instead",
        merged_into=survivor,
    )


def _lock_services(session: Session, of_incident_id: int | None, names: Sequence[str]) -> None:
    """Lock as intake does (``FOR NO KEY UPDATE``), in one statement and in name order, the
    services of an incident being merged (``of_incident_id``) and those it is about to name
    (``names``: a change of its services, or a declaration), before the incident (the order
    ``_lock_for_change`` documents). Intake routes to a service's active incident under this
    lock: held here, the routing waits for the merge, the change or the declaration, or they
    for the alert it writes, which then moves to the survivor with the others, sees the
    services as changed, or joins the declared incident. (The foreign key of
    ``incident_services`` takes only ``KEY SHARE``, which intake's lock lets through.)
    Unknown names lock nothing; they are refused later."""
    wanted = []
    if of_incident_id is not None:
        wanted.append(
            Service.id.in_(
                select(incident_services.c.service_id).where(
                    incident_services.c.incident_id == of_incident_id
                )
            )
        )
    if names:
        wanted.append(Service.name.in_(sorted(set(names))))
    if not wanted:
        return
    session.execute(
        select(Service.id)
        .where(or_(*wanted))
        .order_by(Service.name)
        .with_for_update(key_share=True)
    ).all()


def _append(
    session: Session,
    incident: Incident,
    actor: Actor,
    kind: str,
    *,
    before: Any = None,
    after: Any = None,
    text: str = "",
    rule: str | None = None,
    pinned: bool = False,
) -> TimelineEvent:
    """Append one timeline entry and re-derive the lifecycle columns from the whole timeline."""
    now = clock.now()
    event = TimelineEvent(
        incident_id=incident.id,
        at=now,
        actor_id=actor.user_id,
        actor=actor.label,
        kind=kind,
        before=before,
        after=after,
        text=text,
        rule=rule,
        pinned=pinned,
    )
    session.add(event)
    session.flush()
    incident.updated_at = now
    _refresh_lifecycle(session, incident)
    record(session, TimelineAppended(incident.id, incident.ref, event.id, kind))
    return event


def _refresh_lifecycle(session: Session, incident: Incident) -> None:
    events = session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(TimelineEvent.id)
    ).all()
    derived = derive_lifecycle(events)
    incident.impact_started_at = derived.impact_started_at
    incident.detected_at = derived.detected_at
    incident.declared_at = derived.declared_at or incident.declared_at
    incident.acknowledged_at = derived.acknowledged_at
    incident.mitigated_at = derived.mitigated_at
    incident.resolved_at = derived.resolved_at
    incident.closed_at = derived.closed_at


def _join(session: Session, incident: Incident, user_id: int | None) -> None:
    if user_id is None or session.get(Participant, (incident.id, user_id)) is not None:
        return
    session.add(Participant(incident_id=incident.id, user_id=user_id, joined_at=clock.now()))
    session.flush()


# -- severity policy --------------------------------------------------------------------------
def _raise_severity(session: Session, incident: Incident, target: str, rule: str, why: str) -> None:
    if severity_rank(target) >= severity_rank(incident.severity):
        return
    before = incident.severity
    incident.severity = target
    _append(
        session,
        incident,
        POLICY_ACTOR,
        "severity_changed",
        before={"severity": before},
        after={"severity": target},
        rule=rule,
        text=f"Severity raised to {target}: {why}",
    )
    record(session, IncidentSeverityChanged(incident.id, incident.ref, before, target, rule))


def apply_severity_policy(session: Session, incident: Incident, policy: SeverityPolicy) -> None:
    """Raise severity (never lower it) and flag escalation as the configured rules say."""
    risks = [
        name
        for name, at_risk in (
            ("data", incident.data_at_risk),
            ("security", incident.security_at_risk),
            ("revenue", incident.revenue_at_risk),
        )
        if at_risk
    ]
    if risks:
        rule = "risk:" + "+".join(risks)
        _raise_severity(
            session,
            incident,
            policy.risk_minimum_severity,
            rule,
            f"{', '.join(risks)} at risk",
        )
        if not incident.escalate_immediately:
            incident.escalate_immediately = True
            _append(
                session,
                incident,
                POLICY_ACTOR,
                "escalation_flagged",
                before={"escalate_immediately": False},
                after={"escalate_immediately": True},
                rule=rule,
                text=f"Immediate escalation: {', '.join(risks)} at risk",
            )
            record(session, IncidentEscalationFlagged(incident.id, incident.ref, rule))
    if not incident.services:
        return
    radius = catalog.blast_radius(session, [s.name for s in incident.services])
    for threshold in policy.blast_radius_rules:
        reasons = []
        if threshold.min_users is not None and radius.users_estimate >= threshold.min_users:
            reasons.append(
                f"about {radius.users_estimate} users affected (≥ {threshold.min_users})"
            )
        if (
            threshold.min_tier1_services is not None
            and len(radius.tier1_impacted) >= threshold.min_tier1_services
        ):
            reasons.append(f"tier-1 services impacted: {', '.join(radius.tier1_impacted)}")
        if reasons:
            _raise_severity(
                session,
                incident,
                threshold.severity,
                f"blast-radius:{threshold.name}",
                "; ".join(reasons),
            )


def reapply_severity_policy(session: Session, incident: Incident, policy: SeverityPolicy) -> None:
    """Apply the policy again after something outside the incident changed (the catalog).

    Callers pick active incidents before the lock; on PostgreSQL one may be merged, resolved
    or canceled in between. Its status after the lock is the committed one, and an incident
    no longer active keeps its story (a merged one points to its survivor).
    """
    lock(session, incident)
    if Status(incident.status) not in ACTIVE:
        return
    apply_severity_policy(session, incident, policy)


# -- declare and change ----------------------------------------------------------------------
def declare(
    session: Session,
    actor: Actor,
    data: IncidentCreate,
    policy: SeverityPolicy,
    *,
    services_locked: bool = False,
) -> Incident:
    """Declare an incident on ``data.services``, locked first as intake locks them (the
    order ``_lock_for_change`` documents): intake routing an alert to one of them at this
    moment either waits and then joins this incident, or this waits for the incident it
    opened. Its foreign keys alone (``KEY SHARE``) let intake read "none active" beside an
    incident not yet committed, and open a second one for the service.
    ``services_locked``: the caller holds those locks already (intake opening an incident
    for the service it routes to), which saves a statement."""
    actor.require(Role.responder)
    if not services_locked and session.get_bind().dialect.name != "sqlite":
        _lock_services(session, None, data.services)
    services = catalog.services_by_name(session, data.services, field="services")
    now = clock.now()
    detected = data.detected_at or now
    if data.impact_started_at and data.impact_started_at > detected:
        raise InvalidInput(
            "impact_started_at cannot be after the time it was detected", field="impact_started_at"
        )
    if detected > now:
        raise InvalidInput("detected_at cannot be in the future", field="detected_at")
    incident = Incident(
        title=data.title.strip(),
        summary=data.summary,
        severity=data.severity.value,
        status=Status.triage.value,
        source=data.source.value,
        data_at_risk=data.data_at_risk,
        security_at_risk=data.security_at_risk,
        revenue_at_risk=data.revenue_at_risk,
        escalate_immediately=False,
        created_by_id=actor.user_id,
        declared_at=now,
        updated_at=now,
    )
    incident.services = services
    session.add(incident)
    session.flush()
    _append(
        session,
        incident,
        actor,
        "declared",
        after={
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "source": incident.source,
            "services": [s.name for s in services],
            "impact_started_at": _iso(data.impact_started_at),
            "detected_at": _iso(detected),
        },
        text=f"Declared {incident.severity}: {incident.title}",
    )
    _join(session, incident, actor.user_id)
    apply_severity_policy(session, incident, policy)
    record(
        session,
        IncidentDeclared(
            incident.id, incident.ref, incident.severity, incident.escalate_immediately
        ),
    )
    return incident


def _check_transition(incident: Incident, to: Status) -> None:
    current = Status(incident.status)
    allowed = allowed_transitions(current)
    if to not in allowed:
        shown = ", ".join(allowed) if allowed else "none (it is final)"
        raise Conflict(
            f"{incident.ref} cannot go from {current} to {to}; allowed: {shown}",
            field="status",
            allowed=[s.value for s in allowed],
        )


def transition(
    session: Session,
    actor: Actor,
    incident: Incident,
    to: Status,
    *,
    merged_into: str | None = None,
    note: str = "",
) -> Incident:
    actor.require(Role.responder)
    _lock_for_change(
        session,
        incident,
        actor,
        merging_into=merged_into if to == Status.merged else None,
    )
    _check_transition(incident, to)
    after: dict[str, Any] = {"status": to.value}
    if to == Status.merged:
        if not merged_into:
            raise InvalidInput(
                "merging needs merged_into, the surviving incident", field="merged_into"
            )
        target = get_incident(session, merged_into, field="merged_into", lock=True)
        if target.id == incident.id:
            raise InvalidInput("an incident cannot be merged into itself", field="merged_into")
        if Status(target.status) not in ACTIVE:
            raise Conflict(
                f"{target.ref} is {target.status}; merge into an open incident", field="merged_into"
            )
        incident.merged_into = target
        after["merged_into"] = target.ref
        _append(
            session,
            target,
            actor,
            "incident_merged",
            after={"merged": incident.ref},
            text=f"{incident.ref} was merged into this incident",
        )
    elif merged_into:
        raise InvalidInput("merged_into is only for the merged status", field="merged_into")
    before = incident.status
    incident.status = to.value
    _append(
        session,
        incident,
        actor,
        "status_changed",
        before={"status": before},
        after=after,
        text=note,
    )
    _join(session, incident, actor.user_id)
    record(session, IncidentStatusChanged(incident.id, incident.ref, before, to.value))
    if to == Status.resolved:
        record(session, IncidentResolved(incident.id, incident.ref))
    return incident


def acknowledge(session: Session, actor: Actor, incident: Incident) -> Incident:
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    if incident.acknowledged_at is None:
        _append(session, incident, actor, "acknowledged", text=f"Acknowledged by {actor.label}")
    _join(session, incident, actor.user_id)
    return incident


def update(
    session: Session, actor: Actor, incident: Incident, data: IncidentUpdate, policy: SeverityPolicy
) -> Incident:
    """Apply each given field as its own timeline entry; a status goes through ``transition``."""
    actor.require(Role.responder)
    _lock_for_change(
        session,
        incident,
        actor,
        merging_into=data.merged_into if data.status == Status.merged else None,
        naming=data.services or (),
    )
    changes = data.model_dump(exclude_unset=True)
    for key in ("title", "severity", "status"):
        if key in changes and changes[key] is None:
            raise InvalidInput(f"{key} cannot be null", field=key)
    if "merged_into" in changes and changes.get("status") != Status.merged:
        raise InvalidInput("merged_into is only for the merged status", field="merged_into")
    # Validate every reference before the first write.
    new_services = (
        catalog.services_by_name(session, data.services, field="services")
        if data.services is not None
        else None
    )
    if "impact_started_at" in changes and data.impact_started_at is not None:
        limit = incident.detected_at or clock.now()
        if data.impact_started_at > limit:
            raise InvalidInput(
                f"impact_started_at cannot be after the time it was detected ({limit.isoformat()})",
                field="impact_started_at",
            )
    if data.status is not None and data.status != incident.status:
        _check_transition(incident, data.status)
    if data.title is not None and data.title.strip() != incident.title:
        before = incident.title
        incident.title = data.title.strip()
        _append(
            session,
            incident,
            actor,
            "title_changed",
            before={"title": before},
            after={"title": incident.title},
        )
    if data.summary is not None and data.summary != incident.summary:
        before = incident.summary
        incident.summary = data.summary
        _append(
            session,
            incident,
            actor,
            "summary_changed",
            before={"summary": before},
            after={"summary": data.summary},
        )
    if data.severity is not None and data.severity.value != incident.severity:
        before = incident.severity
        incident.severity = data.severity.value
        _append(
            session,
            incident,
            actor,
            "severity_changed",
            before={"severity": before},
            after={"severity": incident.severity},
        )
        record(
            session,
            IncidentSeverityChanged(incident.id, incident.ref, before, incident.severity, None),
        )
    if new_services is not None and {s.id for s in new_services} != {
        s.id for s in incident.services
    }:
        before_names = [s.name for s in incident.services]
        incident.services = new_services
        _append(
            session,
            incident,
            actor,
            "services_changed",
            before={"services": before_names},
            after={"services": [s.name for s in new_services]},
        )
    if "impact_started_at" in changes and data.impact_started_at != incident.impact_started_at:
        _append(
            session,
            incident,
            actor,
            "impact_started_changed",
            before={"impact_started_at": _iso(incident.impact_started_at)},
            after={"impact_started_at": _iso(data.impact_started_at)},
        )
    for flag in ("data_at_risk", "security_at_risk", "revenue_at_risk"):
        value = changes.get(flag)
        if value is not None and value != getattr(incident, flag):
            setattr(incident, flag, value)
            _append(
                session,
                incident,
                actor,
                "risk_changed",
                before={flag: not value},
                after={flag: value},
            )
    if data.status is not None and data.status != incident.status:
        transition(session, actor, incident, data.status, merged_into=data.merged_into)
    apply_severity_policy(session, incident, policy)
    return incident


def assign_role(
    session: Session, actor: Actor, incident: Incident, role: IncidentRole, user_email: str
) -> RoleAssignment:
    """Hand a role to someone; the previous holder's assignment ends at the same instant."""
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    current = _current_role(session, incident, role)
    if current is not None and current.user.email == user_email.strip().lower():
        return current  # the same holder again, even one deactivated since: nothing changes
    user = auth_service.get_active_user_by_email(session, user_email, field="user")
    now = clock.now()
    before = None
    if current is not None:
        current.ended_at = now
        before = {"user": current.user.email}
    assignment = RoleAssignment(
        incident_id=incident.id, role=role.value, user_id=user.id, assigned_at=now
    )
    session.add(assignment)
    session.flush()
    verb = "handed over" if before else "assigned"
    _append(
        session,
        incident,
        actor,
        "role_assigned",
        before=before,
        after={"role": role.value, "user": user.email},
        text=f"{role.value.replace('_', ' ')} {verb} to {user.email}",
    )
    _join(session, incident, user.id)
    return assignment


def _current_role(
    session: Session, incident: Incident, role: IncidentRole
) -> RoleAssignment | None:
    return session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.incident_id == incident.id,
            RoleAssignment.role == role.value,
            RoleAssignment.ended_at.is_(None),
        )
    )


def join(session: Session, actor: Actor, incident: Incident) -> None:
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    if actor.user_id is None:
        raise InvalidInput("only a person can join an incident", field="actor")
    if session.get(Participant, (incident.id, actor.user_id)) is None:
        _join(session, incident, actor.user_id)
        _append(session, incident, actor, "participant_joined", after={"user": actor.label})


def add_note(
    session: Session, actor: Actor, incident: Incident, text: str, *, pinned: bool = False
) -> TimelineEvent:
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    if not text.strip():
        raise InvalidInput("a note needs some text", field="text")
    _join(session, incident, actor.user_id)
    return _append(session, incident, actor, "note", text=text.strip(), pinned=pinned)


def set_pinned(
    session: Session, actor: Actor, incident: Incident, event_id: int, pinned: bool
) -> TimelineEvent:
    """Pinning marks an entry as key for the postmortem; the entry itself never changes."""
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    event = session.get(TimelineEvent, event_id) if 0 < event_id <= MAX_ID else None
    if event is None or event.incident_id != incident.id:
        raise NotFound(f"{incident.ref} has no timeline entry {event_id}", field="event_id")
    if event.pinned != pinned:
        event.pinned = pinned
        _append(
            session,
            incident,
            actor,
            "pinned" if pinned else "unpinned",
            before={"event_id": event.id, "pinned": not pinned},
            after={"event_id": event.id, "pinned": pinned},
            text=f"{'Pinned' if pinned else 'Unpinned'}: {event.text or event.kind}"[:300],
        )
    return event


def add_task(session: Session, actor: Actor, incident: Incident, data: TaskCreate) -> Task:
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    assignee = (
        auth_service.get_active_user_by_email(session, data.assignee, field="assignee")
        if data.assignee
        else None
    )
    task = Task(
        incident_id=incident.id,
        title=data.title.strip(),
        assignee=assignee,
        status="open",
        created_at=clock.now(),
    )
    session.add(task)
    session.flush()
    _append(
        session,
        incident,
        actor,
        "task_added",
        after={"task_id": task.id, "title": task.title, "assignee": data.assignee},
        text=f"Task: {task.title}",
    )
    return task


def _task_change(after: dict[str, Any]) -> str:
    """Says what changed, so the timeline reads "Task done: …" rather than just "Task: …"."""
    parts = []
    if "status" in after:
        parts.append({"done": "done", "open": "reopened", "canceled": "canceled"}[after["status"]])
    if "assignee" in after:
        parts.append(f"assigned to {after['assignee']}" if after["assignee"] else "unassigned")
    if "title" in after:
        parts.append("renamed")
    return ", ".join(parts)


def update_task(
    session: Session, actor: Actor, incident: Incident, task_id: int, data: TaskUpdate
) -> Task:
    actor.require(Role.responder)
    _lock_for_change(session, incident, actor)
    task = session.get(Task, task_id) if 0 < task_id <= MAX_ID else None
    if task is None or task.incident_id != incident.id:
        raise NotFound(f"{incident.ref} has no task {task_id}", field="task_id")
    changes = data.model_dump(exclude_unset=True)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if "assignee" in changes:
        unchanged = (
            data.assignee is not None
            and task.assignee is not None
            and task.assignee.email == data.assignee.strip().lower()
        )
        if unchanged:
            new = task.assignee  # re-sent as it was, even if deactivated since: no change
        elif data.assignee:
            new = auth_service.get_active_user_by_email(session, data.assignee, field="assignee")
        else:
            new = None
        if (new.id if new else None) != task.assignee_id:
            before["assignee"] = task.assignee.email if task.assignee else None
            after["assignee"] = new.email if new else None
            task.assignee = new
    if data.title is not None and data.title != task.title:
        before["title"], after["title"] = task.title, data.title
        task.title = data.title
    if data.status is not None and data.status != task.status:
        before["status"], after["status"] = task.status, data.status
        task.status = data.status
        task.completed_at = clock.now() if data.status == "done" else None
    if after:
        _append(
            session,
            incident,
            actor,
            "task_updated",
            before={"task_id": task.id, **before},
            after={"task_id": task.id, **after},
            text=f"Task {_task_change(after)}: {task.title}",
        )
    return task


# -- reading ---------------------------------------------------------------------------------
def summary_of(incident: Incident) -> IncidentSummary:
    return IncidentSummary(
        ref=incident.ref,
        title=incident.title,
        severity=Severity(incident.severity),
        status=Status(incident.status),
        source=Source(incident.source),
        services=[s.name for s in incident.services],
        declared_at=incident.declared_at,
        resolved_at=incident.resolved_at,
        escalate_immediately=incident.escalate_immediately,
    )


def role_read(assignment: RoleAssignment) -> RoleRead:
    return RoleRead(
        role=IncidentRole(assignment.role),
        user=assignment.user.email,
        user_active=assignment.user.active,
        assigned_at=assignment.assigned_at,
    )


def task_read(task: Task) -> TaskRead:
    return TaskRead(
        id=task.id,
        title=task.title,
        assignee=task.assignee.email if task.assignee else None,
        assignee_active=task.assignee.active if task.assignee else None,
        status=task.status,
        created_at=task.created_at,
        completed_at=task.completed_at,
    )


def read(session: Session, incident: Incident) -> IncidentRead:
    roles = session.scalars(
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id, RoleAssignment.ended_at.is_(None))
        .order_by(RoleAssignment.role)
    )
    participants = session.execute(
        select(User.email, User.active)
        .join(Participant, Participant.user_id == User.id)
        .where(Participant.incident_id == incident.id)
        .order_by(Participant.joined_at)
    ).all()
    tasks = session.scalars(select(Task).where(Task.incident_id == incident.id).order_by(Task.id))
    radius = (
        catalog.blast_radius(session, [s.name for s in incident.services])
        if incident.services
        else None
    )
    return IncidentRead(
        **summary_of(incident).model_dump(),
        summary=incident.summary,
        data_at_risk=incident.data_at_risk,
        security_at_risk=incident.security_at_risk,
        revenue_at_risk=incident.revenue_at_risk,
        merged_into=incident.merged_into.ref if incident.merged_into else None,
        impact_started_at=incident.impact_started_at,
        detected_at=incident.detected_at,
        acknowledged_at=incident.acknowledged_at,
        mitigated_at=incident.mitigated_at,
        closed_at=incident.closed_at,
        allowed_transitions=list(allowed_transitions(Status(incident.status))),
        roles=[role_read(r) for r in roles],
        participants=[email for email, _ in participants],
        deactivated_participants=[email for email, active in participants if not active],
        tasks=[task_read(t) for t in tasks],
        blast_radius=radius,
    )


def timeline(
    session: Session, incident: Incident, *, after_id: int = 0, pinned_only: bool = False
) -> list[TimelineEventRead]:
    query = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id, TimelineEvent.id > after_id)
        .order_by(TimelineEvent.id)
    )
    if pinned_only:
        query = query.where(TimelineEvent.pinned.is_(True))
    return [
        TimelineEventRead(
            id=e.id,
            at=e.at,
            actor=e.actor,
            kind=e.kind,
            before=e.before,
            after=e.after,
            text=e.text,
            rule=e.rule,
            pinned=e.pinned,
        )
        for e in session.scalars(query)
    ]


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id":
            raise ValueError(kind)
        last_id = int(value)
        if not 0 < last_id <= MAX_ID + 1:
            raise ValueError(value)
        return last_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


def list_incidents(
    session: Session,
    *,
    statuses: Sequence[Status] = (),
    severities: Sequence[Severity] = (),
    service: str | None = None,
    active: bool | None = None,
    text: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> IncidentPage:
    """Newest first, paged by an opaque cursor (stable while incidents are being declared)."""
    query = select(Incident).options(selectinload(Incident.services)).order_by(Incident.id.desc())
    if statuses:
        query = query.where(Incident.status.in_([s.value for s in statuses]))
    if severities:
        query = query.where(Incident.severity.in_([s.value for s in severities]))
    if active is not None:
        active_values = [s.value for s in ACTIVE]
        query = query.where(
            Incident.status.in_(active_values) if active else Incident.status.not_in(active_values)
        )
    if service:
        found = catalog.get_service(session, service)
        query = query.where(Incident.services.any(id=found.id))
    if text:
        pattern = f"%{text.replace('%', '').replace('_', '')}%"
        query = query.where(or_(Incident.title.ilike(pattern), Incident.summary.ilike(pattern)))
    if cursor:
        query = query.where(Incident.id < decode_cursor(cursor))
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return IncidentPage(
        items=[summary_of(i) for i in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


def incidents_naming(session: Session, service: Service) -> list[str]:
    """The incidents that name ``service``, oldest first: the catalog keeps it for them."""
    ids = session.scalars(
        select(incident_services.c.incident_id)
        .where(incident_services.c.service_id == service.id)
        .order_by(incident_services.c.incident_id)
    )
    return [f"incident {format_ref(incident_id)}" for incident_id in ids]
