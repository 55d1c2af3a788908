"""SLA targets per service, and the monthly breach report.

A target's month is measured by its source over the calendar month in UTC (up to now while
the month runs): the share of good events is the achieved percentage. Downtime is that
share turned into time: minutes allowed = (1 - target) * minutes of the month, minutes used =
(1 - achieved) * minutes measured so far. A source that saw no events achieves nothing
measurable (None) and is not a breach.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog.models import Service
from firetower.errors import InvalidInput, NotFound
from firetower.monitors import prometheus, slos
from firetower.monitors.probes import ROLLUP_RETENTION_DAYS, hour_of, lock_to_refer, sli_counts
from firetower.monitors.rounding import percent_shown
from firetower.monitors.slo_models import SlaTarget, Slo
from firetower.monitors.slo_schemas import (
    ProbeSli,
    PrometheusSli,
    SlaKind,
    SlaLine,
    SlaReport,
    SlaServiceReport,
    SlaTargetCreate,
    SlaTargetRead,
)

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
ACHIEVED_DIGITS = 6
"""Decimals of a report's achieved percentage (on the side of the target it is on)."""


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``2026-11`` → (2026-11-01T00:00Z, 2026-12-01T00:00Z)."""
    match = MONTH.match(month)
    if not match or int(match.group(1)) < 1970:
        raise InvalidInput(f"{month!r} is not a month like 2026-11", field="month")
    year, number = int(match.group(1)), int(match.group(2))
    if (year, number) == (9999, 12):  # it would end in year 10000, which a date cannot hold
        raise InvalidInput(f"{month} ends past the last date firetower can hold", field="month")
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


# -- targets -----------------------------------------------------------------------------------
def put_target(session: Session, actor: Actor, data: SlaTargetCreate) -> SlaTarget:
    """Set a service's target of one kind (uptime or latency), replacing the previous one."""
    actor.require(Role.responder)
    service = session.scalar(select(Service).where(Service.name == data.service))
    if service is None:
        raise InvalidInput(f"no service named {data.service!r} in the catalog", field="service")
    slo_id = None
    if data.slo is not None:
        slo = session.scalar(select(Slo).where(Slo.name == data.slo))
        if slo is None:
            raise InvalidInput(f"no SLO named {data.slo!r}", field="slo")
        if slo.service_id != service.id:
            raise InvalidInput(
                f"SLO {data.slo} belongs to service {slo.service.name}, not {service.name}",
                field="slo",
            )
        _refuse_other_measure(slo, data.kind)
        slo_id = slo.id
    if data.probe is not None:
        probe = lock_to_refer(session, data.probe)
        if probe is None:
            raise InvalidInput(f"no probe named {data.probe!r}", field="probe")
        if probe.service is not None and probe.service_id != service.id:
            raise InvalidInput(  # as for an SLO; a probe of no service may measure any
                f"probe {data.probe} belongs to service {probe.service.name}, not {service.name}",
                field="probe",
            )
    target = session.scalar(
        select(SlaTarget).where(SlaTarget.service_id == service.id, SlaTarget.kind == data.kind)
    )
    if target is None:
        target = SlaTarget(service_id=service.id, kind=data.kind.value, created_at=clock.now())
        session.add(target)
    target.target_percent = data.target_percent
    target.slo_id = slo_id
    target.probe_name = data.probe
    target.latency_threshold_ms = data.latency_threshold_ms
    session.flush()
    return target


def _refuse_other_measure(slo: Slo, kind: SlaKind) -> None:
    """A probe SLI names what it measures, and a target of the other kind would report a
    month of the wrong thing (``slos.other_measure``)."""
    if slo.sli_kind != "probe":
        return
    measure = slos.other_measure(ProbeSli.model_validate(slo.sli), kind.value)
    if measure is not None:
        raise InvalidInput(f"SLO {slo.name} measures {measure}, not {kind.value}", field="slo")


def list_targets(session: Session) -> list[SlaTarget]:
    return list(
        session.scalars(
            select(SlaTarget)
            .join(Service, Service.id == SlaTarget.service_id)
            .order_by(Service.name, SlaTarget.kind)
        )
    )


def targets_naming(session: Session, service: Service) -> list[str]:
    """The SLA targets of ``service``: deleting it would take its promises along."""
    targets = session.scalars(
        select(SlaTarget).where(SlaTarget.service_id == service.id).order_by(SlaTarget.kind)
    )
    return [f"SLA target {target.id} ({target.kind})" for target in targets]


def delete_target(session: Session, actor: Actor, target_id: int) -> None:
    actor.require(Role.responder)
    target = session.get(SlaTarget, target_id)
    if target is None:
        raise NotFound(f"no SLA target {target_id}", field="target_id")
    session.delete(target)
    session.flush()


def read_target(target: SlaTarget) -> SlaTargetRead:
    return SlaTargetRead(
        id=target.id,
        service=target.service.name,
        kind=SlaKind(target.kind),
        target_percent=target.target_percent,
        slo=target.slo.name if target.slo is not None else None,
        probe=target.probe_name,
        latency_threshold_ms=target.latency_threshold_ms,
    )


# -- measuring ---------------------------------------------------------------------------------
def _slo_counts(
    session: Session, slo: Slo, start: datetime, end: datetime, *, running: bool
) -> tuple[float, float]:
    """(good, total) of an SLO's SLI over [start, end); ``running``: ``end`` is now."""
    if slo.sli_kind == "events":
        if running:  # this minute's bucket counts too
            end = slos.bucket_of(end) + timedelta(seconds=slos.BUCKET_SECONDS)
        return slos.bucket_counts(session, slo, start, end)
    if slo.sli_kind == "probe":
        sli = ProbeSli.model_validate(slo.sli)
        threshold = sli.latency_threshold_ms if sli.measure == "latency" else None
        return _probe_counts(session, sli.probe, start, end, threshold)
    # Prometheus: one query per side over the whole period, at its end.
    ratio = PrometheusSli.model_validate(slo.sli)
    url = ratio.url or slos.default_prometheus_url(session)
    if url is None:
        raise prometheus.PrometheusError("no Prometheus URL for this SLO")
    seconds = int((end - start).total_seconds())
    counts = prometheus.window_counts(
        url,
        ratio.total_query,
        {f"{seconds}s": seconds},
        error_query=ratio.error_query,
        good_query=ratio.good_query,
        at=end,
    )
    bad, total = counts.get(f"{seconds}s", (0.0, 0.0))
    return total - bad, total


def _probe_counts(
    session: Session, probe: str, start: datetime, end: datetime, threshold_ms: int | None
) -> tuple[float, float]:
    good, total = sli_counts(session, probe, start, end, latency_threshold_ms=threshold_ms)
    return float(good), float(total)


def _kept_since(target: SlaTarget, now: datetime) -> tuple[datetime, str] | None:
    """Since when the target's source still holds its data, and what it keeps for how long;
    None for Prometheus, whose retention is its own."""
    if target.slo is not None and target.slo.sli_kind == "events":
        days = slos.EVENT_RETENTION_DAYS
        return now - timedelta(days=days), f"pushed events are kept {days} days"
    if target.slo is None or target.slo.sli_kind == "probe":
        days = ROLLUP_RETENTION_DAYS
        return hour_of(now - timedelta(days=days)), f"probe results are kept {days} days"
    return None


def _line(session: Session, target: SlaTarget, start: datetime, end: datetime) -> SlaLine:
    month_minutes = (end - start).total_seconds() / 60
    now = clock.now()
    until = min(end, now)
    measured_minutes = max((until - start).total_seconds() / 60, 0.0)
    allowed = (1 - target.target_percent / 100) * month_minutes
    source = f"slo:{target.slo.name}" if target.slo is not None else f"probe:{target.probe_name}"
    good, total = 0.0, 0.0
    error: str | None = None
    kept = _kept_since(target, now)
    if kept is not None and start < kept[0]:
        # What is left of the month would be reported as the whole of it.
        error = (
            f"{kept[1]}: this month's before {kept[0]:%Y-%m-%d %H:%M} UTC are gone, "
            "so it cannot be measured in full"
        )
    else:
        try:
            if target.slo is not None:
                good, total = _slo_counts(session, target.slo, start, until, running=until < end)
            else:
                assert target.probe_name is not None
                threshold = target.latency_threshold_ms if target.kind == SlaKind.latency else None
                good, total = _probe_counts(session, target.probe_name, start, until, threshold)
        except prometheus.PrometheusError as exc:
            error = str(exc)
        except NotFound as exc:  # the probe was deleted since
            error = exc.detail
    achieved = None if total <= 0 else min(good / total, 1.0) * 100
    breached = achieved is not None and _below(good, total, target.target_percent)
    return SlaLine(
        kind=SlaKind(target.kind),
        source=source,
        target_percent=target.target_percent,
        achieved_percent=None
        if achieved is None
        else percent_shown(
            achieved, target.target_percent, breached=breached, digits=ACHIEVED_DIGITS
        ),
        breached=breached,
        events=total,
        downtime_minutes_allowed=round(allowed, 3),
        downtime_minutes_used=None
        if achieved is None
        else round((1 - achieved / 100) * measured_minutes, 3),
        error=error,
    )


def _below(good: float, total: float, target_percent: float) -> bool:
    """Whether good / total is under the target, compared exactly: the target as written
    (90.04, not the float nearest it) against the counts' own ratio. In floating point,
    4,502 good of 5,000 came out just under 90.04 %, a breach shown beside 90.04 achieved."""
    exact_target = Fraction(repr(target_percent)) / 100
    return Fraction(min(good, total)) < exact_target * Fraction(total)


def report(session: Session, month: str) -> SlaReport:
    """Every service with a target: its targets for ``month``, achieved and breached or not.

    Prometheus sources are queried here (a read session is open meanwhile; it takes no lock).
    """
    start, end = month_bounds(month)
    now = clock.now()
    if start > now:
        raise InvalidInput(f"{month} has not started yet", field="month")
    by_service: dict[str, list[SlaLine]] = {}
    for target in list_targets(session):
        by_service.setdefault(target.service.name, []).append(_line(session, target, start, end))
    return SlaReport(
        month=month,
        starts_at=start,
        ends_at=end,
        complete=end <= now,
        services=[
            SlaServiceReport(
                service=name, breached=any(line.breached for line in lines), targets=lines
            )
            for name, lines in by_service.items()
        ],
    )
