"""SLO operations: define SLOs, take pushed events, evaluate budgets and burn rates, alert.

An evaluation reads the SLI's events per window (pushed buckets and probe checks from the
database; Prometheus ratios fetched beforehand, outside any transaction, and handed in),
asks ``burn`` for the alert level, records the evaluation, and on a change of level:

- page: a firing signal (integration ``@slos``, severity ``PAGE_SEVERITY``) that opens an
  incident on the service or joins its open one, raising that incident's severity to
  ``PAGE_SEVERITY`` if it was lower (with a note naming the SLO);
- ticket: a firing signal of ``TICKET_SEVERITY`` that never opens an incident (so never
  pages): it is kept in the alert list and noted on the service's open incident if any;
- back to a lower level: the previous level's signal resolves.

A page that goes on while its signal is on no active incident (a person resolved it or ended
the one it joined while the budget still burns, or an attach rule found none to join) is
signalled again at each evaluation, and routes again: it joins the service's active incident
or opens the next.

The catalog hears of every change (``report_health``): a paging SLO makes its service
failing, and the services depending on it at risk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.catalog.models import Service
from firetower.db import SETTINGS_INFO
from firetower.errors import Conflict, InvalidInput, NotFound
from firetower.incidents import service as incidents
from firetower.incidents.lifecycle import ACTIVE, Severity
from firetower.incidents.models import Incident, incident_services
from firetower.incidents.schemas import IncidentUpdate
from firetower.monitors.burn import (
    WINDOWS_SECONDS,
    Counts,
    Decision,
    Level,
    burn_rate,
    decide,
)
from firetower.monitors.burn import budget_remaining as remaining_of
from firetower.monitors.probes import lock_to_refer, sli_counts
from firetower.monitors.rounding import percent_text
from firetower.monitors.slo_models import SlaTarget, Slo, SloEvaluation, SloEventBucket
from firetower.monitors.slo_schemas import (
    MAX_EVENTS_PER_BUCKET,
    MAX_WINDOW_DAYS,
    ApplySummary,
    EvaluationRead,
    ProbeSli,
    PrometheusSli,
    Sli,
    SLOCreate,
    SLOEvents,
    SLORead,
    SLOState,
)
from firetower.settings import SeverityPolicy, severity_rank
from firetower.signals import service as signals

INTEGRATION = signals.SLO_INTEGRATION
SIGNAL_KIND = "slo"
PAGE_SEVERITY = Severity.SEV2
TICKET_SEVERITY = Severity.SEV4
ACTOR = Actor.system("slos")
BUCKET_SECONDS = 60
EVENT_RETENTION_DAYS = MAX_WINDOW_DAYS + 10
"""Pushed buckets are kept past the longest window so last months' SLA reports can read them."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""Pushed events may be stamped a little ahead (clock skew), never further."""


def signal_severity(session: Session, labels: Mapping[str, str]) -> Severity:
    """The severity an SLO's signal has at its ``level`` (for the routing rules' test, which
    ``slo_reactions.register`` tells)."""
    return TICKET_SEVERITY if labels.get("level") == Level.ticket.value else PAGE_SEVERITY


def window_label(days: int) -> str:
    return f"{days}d"


# -- definitions -------------------------------------------------------------------------------
def default_prometheus_url(session: Session) -> str | None:
    """The server-wide Prometheus URL (setting ``prometheus_url``), if the settings have one."""
    settings = session.info.get(SETTINGS_INFO)
    return settings.prometheus_url if settings is not None else None


def _service(session: Session, name: str, field: str = "service") -> Service:
    found = session.scalar(select(Service).where(Service.name == name))
    if found is None:
        raise InvalidInput(f"no service named {name!r} in the catalog", field=field)
    return found


def _check_sli(session: Session, data: SLOCreate, field: str = "sli") -> None:
    sli = data.sli
    if isinstance(sli, ProbeSli):
        if lock_to_refer(session, sli.probe) is None:
            raise InvalidInput(f"no probe named {sli.probe!r}", field=f"{field}.probe")
    elif isinstance(sli, PrometheusSli) and sli.url is None and not default_prometheus_url(session):
        raise InvalidInput(
            "a Prometheus SLI needs url (no prometheus_url is set for the server)",
            field=f"{field}.url",
        )


def _columns(data: SLOCreate) -> dict[str, Any]:
    return {
        "description": data.description,
        "objective_percent": data.objective_percent,
        "window_days": data.window_days,
        "min_events": data.min_events,
        "sli_kind": data.sli.kind,
        "sli": data.sli.model_dump(mode="json", exclude_none=True),
    }


def get_slo(session: Session, name: str, *, field: str = "name") -> Slo:
    slo = session.scalar(select(Slo).where(Slo.name == name))
    if slo is None:
        raise NotFound(f"no SLO named {name!r}", field=field)
    return slo


def list_slos(session: Session) -> list[Slo]:
    return list(session.scalars(select(Slo).order_by(Slo.name)))


def slos_naming(session: Session, service: Service) -> list[str]:
    """The SLOs of ``service``: deleting it would take them and their history along."""
    names = session.scalars(select(Slo.name).where(Slo.service_id == service.id).order_by(Slo.name))
    return [f"SLO {name!r}" for name in names]


def create_slo(session: Session, actor: Actor, data: SLOCreate) -> Slo:
    actor.require(Role.responder)
    if session.scalar(select(Slo.id).where(Slo.name == data.name)) is not None:
        raise Conflict(f"an SLO named {data.name} already exists", field="name")
    service = _service(session, data.service)
    _check_sli(session, data)
    now = clock.now()
    slo = Slo(
        name=data.name,
        service_id=service.id,
        state=Level.ok.value,
        created_at=now,
        updated_at=now,
        **_columns(data),
    )
    session.add(slo)
    session.flush()
    return slo


def _put(session: Session, data: SLOCreate, field: str) -> str:
    """Create or update one SLO by name; returns created, updated or unchanged."""
    prefix = f"{field}." if field else ""
    service = _service(session, data.service, field=f"{prefix}service")
    _check_sli(session, data, field=f"{prefix}sli")
    slo = session.scalar(select(Slo).where(Slo.name == data.name))
    columns = {**_columns(data), "service_id": service.id}
    now = clock.now()
    if slo is None:
        session.add(
            Slo(name=data.name, state=Level.ok.value, created_at=now, updated_at=now, **columns)
        )
        session.flush()
        return "created"
    if all(getattr(slo, key) == value for key, value in columns.items()):
        return "unchanged"
    _check_targets(session, slo, data, service, field=field)
    if slo.service_id != service.id:
        _leave_service(session, slo, service)
    for key, value in columns.items():
        setattr(slo, key, value)
    slo.service = service
    slo.updated_at = now
    return "updated"


MEASURED_BY = {"uptime": "availability", "latency": "latency"}
"""What an SLA target of each kind needs its SLO to measure."""


def other_measure(sli: Sli, target_kind: str) -> str | None:
    """What a probe SLI measures, if not what a target of ``target_kind`` needs (None when
    it fits). Events and Prometheus SLIs do not say: they are taken at the target's word."""
    if isinstance(sli, ProbeSli) and sli.measure != MEASURED_BY[target_kind]:
        return sli.measure
    return None


def _check_targets(
    session: Session, slo: Slo | None, data: SLOCreate, to: Service, *, field: str
) -> None:
    """An SLO measuring an SLA target stays fit for it (put_target's checks): it cannot
    leave the target's service, nor come to measure the other kind. ``field`` is where the
    SLO is in the request ("" or ``slos[2]``)."""
    if slo is None:
        return
    prefix = f"{field}." if field else ""
    for target in session.scalars(
        select(SlaTarget).where(SlaTarget.slo_id == slo.id).order_by(SlaTarget.id)
    ):
        measured = (
            f"SLO {slo.name} measures the {target.kind} SLA target of service {target.service.name}"
        )
        if slo.service_id != to.id:
            raise Conflict(
                f"{measured}; move or delete that target first", field=f"{prefix}service"
            )
        if (measure := other_measure(data.sli, target.kind)) is not None:
            raise Conflict(
                f"{measured}, which its SLI would measure {measure} for; change or delete "
                "that target first",
                field=f"{prefix}sli",
            )


def _leave_service(session: Session, slo: Slo, to: Service) -> None:
    """An SLO moving to another service stops alerting for the old one and starts over.

    Its signal resolves and the old service's check clears (else the service stays failing
    for good: later evaluations report to the new one); the next evaluation judges the SLO
    on its new service.
    """
    if slo.state == Level.ok.value:
        return
    _signal(session, _policy(session), slo, Level(slo.state), "resolved", None)
    _report_health(session, slo, failing=False, detail=f"SLO moved to service {to.name}")
    slo.state = Level.ok.value


def apply_slos(
    session: Session, actor: Actor, slos: list[SLOCreate], *, field: str = "slos"
) -> ApplySummary:
    """Create the SLOs that do not exist and update those that do, by name, all or nothing.

    SLOs missing from the list are left alone. Every SLO is checked (service, probe,
    Prometheus URL) before the first write; an error names it as ``slos[i].…``.
    """
    actor.require(Role.responder)
    seen: set[str] = set()
    for index, data in enumerate(slos):
        if data.name in seen:
            raise InvalidInput(f"SLO {data.name} is listed twice", field=f"{field}[{index}].name")
        seen.add(data.name)
        service = _service(session, data.service, field=f"{field}[{index}].service")
        _check_sli(session, data, field=f"{field}[{index}].sli")
        existing = session.scalar(select(Slo).where(Slo.name == data.name))
        _check_targets(session, existing, data, service, field=f"{field}[{index}]")
    summary = ApplySummary()
    for index, data in enumerate(slos):
        outcome = _put(session, data, f"{field}[{index}]")
        getattr(summary, outcome).append(data.name)
    return summary


def replace_slo(session: Session, actor: Actor, name: str, data: SLOCreate) -> tuple[Slo, bool]:
    """PUT semantics: create or replace the SLO ``name``; returns it and whether it is new."""
    actor.require(Role.responder)
    if data.name != name:
        raise InvalidInput(f"the body names {data.name!r}, the path {name!r}", field="name")
    outcome = _put(session, data, "")
    return get_slo(session, name), outcome == "created"


def delete_slo(session: Session, actor: Actor, name: str) -> None:
    """Delete an SLO with its events and history; a paging one resolves its signal first.

    One that measures an SLA target is refused: the target would go with it (the foreign key
    cascades), and its service with it from every month's SLA report.
    """
    actor.require(Role.responder)
    slo = get_slo(session, name)
    target = session.scalar(
        select(SlaTarget).where(SlaTarget.slo_id == slo.id).order_by(SlaTarget.id).limit(1)
    )
    if target is not None:
        raise Conflict(
            f"SLO {slo.name} measures the {target.kind} SLA target of service "
            f"{target.service.name}; delete that target or measure it by another source first",
            field="name",
        )
    policy = _policy(session)
    if slo.state != Level.ok.value:
        _signal(session, policy, slo, Level(slo.state), "resolved", None)
        _report_health(session, slo, failing=False, detail="SLO deleted")
    session.delete(slo)
    session.flush()


def _policy(session: Session) -> SeverityPolicy:
    settings = session.info.get(SETTINGS_INFO)
    policy = getattr(settings, "severity_policy", None)
    return policy if isinstance(policy, SeverityPolicy) else SeverityPolicy()


# -- pushed events -----------------------------------------------------------------------------
def bucket_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def record_events(session: Session, actor: Actor, name: str, data: SLOEvents) -> SloEventBucket:
    """Add good and bad counts to the minute bucket of ``timestamp`` (default now).

    A push that would take the bucket past ``MAX_EVENTS_PER_BUCKET`` good or bad events is
    refused and adds nothing (the limit is checked by the same statement that adds, so two
    pushes at once cannot both pass it)."""
    actor.require(Role.responder)
    slo = get_slo(session, name)
    if slo.sli_kind != "events":
        raise Conflict(
            f"SLO {name} reads its SLI from {slo.sli_kind}; only events SLOs take pushed events",
            field="name",
        )
    now = clock.now()
    at = clock.ensure_utc(data.timestamp, field="timestamp") if data.timestamp else now
    if at > now + FUTURE_TOLERANCE:
        raise InvalidInput("timestamp is in the future", field="timestamp")
    if at < now - timedelta(days=EVENT_RETENTION_DAYS):
        raise InvalidInput(
            f"timestamp is more than {EVENT_RETENTION_DAYS} days ago", field="timestamp"
        )
    start = bucket_of(at)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(SloEventBucket).values(
        slo_id=slo.id, bucket_start=start, good=data.good, bad=data.bad
    )
    statement = statement.on_conflict_do_update(
        index_elements=["slo_id", "bucket_start"],
        set_={
            "good": SloEventBucket.good + statement.excluded.good,
            "bad": SloEventBucket.bad + statement.excluded.bad,
        },
        where=(SloEventBucket.good <= MAX_EVENTS_PER_BUCKET - statement.excluded.good)
        & (SloEventBucket.bad <= MAX_EVENTS_PER_BUCKET - statement.excluded.bad),
    )
    # A row comes back unless the bucket was there and the limit kept it as it was (not the
    # rowcount: through the ORM, PostgreSQL's did not say 0).
    added = session.execute(statement.returning(SloEventBucket.slo_id)).first() is not None
    bucket = session.get(SloEventBucket, (slo.id, start), populate_existing=True)
    assert bucket is not None
    if not added:
        field = "good" if bucket.good > MAX_EVENTS_PER_BUCKET - data.good else "bad"
        raise InvalidInput(
            f"{field}: the minute bucket {start.isoformat()} of SLO {name} holds "
            f"{getattr(bucket, field):,} {field} events; {getattr(data, field):,} more would pass "
            f"the {MAX_EVENTS_PER_BUCKET:,} a minute may hold",
            field=field,
        )
    return bucket


def bucket_counts(session: Session, slo: Slo, start: datetime, end: datetime) -> tuple[int, int]:
    """(good, total) pushed events with buckets starting in [start, end)."""
    good, bad = session.execute(
        select(
            func.coalesce(func.sum(SloEventBucket.good), 0),
            func.coalesce(func.sum(SloEventBucket.bad), 0),
        )
        .where(SloEventBucket.slo_id == slo.id)
        .where(SloEventBucket.bucket_start >= start)
        .where(SloEventBucket.bucket_start < end)
    ).one()
    return int(good), int(good) + int(bad)


def _windows(slo: Slo) -> dict[str, int]:
    return {**WINDOWS_SECONDS, window_label(slo.window_days): slo.window_days * 86400}


def _pushed_counts(session: Session, slo: Slo, now: datetime) -> dict[str, Counts]:
    """Per window, the buckets whose minute lies within it (the current minute included)."""
    windows = _windows(slo)
    end = bucket_of(now) + timedelta(seconds=BUCKET_SECONDS)
    columns = []
    for seconds in windows.values():
        inside = SloEventBucket.bucket_start >= end - timedelta(seconds=seconds)
        columns.append(func.coalesce(func.sum(case((inside, SloEventBucket.good), else_=0)), 0))
        columns.append(func.coalesce(func.sum(case((inside, SloEventBucket.bad), else_=0)), 0))
    oldest = end - timedelta(seconds=max(windows.values()))
    row = session.execute(
        select(*columns)
        .where(SloEventBucket.slo_id == slo.id)
        .where(SloEventBucket.bucket_start >= oldest)
        .where(SloEventBucket.bucket_start < end)
    ).one()
    counts = {}
    for index, label in enumerate(windows):
        good, bad = int(row[2 * index]), int(row[2 * index + 1])
        counts[label] = Counts(bad=bad, total=good + bad)
    return counts


def _probe_counts(session: Session, slo: Slo, now: datetime) -> dict[str, Counts]:
    sli = ProbeSli.model_validate(slo.sli)
    threshold = sli.latency_threshold_ms if sli.measure == "latency" else None
    counts = {}
    for label, seconds in _windows(slo).items():
        good, total = sli_counts(
            session,
            sli.probe,
            now - timedelta(seconds=seconds),
            now,
            latency_threshold_ms=threshold,
        )
        counts[label] = Counts(bad=max(total - good, 0), total=total)
    return counts


def local_counts(session: Session, slo: Slo, now: datetime) -> dict[str, Counts] | None:
    """Counts for SLIs read from the database; None for Prometheus (fetched beforehand)."""
    if slo.sli_kind == "events":
        return _pushed_counts(session, slo, now)
    if slo.sli_kind == "probe":
        return _probe_counts(session, slo, now)
    return None


# -- Prometheus (outside any transaction) ------------------------------------------------------
@dataclass(frozen=True)
class PrometheusPlan:
    """What to ask Prometheus for one SLO, read in a short read session."""

    name: str
    url: str
    sli: PrometheusSli
    windows: dict[str, int]


def prometheus_plan(session: Session, name: str) -> PrometheusPlan | None:
    slo = session.scalar(select(Slo).where(Slo.name == name))
    if slo is None or slo.sli_kind != "prometheus":
        return None
    sli = PrometheusSli.model_validate(slo.sli)
    url = sli.url or default_prometheus_url(session)
    if url is None:
        return PrometheusPlan(name, "", sli, {})
    return PrometheusPlan(name, url, sli, _windows(slo))


def fetch_prometheus(plan: PrometheusPlan, at: datetime | None = None) -> dict[str, Any]:
    """Query Prometheus for every window; a failure comes back as ``{"error": ...}``."""
    from firetower.monitors import prometheus

    if not plan.url:
        return {"error": "no Prometheus URL: set the SLI's url or the prometheus_url setting"}
    try:
        counts = prometheus.window_counts(
            plan.url,
            plan.sli.total_query,
            plan.windows,
            error_query=plan.sli.error_query,
            good_query=plan.sli.good_query,
            at=at,
        )
    except prometheus.PrometheusError as exc:
        return {"error": str(exc)}
    return {"counts": {label: list(pair) for label, pair in counts.items()}}


def counts_from_fetched(fetched: Mapping[str, Any]) -> dict[str, Counts]:
    raw = fetched.get("counts") or {}
    return {label: Counts(bad=float(b), total=float(t)) for label, (b, t) in raw.items()}


# -- evaluation --------------------------------------------------------------------------------
def evaluate(
    session: Session,
    slo: Slo,
    *,
    fetched: Mapping[str, Any] | None = None,
    policy: SeverityPolicy | None = None,
) -> SloEvaluation:
    """Evaluate one SLO now and act on a change of level (see the module docstring).

    ``fetched`` is what ``fetch_prometheus`` returned for a Prometheus SLI. An SLI that
    cannot be read records an evaluation with the error and keeps the current level.
    """
    now = clock.now()
    policy = policy or _policy(session)
    error: str | None = None
    try:
        counts = local_counts(session, slo, now)
    except NotFound as exc:  # the probe was deleted since
        counts, error = {}, exc.detail
    if counts is None:
        fetched = fetched or {"error": "Prometheus was not queried"}
        error = fetched.get("error")
        counts = {} if error else counts_from_fetched(fetched)
    window = counts.get(window_label(slo.window_days), Counts(0, 0))
    if error:
        decision = Decision(Level(slo.state), (), (), {})
    else:
        decision = decide(counts, slo.objective_percent, min_events=slo.min_events)
    evaluation = SloEvaluation(
        slo_id=slo.id,
        at=now,
        level=decision.level.value,
        budget_remaining=None if error else remaining_of(window, slo.objective_percent),
        window_events=window.total,
        burn_rates={
            **decision.burn_rates,
            window_label(slo.window_days): None
            if error
            else burn_rate(window, slo.objective_percent),
        },
        fired=[r.name for r in decision.fired],
        error=error,
    )
    session.add(evaluation)
    before = Level(slo.state)
    if decision.level != before:
        slo.state = decision.level.value
        if before != Level.ok:
            _signal(session, policy, slo, before, "resolved", decision)
        if decision.level != Level.ok:
            _signal(session, policy, slo, decision.level, "firing", decision)
        _report_health(
            session,
            slo,
            failing=decision.level == Level.page,
            detail=_describe(slo, decision),
        )
    elif (
        error is None
        and before == Level.page
        and signals.unattended(session, INTEGRATION, _fingerprint(slo, Level.page))
    ):
        # Still paging, on no active incident, neither muted nor flapping: a person resolved
        # its alert or ended the incident it joined while it burns, or an attach rule found
        # none. The repeat routes again (``reroute_when_incident_over``): it joins the
        # service's active incident or opens one.
        _signal(session, policy, slo, Level.page, "firing", decision, repeat=True)
    _prune(session, slo, now)
    session.flush()
    return evaluation


def _prune(session: Session, slo: Slo, now: datetime) -> None:
    session.execute(
        delete(SloEvaluation)
        .where(SloEvaluation.slo_id == slo.id)
        .where(SloEvaluation.at < now - timedelta(days=slo.window_days))
    )
    session.execute(
        delete(SloEventBucket)
        .where(SloEventBucket.slo_id == slo.id)
        .where(SloEventBucket.bucket_start < now - timedelta(days=EVENT_RETENTION_DAYS))
    )


def _describe(slo: Slo, decision: Decision | None) -> str:
    if decision is None or not decision.fired:
        return f"SLO {slo.name} ({percent_text(slo.objective_percent)}% over {slo.window_days}d)"
    rule = decision.fired[0]
    rate = decision.burn_rates.get(rule.long_window) or 0.0
    return (
        f"SLO {slo.name} burns its error budget at {rate:.1f}x over {rule.long_window} "
        f"({rule.name}; objective {percent_text(slo.objective_percent)}% over {slo.window_days}d)"
    )


def _active_incident(session: Session, service_id: int) -> Incident | None:
    return session.scalar(
        select(Incident)
        .join(incident_services, incident_services.c.incident_id == Incident.id)
        .where(incident_services.c.service_id == service_id)
        .where(Incident.status.in_([s.value for s in ACTIVE]))
        .order_by(Incident.id)
        .limit(1)
    )


def _fingerprint(slo: Slo, level: Level) -> str:
    return f"slo:{slo.name}:{level.value}"


def _signal(
    session: Session,
    policy: SeverityPolicy,
    slo: Slo,
    level: Level,
    status: str,
    decision: Decision | None,
    *,
    repeat: bool = False,
) -> None:
    """The signal of ``level``: ``repeat`` says again that a page still fires (keeping when
    it started); a page that joins an incident raises that incident's severity."""
    service = slo.service.name
    severity = PAGE_SEVERITY if level == Level.page else TICKET_SEVERITY
    routed: str | None = service
    if level == Level.ticket and _active_incident(session, slo.service_id) is None:
        routed = None  # a ticket never opens an incident: no service to route to
    text = _describe(slo, decision)
    alert, intake = signals.raise_internal(
        session,
        policy,
        integration_name=INTEGRATION,
        kind=SIGNAL_KIND,
        signal=signals.Signal(
            fingerprint=_fingerprint(slo, level),
            status=status,
            title=text if status == "firing" else "",
            severity=severity,
            service_name=routed,
            labels={
                "alertname": "SLOBurnRate",
                "slo": slo.name,
                "service": service,
                "level": level.value,
            },
            annotations={
                "burn_rates": dict(decision.burn_rates) if decision else {},
                "rules": [r.name for r in decision.fired] if decision else [],
            },
            starts_at=clock.now() if status == "firing" and not repeat else None,
            ends_at=clock.now() if status == "resolved" else None,
            reroute_when_incident_over=level == Level.page,
        ),
        summary=f"Opened by {text}.",
    )
    if level != Level.page or status != "firing" or alert.incident_id is None:
        return
    if alert.fingerprint not in intake.joined.get(alert.incident_id, ()):
        return  # a repeat that joined nothing new: the severity was seen to when it did
    incident = session.get(Incident, alert.incident_id)
    if incident is None or incident in intake.opened or incident.status not in ACTIVE:
        return
    if severity_rank(incident.severity) > severity_rank(PAGE_SEVERITY.value):
        before = incident.severity
        incidents.update(session, ACTOR, incident, IncidentUpdate(severity=PAGE_SEVERITY), policy)
        incidents.add_note(
            session,
            ACTOR,
            incident,
            f"Severity raised from {before} to {PAGE_SEVERITY.value}: {text}.",
        )


def _report_health(session: Session, slo: Slo, *, failing: bool, detail: str) -> None:
    catalog.report_health(
        session,
        service_name=slo.service.name,
        check=f"slo:{slo.name}",
        failing=failing,
        detail=detail,
    )


def enqueue_evaluations(session: Session, kind: str, tick: str) -> int:
    """One evaluation job per SLO for this tick (idempotent per SLO and tick)."""
    from firetower.jobs import enqueue

    names = list(session.scalars(select(Slo.name).order_by(Slo.name)))
    for name in names:
        enqueue(session, kind, {"slo": name}, idempotency_key=f"slo-eval:{name}:{tick}")
    return len(names)


# -- reading -----------------------------------------------------------------------------------
def latest_evaluation(session: Session, slo: Slo) -> SloEvaluation | None:
    return session.scalar(
        select(SloEvaluation)
        .where(SloEvaluation.slo_id == slo.id)
        .order_by(SloEvaluation.at.desc(), SloEvaluation.id.desc())
        .limit(1)
    )


def evaluations(
    session: Session, slo: Slo, *, since: datetime | None = None, limit: int = 100
) -> list[SloEvaluation]:
    """The latest evaluations, newest first."""
    query = select(SloEvaluation).where(SloEvaluation.slo_id == slo.id)
    if since is not None:
        query = query.where(SloEvaluation.at >= since)
    return list(
        session.scalars(
            query.order_by(SloEvaluation.at.desc(), SloEvaluation.id.desc()).limit(limit)
        )
    )


def budget_history(
    session: Session, slo: Slo, *, points: int = 500
) -> list[tuple[datetime, float]]:
    """(time, remaining fraction) over the SLO's window, thinned to at most ``points``."""
    since = clock.now() - timedelta(days=slo.window_days)
    rows = list(
        session.execute(
            select(SloEvaluation.at, SloEvaluation.budget_remaining)
            .where(SloEvaluation.slo_id == slo.id)
            .where(SloEvaluation.at >= since)
            .where(SloEvaluation.budget_remaining.is_not(None))
            .order_by(SloEvaluation.at, SloEvaluation.id)
        )
    )
    step = max(1, -(-len(rows) // points))
    thinned = rows[::step]
    if rows and thinned[-1] is not rows[-1]:
        thinned.append(rows[-1])
    return [(at, float(value)) for at, value in thinned if value is not None]


def sli_summary(slo: Slo) -> str:
    sli = slo.sli
    if slo.sli_kind == "probe":
        if sli.get("measure") == "latency":
            return f"probe {sli.get('probe')} under {sli.get('latency_threshold_ms')} ms"
        return f"probe {sli.get('probe')} availability"
    if slo.sli_kind == "prometheus":
        return "Prometheus " + ("error ratio" if sli.get("error_query") else "good ratio")
    return "pushed events"


def ever_read(session: Session, slo: Slo) -> bool:
    """Whether any evaluation of the SLO read its SLI (an error row keeps the level it found)."""
    query = select(SloEvaluation.id).where(
        SloEvaluation.slo_id == slo.id, SloEvaluation.error.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def read_slo(session: Session, slo: Slo) -> SLORead:
    last = latest_evaluation(session, slo)
    # The stored level only means something once one evaluation read the SLI: until then
    # (no evaluation, or only failed ones) nothing is known.
    known = last is not None and (last.error is None or ever_read(session, slo))
    remaining = last.budget_remaining if last is not None else None
    stored = dict(last.burn_rates) if last is not None else {}
    # Shortest window first (PostgreSQL's JSONB does not keep the order they were written in).
    order = [*WINDOWS_SECONDS, window_label(slo.window_days)]
    rates: dict[str, float | None] = {w: stored[w] for w in order if w in stored}
    rates.update({w: v for w, v in stored.items() if w not in rates})
    return SLORead(
        name=slo.name,
        service=slo.service.name,
        description=slo.description,
        objective_percent=slo.objective_percent,
        window_days=slo.window_days,
        min_events=slo.min_events,
        sli=slo.sli,
        sli_summary=sli_summary(slo),
        state=SLOState(slo.state) if known else SLOState.pending,
        budget_remaining_percent=None if remaining is None else round(remaining * 100, 4),
        budget_consumed_percent=None if remaining is None else round((1 - remaining) * 100, 4),
        burn_rates=rates,
        current_burn_rate=rates.get("1h"),
        last_evaluated_at=last.at if last is not None else None,
        last_error=last.error if last is not None else None,
    )


def read_evaluations(rows: Iterable[SloEvaluation]) -> list[EvaluationRead]:
    return [EvaluationRead.model_validate(row) for row in rows]
