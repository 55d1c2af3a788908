"""Probe operations: definitions, runs and their up/down state, results, roll-ups, retention.

A run's network check happens outside any transaction (``probe_checks``); ``record_result``
then stores what it saw and moves the probe's state once ``failure_threshold`` failures (or
``success_threshold`` successes) come in a row. Going down raises a firing signal through
``signals.service.raise_internal`` (integration ``@probes``, fingerprint ``probe:NAME``), so
silences, maintenance windows and routing apply to it like to any alert; coming back up
resolves it. A probe still down whose signal is on no active incident (a person resolved
it or ended the one it joined, or an attach rule found none to join) says it again at each
failing run, so that it opens the next incident or joins the one open. Either change is
also reported to the catalog as the health of the probe's service (check ``probe:NAME``).

Retention: raw results are kept ``RAW_RETENTION_DAYS`` days; each complete hour is rolled up
(count, failures, latency p50/p95/max, a histogram of successful latencies) and roll-ups are
kept ``ROLLUP_RETENTION_DAYS`` days. The hourly maintenance job rolls up, then trims.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.catalog.models import Service
from firetower.db import SETTINGS_INFO
from firetower.errors import Conflict, InvalidInput, NotFound
from firetower.incidents.lifecycle import Severity
from firetower.jobs import enqueue
from firetower.monitors.probe_checks import CheckOutcome, run_check
from firetower.monitors.probe_models import DOWN, UNKNOWN, UP, Probe, ProbeResult, ProbeRollup
from firetower.monitors.probe_schemas import (
    ProbeApplySummary,
    ProbeCreate,
    ProbeKind,
    ProbeRead,
    ProbeResultRead,
    ProbeRunRead,
)
from firetower.monitors.slo_models import SlaTarget, Slo
from firetower.runtime import Runtime
from firetower.settings import SeverityPolicy
from firetower.signals import service as signals
from firetower.signals.service import Signal

RAW_RETENTION_DAYS = 7
ROLLUP_RETENTION_DAYS = 90
ROLLUP_GRACE = timedelta(minutes=5)
"""An hour is rolled up this long after it ends: a run checked before the hour's end may
commit a little after it."""
LATENCY_BUCKETS_MS = (
    5, 10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750,
    1000, 1500, 2000, 2500, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000, 60000,
)  # fmt: skip
"""Upper bounds of the roll-up histogram buckets; a last bucket (+Inf) follows."""
INTEGRATION = signals.PROBE_INTEGRATION
SIGNAL_KIND = "probe"
HISTORY_LENGTH = 30
REDACTED = "<redacted>"
RUN_KIND = "probes.run"
DISPATCH_KIND = "probes.dispatch"
MAINTENANCE_KIND = "probes.maintenance"
RUN_MAX_ATTEMPTS = 3
"""A run whose transaction failed (a busy database) is tried again, with a fresh check."""


# -- definitions -----------------------------------------------------------------------------
def get_probe(session: Session, name: str, *, field: str = "name") -> Probe:
    probe = session.scalar(select(Probe).where(Probe.name == name))
    if probe is None:
        raise NotFound(f"no probe named {name!r}", field=field)
    return probe


def list_probes(session: Session) -> list[Probe]:
    return list(session.scalars(select(Probe).order_by(Probe.name)))


def probes_naming(session: Session, service: Service) -> list[str]:
    """The probes of ``service``: deleting it would leave them checking for no service."""
    names = session.scalars(
        select(Probe.name).where(Probe.service_id == service.id).order_by(Probe.name)
    )
    return [f"probe {name!r}" for name in names]


def _service_of(session: Session, name: str | None) -> Service | None:
    if name is None:
        return None
    service = session.scalar(select(Service).where(Service.name == name))
    if service is None:
        raise InvalidInput(f"service: no service named {name!r} in the catalog", field="service")
    return service


def _definition(data: ProbeCreate) -> dict[str, Any]:
    """The stored columns a definition sets (state and history are left alone)."""
    return {
        "kind": data.kind.value,
        "settings": data.kind_settings(),
        "severity": data.severity.value,
        "interval_seconds": data.interval_seconds,
        "timeout_seconds": data.timeout_seconds,
        "failure_threshold": data.failure_threshold,
        "success_threshold": data.success_threshold,
        "enabled": data.enabled,
    }


def create_probe(session: Session, actor: Actor, data: ProbeCreate) -> Probe:
    actor.require(Role.admin)
    if session.scalar(select(Probe.id).where(Probe.name == data.name)) is not None:
        raise Conflict(f"a probe named {data.name!r} already exists", field="name")
    service = _service_of(session, data.service)
    _check_move(session, data.name, None, service, field="service")
    now = clock.now()
    probe = Probe(
        name=data.name,
        service_id=service.id if service else None,
        state=UNKNOWN,
        consecutive_failures=0,
        consecutive_successes=0,
        next_run_at=now,
        created_at=now,
        updated_at=now,
        **_definition(data),
    )
    session.add(probe)
    session.flush()
    return probe


def replace_probe(session: Session, actor: Actor, name: str, data: ProbeCreate) -> Probe:
    """Replace a definition (PUT). The state and history stay; a changed kind starts over."""
    actor.require(Role.admin)
    if data.name != name:
        raise InvalidInput(
            f"name: the body names {data.name!r} but the path {name!r}; renaming is not "
            "supported (create the new probe and delete the old one)",
            field="name",
        )
    probe = get_probe(session, name)
    service = _service_of(session, data.service)
    _check_move(session, probe.name, probe.service_id, service, field="service")
    return _replace(session, probe, service, data)


def _check_move(
    session: Session, name: str, from_id: int | None, to: Service | None, *, field: str
) -> None:
    """A probe measuring an SLA target cannot move to a service other than the target's
    (put_target refuses a probe of another service); to no service it may, as such a probe
    may measure any target. A new probe moves from no service: a target names its probe and
    outlives it, and would otherwise be measured by a new probe of that name elsewhere."""
    if to is None or from_id == to.id:
        return
    target = session.scalar(
        select(SlaTarget)
        .where(SlaTarget.probe_name == name, SlaTarget.service_id != to.id)
        .order_by(SlaTarget.id)
        .limit(1)
    )
    if target is not None:
        raise Conflict(
            f"probe {name} measures the {target.kind} SLA target of service "
            f"{target.service.name}; move or delete that target first",
            field=field,
        )


def _replace(session: Session, probe: Probe, service: Service | None, data: ProbeCreate) -> Probe:
    old_service = probe.service.name if probe.service else None
    restart = (
        not data.enabled
        or data.kind.value != probe.kind
        or (service.name if service else None) != old_service
    )
    if restart:
        # What was observed no longer describes the probe: its state starts over.
        if probe.state == DOWN:
            _clear(session, probe, "its definition changed")
        _reset_state(probe)
    for key, value in _definition(data).items():
        setattr(probe, key, value)
    probe.service_id = service.id if service else None
    probe.service = service
    probe.updated_at = clock.now()
    probe.next_run_at = min(probe.next_run_at, clock.now())
    session.flush()
    return probe


def _reset_state(probe: Probe) -> None:
    if probe.state != UNKNOWN:
        probe.state_changed_at = clock.now()
    probe.state = UNKNOWN
    probe.consecutive_failures = probe.consecutive_successes = 0


def _clear(session: Session, probe: Probe, why: str) -> None:
    """A down probe stops being watched (paused, deleted, changed): resolve its signal."""
    _signal(session, probe, "resolved", f"Probe {probe.name} is no longer watched: {why}.")
    _report_health(session, probe, failing=False, detail=why)


def set_enabled(session: Session, actor: Actor, name: str, enabled: bool) -> Probe:
    """Pause or resume. A paused probe is not run, and its state goes back to unknown."""
    actor.require(Role.admin)
    probe = get_probe(session, name)
    if probe.enabled == enabled:
        return probe
    if not enabled:
        if probe.state == DOWN:
            _clear(session, probe, "it was paused")
        _reset_state(probe)
    probe.enabled = enabled
    probe.updated_at = clock.now()
    probe.next_run_at = clock.now()
    session.flush()
    return probe


def probe_references(session: Session, name: str) -> list[str]:
    """What still names the probe ``name``: the SLA targets and the SLOs it measures."""
    targets = session.scalars(
        select(SlaTarget).where(SlaTarget.probe_name == name).order_by(SlaTarget.id)
    )
    slos = session.scalars(select(Slo).where(Slo.sli_kind == "probe").order_by(Slo.name))
    return [
        *(f"the {t.kind} SLA target of service {t.service.name!r}" for t in targets),
        *(f"SLO {slo.name!r}" for slo in slos if slo.sli.get("probe") == name),
    ]


def lock_to_refer(session: Session, name: str) -> Probe | None:
    """The probe ``name``, for a new SLA target or SLO to name it: on PostgreSQL under a
    share lock, so that a delete (which locks it for update before it looks for what names
    it) either sees the new record or has deleted the probe before it is read here."""
    return session.scalar(select(Probe).where(Probe.name == name).with_for_update(read=True))


def delete_probe(session: Session, actor: Actor, name: str) -> None:
    """Delete a probe with its results and roll-ups; a down one resolves its signal first.

    Refused (409, naming them, also as ``references``) while an SLA target or an SLO
    measures it: the target's report and the SLO's evaluations would read nothing, without a
    word, and a new probe of that name would measure them unnoticed.
    """
    actor.require(Role.admin)
    probe = get_probe(session, name)
    _locked(session, probe.id)  # PostgreSQL: a target or SLO naming it now waits (lock_to_refer)
    references = probe_references(session, name)
    if references:
        raise Conflict(
            f"probe {name!r} is still referred to by {', '.join(references)}; change or "
            "delete those first",
            field="name",
            references=references,
        )
    if probe.state == DOWN:
        _clear(session, probe, "it was deleted")
    session.execute(delete(ProbeResult).where(ProbeResult.probe_id == probe.id))
    session.execute(delete(ProbeRollup).where(ProbeRollup.probe_id == probe.id))
    session.delete(probe)
    session.flush()


def _same(probe: Probe, data: ProbeCreate) -> bool:
    current = {key: getattr(probe, key) for key in _definition(data)}
    service = probe.service.name if probe.service else None
    return current == _definition(data) and service == data.service


def apply_probes(
    session: Session, actor: Actor, probes: list[ProbeCreate], *, prune: bool = False
) -> ProbeApplySummary:
    """Config as code: create the listed probes that are new, replace those that differ.

    With ``prune``, probes not listed are deleted. Everything is checked before anything is
    written; the caller's transaction makes it all or nothing. An error names its place as
    firetower.yaml's apply does, e.g. ``probes[1].service``.
    """
    actor.require(Role.admin)
    names = [p.name for p in probes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"probes: {', '.join(repeated)} listed more than once", field="probes")
    services = {}
    existing = {p.name: p for p in list_probes(session)}
    for index, data in enumerate(probes):
        where = f"probes[{index}].service"
        try:
            services[data.name] = _service_of(session, data.service)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{where}: no service named {data.service!r} in the catalog", field=where
            ) from exc
        now_in = existing[data.name].service_id if data.name in existing else None
        _check_move(session, data.name, now_in, services[data.name], field=where)
    summary = ProbeApplySummary()
    for data in probes:
        probe = existing.get(data.name)
        if probe is None:
            create_probe(session, actor, data)
            summary.created.append(data.name)
        elif _same(probe, data):
            summary.unchanged.append(data.name)
        else:
            _replace(session, probe, services[data.name], data)
            summary.updated.append(data.name)
    if prune:
        for name in sorted(set(existing) - set(names)):
            delete_probe(session, actor, name)
            summary.deleted.append(name)
    return summary


def read_probe(probe: Probe, *, reveal_headers: bool = True) -> ProbeRead:
    """A probe as the API shows it; header values and a URL's userinfo are hidden unless
    ``reveal_headers`` (they often carry credentials, and viewers may read probes)."""
    settings = dict(probe.settings)
    if not reveal_headers and settings.get("headers"):
        settings["headers"] = dict.fromkeys(settings["headers"], REDACTED)
    if not reveal_headers and settings.get("url"):
        settings["url"] = without_userinfo(settings["url"])
    return ProbeRead(
        name=probe.name,
        kind=ProbeKind(probe.kind),
        service=probe.service.name if probe.service else None,
        severity=Severity(probe.severity),
        interval_seconds=probe.interval_seconds,
        timeout_seconds=probe.timeout_seconds,
        failure_threshold=probe.failure_threshold,
        success_threshold=probe.success_threshold,
        enabled=probe.enabled,
        state=probe.state,
        state_changed_at=probe.state_changed_at,
        consecutive_failures=probe.consecutive_failures,
        consecutive_successes=probe.consecutive_successes,
        last_checked_at=probe.last_checked_at,
        last_ok=probe.last_ok,
        last_latency_ms=probe.last_latency_ms,
        last_error=probe.last_error,
        next_run_at=probe.next_run_at,
        created_at=probe.created_at,
        updated_at=probe.updated_at,
        **{probe.kind: settings},
    )


def without_userinfo(url: str) -> str:
    """``https://user:password@host/`` with its userinfo (basic-auth credentials, or a token
    given as the user) replaced by ``<redacted>``; any other URL as it is."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    _userinfo, at, host = authority.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{REDACTED}@{host}{tail}"


def target_of(probe: Probe) -> str:
    """What a probe checks, in one line: ``GET https://…``, ``tcp db:5432``, ``dns A x.org``.

    Without a URL's credentials: the line goes to everyone who reads the probe or its alert."""
    s = probe.settings
    if probe.kind == ProbeKind.http:
        return f"{s.get('method', 'GET')} {without_userinfo(s.get('url', ''))}"
    if probe.kind == ProbeKind.tcp:
        return f"tcp {s.get('host')}:{s.get('port')}"
    at = f" @{s['nameserver']}:{s.get('nameserver_port', 53)}" if s.get("nameserver") else ""
    return f"dns {s.get('record_type', 'A')} {s.get('name')}{at}"


# -- runs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """What a check needs, read before the network I/O (no session is kept open)."""

    probe_id: int
    name: str
    kind: str
    settings: dict[str, Any]
    timeout_seconds: int
    enabled: bool
    version: str
    """The definition's ``updated_at``: an outcome of an older definition is not recorded."""


def run_spec(session: Session, name: str) -> RunSpec:
    probe = get_probe(session, name)
    return RunSpec(
        probe.id,
        probe.name,
        probe.kind,
        dict(probe.settings),
        probe.timeout_seconds,
        probe.enabled,
        probe.updated_at.isoformat(),
    )


@dataclass(frozen=True)
class RecordedRun:
    result: ProbeResult
    probe: Probe
    state_changed: bool


def _locked(session: Session, probe_id: int) -> Probe | None:
    query = select(Probe).where(Probe.id == probe_id)
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()  # two runs of one probe count in turn
    return session.scalar(query)


def record_result(
    session: Session, spec: RunSpec, outcome: CheckOutcome, *, require_enabled: bool = True
) -> RecordedRun | None:
    """Store a run and move the probe's state. None when the probe changed meanwhile
    (deleted, redefined, paused): what the check saw no longer describes it."""
    probe = _locked(session, spec.probe_id)
    if probe is None or probe.updated_at.isoformat() != spec.version:
        return None
    if require_enabled and not probe.enabled:
        return None
    result = ProbeResult(
        probe_id=probe.id,
        checked_at=outcome.checked_at,
        ok=outcome.ok,
        latency_ms=outcome.latency_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        details=outcome.details,
    )
    session.add(result)
    # Runs may commit out of order (two workers, a run by hand, a slow one that timed out):
    # one checked before the latest recorded is kept, but the state follows the latest.
    latest = probe.last_checked_at is None or outcome.checked_at >= probe.last_checked_at
    if latest:
        probe.last_checked_at = outcome.checked_at
        probe.last_ok = outcome.ok
        probe.last_latency_ms = outcome.latency_ms
        probe.last_error = outcome.error
    # A paused probe may be run by hand; its result is kept but moves no state.
    changed = _count(session, probe, outcome) if probe.enabled and latest else False
    session.flush()
    return RecordedRun(result, probe, changed)


def _count(session: Session, probe: Probe, outcome: CheckOutcome) -> bool:
    """Count the outcome toward the thresholds; returns whether the state changed."""
    if outcome.ok:
        probe.consecutive_successes += 1
        probe.consecutive_failures = 0
        if probe.state == UP or probe.consecutive_successes < probe.success_threshold:
            return False
        was, probe.state = probe.state, UP
    else:
        probe.consecutive_failures += 1
        probe.consecutive_successes = 0
        if probe.state == DOWN:
            _repeat_if_unattended(session, probe, outcome)
            return False
        if probe.consecutive_failures < probe.failure_threshold:
            return False
        was, probe.state = probe.state, DOWN
    probe.state_changed_at = outcome.checked_at
    if probe.state == DOWN:
        runs = "run" if probe.failure_threshold == 1 else f"{probe.failure_threshold} runs in a row"
        _signal(
            session,
            probe,
            "firing",
            f"Probe {probe.name} ({target_of(probe)}) failed {runs}: {outcome.error}",
            error=outcome.error or "",
        )
        _report_health(session, probe, failing=True, detail=outcome.error or "")
    elif was == DOWN:
        _signal(session, probe, "resolved", f"Probe {probe.name} passes again.")
        _report_health(session, probe, failing=False, detail="")
    elif probe.service is not None:
        _report_health(session, probe, failing=False, detail="")
    return True


def _repeat_if_unattended(session: Session, probe: Probe, outcome: CheckOutcome) -> None:
    """A failing run of a probe still down whose signal is on no active incident says it
    again, routed as a new firing would (``reroute_when_incident_over``): once a person
    resolved its alert by hand, or ended the incident it joined (resolved, closed, declined
    it) while the probe stayed down, it opens the next incident or joins another active
    one; when its routing found none to join (an attach rule, no service), it joins the one
    opened since, if any. While it is on an active incident, or a mute or flapping holds it
    (the job that settles held alerts routes it once that is over), nothing."""
    if not signals.unattended(session, INTEGRATION, _fingerprint(probe)):
        return
    _signal(
        session,
        probe,
        "firing",
        f"Probe {probe.name} ({target_of(probe)}) is still down: {outcome.error}",
        error=outcome.error or "",
        repeat=True,
    )


def _fingerprint(probe: Probe) -> str:
    return f"probe:{probe.name}"


def _policy(session: Session) -> SeverityPolicy:
    settings = session.info.get(SETTINGS_INFO)
    return settings.severity_policy if settings is not None else SeverityPolicy()


def _signal(
    session: Session,
    probe: Probe,
    status: str,
    summary: str,
    error: str = "",
    *,
    repeat: bool = False,
) -> None:
    """The probe's signal; ``repeat`` says again that it is down (keeping when it went)."""
    service = probe.service.name if probe.service else None
    now = clock.now()
    signals.raise_internal(
        session,
        _policy(session),
        integration_name=INTEGRATION,
        kind=SIGNAL_KIND,
        signal=Signal(
            fingerprint=_fingerprint(probe),
            status=status,
            title=f"Probe {probe.name} is down",
            severity=Severity(probe.severity),
            service_name=service,
            labels={
                "alertname": "ProbeDown",
                "probe": probe.name,
                "probe_kind": probe.kind,
                "service": service or "",
            },
            annotations={"target": target_of(probe), "error": error} if error else {},
            starts_at=now if status == "firing" and not repeat else None,
            ends_at=now if status == "resolved" else None,
            reroute_when_incident_over=True,
        ),
        summary=summary,
    )


def signal_severity(session: Session, labels: Mapping[str, str]) -> Severity:
    """The severity ``_signal`` gives the probe its labels name: the probe's own, or a new
    probe's default if there is none by that name (for the routing rules' test, which
    ``probe_reactions.register`` tells)."""
    severity = session.scalar(select(Probe.severity).where(Probe.name == labels.get("probe")))
    return Severity(severity or ProbeCreate.model_fields["severity"].default)


def _report_health(session: Session, probe: Probe, *, failing: bool, detail: str) -> None:
    if probe.service is None:
        return
    catalog.report_health(
        session,
        service_name=probe.service.name,
        check=f"probe:{probe.name}",
        failing=failing,
        detail=detail[:1000],
    )


def dispatch_due(session: Session) -> list[str]:
    """Enqueue one run per enabled probe whose slot has come, and move its next slot on.

    Slots keep their cadence (``next_run_at + k * interval``); slots missed while no worker
    ran are skipped, not made up. The idempotency key (probe, slot) stops a double enqueue.
    """
    now = clock.now()
    due = list(
        session.scalars(
            select(Probe)
            .where(Probe.enabled.is_(True), Probe.next_run_at <= now)
            .order_by(Probe.next_run_at, Probe.id)
            .with_for_update(skip_locked=True)  # PostgreSQL: two dispatchers split the work
        )
    )
    for probe in due:
        slot = probe.next_run_at
        interval = timedelta(seconds=probe.interval_seconds)
        missed = math.floor((now - slot) / interval)
        probe.next_run_at = slot + interval * (missed + 1)
        enqueue(
            session,
            RUN_KIND,
            {"probe": probe.name, "probe_id": probe.id, "slot": slot.isoformat()},
            idempotency_key=f"probe:{probe.id}:{slot.isoformat()}",
            max_attempts=RUN_MAX_ATTEMPTS,
        )
    return [p.name for p in due]


def run_now(runtime: Runtime, name: str) -> ProbeRunRead:
    """Check now (no transaction open while the network answers), then record it."""
    with runtime.read() as session:
        spec = run_spec(session, name)
    outcome = run_check(spec.kind, spec.settings, spec.timeout_seconds)
    with runtime.transaction() as session:
        recorded = record_result(session, spec, outcome, require_enabled=False)
        if recorded is None:
            raise Conflict(
                f"probe {name!r} was changed or deleted while it ran; run it again", field="name"
            )
        result = ProbeResultRead.model_validate(recorded.result)
        return ProbeRunRead(
            **result.model_dump(),
            enabled=recorded.probe.enabled,
            state=recorded.probe.state,
            state_changed=recorded.state_changed,
            consecutive_failures=recorded.probe.consecutive_failures,
            failure_threshold=recorded.probe.failure_threshold,
            consecutive_successes=recorded.probe.consecutive_successes,
            success_threshold=recorded.probe.success_threshold,
        )


# -- results and roll-ups --------------------------------------------------------------------
def list_results(
    session: Session, probe: Probe, *, since: datetime | None = None, limit: int = 1000
) -> list[ProbeResult]:
    """Raw results from ``since`` (oldest first); without it, the latest ``limit``."""
    query = select(ProbeResult).where(ProbeResult.probe_id == probe.id)
    if since is not None:
        query = query.where(ProbeResult.checked_at >= since)
        return list(session.scalars(query.order_by(ProbeResult.checked_at).limit(limit)))
    latest = session.scalars(query.order_by(ProbeResult.checked_at.desc()).limit(limit))
    return list(reversed(list(latest)))


def recent_history(
    session: Session, probe_ids: list[int], length: int = HISTORY_LENGTH
) -> dict[int, list[ProbeResult]]:
    """The last ``length`` results of each probe, oldest first (the status-history bars)."""
    return {pid: list_results_by_id(session, pid, length) for pid in probe_ids}


def list_results_by_id(session: Session, probe_id: int, length: int) -> list[ProbeResult]:
    rows = session.scalars(
        select(ProbeResult)
        .where(ProbeResult.probe_id == probe_id)
        .order_by(ProbeResult.checked_at.desc())
        .limit(length)
    )
    return list(reversed(list(rows)))


def list_rollups(
    session: Session, probe: Probe, *, since: datetime | None = None
) -> list[ProbeRollup]:
    query = select(ProbeRollup).where(ProbeRollup.probe_id == probe.id)
    if since is not None:
        query = query.where(ProbeRollup.hour_start >= hour_of(since))
    return list(session.scalars(query.order_by(ProbeRollup.hour_start)))


def rollups_to_now(session: Session, probe: Probe, *, since: datetime) -> list[ProbeRollup]:
    """Hourly roll-ups from the hour of ``since`` up to now, for charts: the stored ones, then
    the hours not rolled up yet (those since ``rolled_up_until``, the current one partial)
    computed from raw results and not stored. Roll-ups are written at minute 7 for the hours
    that ended, so without these a chart would miss the last one or two hours."""
    stored = list_rollups(session, probe, since=since)
    pending_from = hour_of(since)
    if probe.rolled_up_until is not None:
        pending_from = max(pending_from, probe.rolled_up_until)
    by_hour: dict[datetime, list[ProbeResult]] = defaultdict(list)
    for result in session.scalars(
        select(ProbeResult).where(
            ProbeResult.probe_id == probe.id, ProbeResult.checked_at >= pending_from
        )
    ):
        by_hour[hour_of(result.checked_at)].append(result)
    return stored + [_rollup_row(probe.id, hour, by_hour[hour]) for hour in sorted(by_hour)]


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return None
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def bucket_of(latency_ms: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def _rollup_row(probe_id: int, hour: datetime, results: list[ProbeResult]) -> ProbeRollup:
    latencies = sorted(r.latency_ms for r in results if r.latency_ms is not None)
    histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for r in results:
        if r.ok and r.latency_ms is not None:
            histogram[bucket_of(r.latency_ms)] += 1
    return ProbeRollup(
        probe_id=probe_id,
        hour_start=hour,
        count=len(results),
        failures=sum(1 for r in results if not r.ok),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p95_ms=percentile(latencies, 0.95),
        latency_max_ms=latencies[-1] if latencies else None,
        ok_latency_histogram=histogram,
    )


def roll_up(session: Session) -> int:
    """Roll up every complete hour (past the grace) not rolled up yet. Returns rows written."""
    limit = hour_of(clock.now() - ROLLUP_GRACE)
    written = 0
    for probe in list_probes(session):
        start = probe.rolled_up_until
        if start is None:
            first = session.scalar(
                select(func.min(ProbeResult.checked_at)).where(ProbeResult.probe_id == probe.id)
            )
            if first is None:
                continue
            start = hour_of(first)
        if start >= limit:
            continue
        by_hour: dict[datetime, list[ProbeResult]] = defaultdict(list)
        for result in session.scalars(
            select(ProbeResult).where(
                ProbeResult.probe_id == probe.id,
                ProbeResult.checked_at >= start,
                ProbeResult.checked_at < limit,
            )
        ):
            by_hour[hour_of(result.checked_at)].append(result)
        session.execute(
            delete(ProbeRollup).where(
                ProbeRollup.probe_id == probe.id,
                ProbeRollup.hour_start >= start,
                ProbeRollup.hour_start < limit,
            )
        )
        for hour in sorted(by_hour):
            session.add(_rollup_row(probe.id, hour, by_hour[hour]))
            written += 1
        probe.rolled_up_until = limit
    session.flush()
    return written


def trim(session: Session) -> tuple[int, int]:
    """Delete raw results past their retention (only hours already rolled up) and roll-ups
    past theirs. Returns (results deleted, roll-ups deleted)."""
    now = clock.now()
    raw_cutoff = hour_of(now - timedelta(days=RAW_RETENTION_DAYS))
    results = 0
    for probe in list_probes(session):
        if probe.rolled_up_until is None:
            continue
        cutoff = min(raw_cutoff, probe.rolled_up_until)
        deleted = session.execute(
            delete(ProbeResult).where(
                ProbeResult.probe_id == probe.id, ProbeResult.checked_at < cutoff
            )
        )
        results += int(deleted.rowcount)  # type: ignore[attr-defined]
        if probe.raw_trimmed_before is None or cutoff > probe.raw_trimmed_before:
            probe.raw_trimmed_before = cutoff
    rollups = session.execute(
        delete(ProbeRollup).where(
            ProbeRollup.hour_start < hour_of(now - timedelta(days=ROLLUP_RETENTION_DAYS))
        )
    )
    session.flush()
    return results, int(rollups.rowcount)  # type: ignore[attr-defined]


def sli_counts(
    session: Session,
    probe_name: str,
    start: datetime,
    end: datetime,
    *,
    latency_threshold_ms: int | None = None,
) -> tuple[int, int]:
    """(good, total) runs of a probe checked in [start, end), for SLOs.

    Good means it succeeded and, with ``latency_threshold_ms``, took at most that long.
    Raw results answer where they are still kept; before that (``raw_trimmed_before``) the
    hourly roll-ups answer: an hour counts when it starts in [start, end), and a latency
    threshold counts whole histogram buckets at or under it (exact when the threshold is one
    of ``LATENCY_BUCKETS_MS``, otherwise a little strict).
    """
    start = clock.ensure_utc(start, field="start")
    end = clock.ensure_utc(end, field="end")
    probe = get_probe(session, probe_name, field="probe")
    if end <= start:
        return 0, 0
    boundary = probe.raw_trimmed_before
    good = total = 0
    raw_start = start if boundary is None else max(start, boundary)
    if raw_start < end:
        good_condition: ColumnElement[bool] = ProbeResult.ok.is_(True)
        if latency_threshold_ms is not None:
            good_condition = and_(
                good_condition,
                ProbeResult.latency_ms.is_not(None),
                ProbeResult.latency_ms <= latency_threshold_ms,
            )
        row = session.execute(
            select(
                func.count(),
                func.count().filter(good_condition),
            ).where(
                ProbeResult.probe_id == probe.id,
                ProbeResult.checked_at >= raw_start,
                ProbeResult.checked_at < end,
            )
        ).one()
        total += int(row[0])
        good += int(row[1])
    if boundary is not None and start < boundary:
        upper = min(end, boundary)
        for rollup in session.scalars(
            select(ProbeRollup).where(
                ProbeRollup.probe_id == probe.id,
                ProbeRollup.hour_start >= start,
                ProbeRollup.hour_start < upper,
            )
        ):
            total += rollup.count
            if latency_threshold_ms is None:
                good += rollup.count - rollup.failures
            else:
                within = bisect.bisect_right(LATENCY_BUCKETS_MS, latency_threshold_ms)
                good += sum(rollup.ok_latency_histogram[:within])
    return good, total
