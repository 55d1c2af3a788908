"""Console pages of signals: the live alert list, alert groups, silences and maintenance
windows, and (for admins) integrations with their keys and dead letters.

Viewers see alerts, groups and silences; responders silence, expire and plan maintenance;
admins manage integrations. A refused form re-renders its page with the reason and the
refusal's status, having written nothing. A new or rotated key is shown in the answer to
the form that made it, never kept in the session, so it is seen exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.deps import NO_STORE, Admin, Responder, Viewer
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.errors import DomainError, InvalidInput
from firetower.runtime import Runtime
from firetower.signals import queries
from firetower.signals import service as signals
from firetower.signals.schemas import (
    AlertSilenceCreate,
    AlertStatus,
    IntegrationCreate,
    IntegrationKind,
    IntegrationRead,
    MaintenanceWindowCreate,
    SilenceCreate,
)
from firetower.web.forms import as_invalid_input, parse_local_utc
from firetower.web.templating import FLASH_KEY, flash, render

router = APIRouter(include_in_schema=False)

ALERT_ROWS = 200
POLL_SECONDS = 5
DURATIONS_MINUTES = [
    (30, "30 minutes"),
    (60, "1 hour"),
    (120, "2 hours"),
    (240, "4 hours"),
    (480, "8 hours"),
    (1440, "1 day"),
    (10080, "1 week"),
]
DEFAULT_DURATION_MINUTES = 120
MAPPING_FIELDS = ("title", "severity", "dedup_key", "service", "status")

Text = Annotated[str, Form(max_length=20_000)]  # longer than allowed: the form says why
Short = Annotated[str, Form(max_length=200)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _can(actor: Actor, role: Role) -> bool:
    return actor.role.allows(role)


def _notice(request: Request) -> Any:
    """Take the flash message here, so that it shows inside the panel HTMX swaps in."""
    return request.session.pop(FLASH_KEY, None)


def _act(
    request: Request,
    change: Callable[[Session], str],
    *,
    refused: Callable[[DomainError], Response],
    to: str,
) -> Response:
    """Run one change in one transaction, then flash the notice it returns and redirect (303)
    to ``to``; a refusal, having written nothing, is shown by ``refused``."""
    try:
        with _runtime(request).transaction() as session:
            notice = change(session)
    except DomainError as exc:
        return refused(exc)
    flash(request, notice)
    return RedirectResponse(to, status_code=303)


def _act_on_silences(
    request: Request, actor: Actor, change: Callable[[Session], str], **typed: Any
) -> Response:
    """``_act`` from the silences page: back to it, or shown again with what was typed."""
    return _act(
        request,
        change,
        refused=lambda exc: _silences_page(request, actor, error=exc, **typed),
        to="/silences",
    )


# -- alerts ------------------------------------------------------------------------------------
FilterQuery = Annotated[str, Query(max_length=100)]
GroupQuery = Annotated[str | None, Query(max_length=1024)]


@dataclass(frozen=True)
class AlertFilters:
    """The alert list's filters, as the page, its polled panel and a silence form carry them."""

    status: str = ""
    integration: str = ""
    group: str | None = None
    """A group key; "" too: that of alerts lacking every group-by label (shown "(all)"),
    which is one group, not every alert."""
    incident: str = ""
    """``INC-7``: the alerts that opened it or last joined it."""

    def given(self) -> dict[str, str]:
        """The filters set, to carry along in a link or a form."""
        filters = {k: v for k, v in asdict(self).items() if v}
        if self.group is not None:
            filters["group"] = self.group
        return filters

    def url(self, without: str = "") -> str:
        """The alert list so filtered; ``without`` one filter, for its "clear" link."""
        kept = {k: v for k, v in self.given().items() if k != without}
        return "/alerts" + (f"?{urlencode(kept)}" if kept else "")


def alert_filters(
    status: FilterQuery = "",
    integration: FilterQuery = "",
    group: GroupQuery = None,
    incident: FilterQuery = "",
) -> AlertFilters:
    return AlertFilters(status, integration, group, incident)


def _alerts_context(
    request: Request, actor: Actor, filters: AlertFilters, error: DomainError | None = None
) -> dict[str, Any]:
    rows: list[queries.ListedAlert] = []
    counts = queries.AlertCounts()
    with _runtime(request).read() as session:
        names = queries.integration_names(session)
        try:  # the list shows under a refused form too, unless its own filters are wrong
            status = filters.status
            if status and status not in {s.value for s in AlertStatus}:
                raise InvalidInput(f"status: unknown alert status {status!r}", field="status")
            rows = queries.alert_rows(
                session,
                status=AlertStatus(status) if status else None,
                integration=filters.integration or None,
                group_key=filters.group,
                incident=filters.incident or None,
                limit=ALERT_ROWS,
            )
            counts = queries.alert_counts(
                session,
                integration=filters.integration or None,
                group_key=filters.group,
                incident=filters.incident or None,
            )
        except DomainError as exc:
            error = error or exc
    given = filters.given()
    return {
        "rows": rows,
        "counts": counts,
        "limit": ALERT_ROWS,
        "integrations": names,
        "statuses": [s.value for s in AlertStatus],
        "filters": filters,
        "hidden_filters": given,
        "query": urlencode(given),
        "poll_seconds": POLL_SECONDS,
        "durations": DURATIONS_MINUTES,
        "default_duration": DEFAULT_DURATION_MINUTES,
        "can_act": _can(actor, Role.responder),
        "error": error,
        "notice": _notice(request),
    }


def _alerts_page(
    request: Request, actor: Actor, filters: AlertFilters, error: DomainError | None = None
) -> Response:
    context = _alerts_context(request, actor, filters, error)
    failed = context["error"]
    return render(
        request,
        "signals/alerts.html",
        context,
        actor=actor,
        status_code=failed.status_code if failed else 200,
    )


Filters = Annotated[AlertFilters, Depends(alert_filters)]


@router.get("/alerts")
def alerts_page(request: Request, actor: Viewer, filters: Filters) -> Response:
    return _alerts_page(request, actor, filters)


@router.get("/alerts/panel")
def alerts_panel(request: Request, actor: Viewer, filters: Filters) -> Response:
    """The alert list alone: what the page polls every few seconds to stay live."""
    context = _alerts_context(request, actor, filters)
    failed = context["error"]
    return render(
        request,
        "signals/_alerts_panel.html",
        context,
        actor=actor,
        status_code=failed.status_code if failed else 200,
    )


@router.post("/alerts/{alert_id}/silence")
def silence_alert(
    request: Request,
    alert_id: int,
    actor: Responder,
    duration_minutes: Short = "",
    comment: Text = "",
    status: Short = "",
    integration: Short = "",
    group: Annotated[str | None, Form(max_length=1024)] = None,
    incident: Short = "",
) -> Response:
    """One click: silence this alert's exact labels from now for the chosen duration."""

    def change(session: Session) -> str:
        if not duration_minutes.strip().isdecimal():
            raise InvalidInput(
                "duration_minutes: choose how long the silence lasts", field="duration_minutes"
            )
        with as_invalid_input():
            data = AlertSilenceCreate(
                duration_minutes=int(duration_minutes.strip()), comment=comment
            )
        silence = signals.silence_alert(session, actor, alert_id, data)
        return f"Alert {alert_id} silenced (silence {silence.id}) until {_when(silence.ends_at)}."

    filters = AlertFilters(status, integration, group, incident)
    return _act(
        request,
        change,
        refused=lambda exc: _alerts_page(request, actor, filters, error=exc),
        to=filters.url(),
    )


BY_HAND = {"acknowledge": AlertStatus.acknowledged, "resolve": AlertStatus.resolved}
"""An alert row's buttons (the last part of their URL) and the status each one sets."""


@router.post("/alerts/{alert_id}/{action}")
def set_alert_status(
    request: Request,
    alert_id: int,
    action: Literal["acknowledge", "resolve"],
    actor: Responder,
    status: Short = "",
    integration: Short = "",
    group: Annotated[str | None, Form(max_length=1024)] = None,
    incident: Short = "",
) -> Response:
    """An alert row's Acknowledge or Resolve button; back to the list as it was filtered."""
    filters = AlertFilters(status, integration, group, incident)
    policy = _runtime(request).settings.severity_policy

    def change(session: Session) -> str:
        alert, changed = signals.set_alert_status(session, actor, alert_id, BY_HAND[action], policy)
        already = "" if changed else "was already "
        return f"Alert {alert_id} {already}{alert.status}."

    return _act(
        request,
        change,
        refused=lambda exc: _alerts_page(request, actor, filters, error=exc),
        to=filters.url(),
    )


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@router.get("/alerts/groups")
def alert_groups_page(request: Request, actor: Viewer, integration: FilterQuery = "") -> Response:
    error: DomainError | None = None
    groups = []
    with _runtime(request).read() as session:
        names = queries.integration_names(session)
        try:
            groups = signals.list_groups(session, integration=integration or None, limit=200)
        except DomainError as exc:
            error = exc
    return render(
        request,
        "signals/groups.html",
        {"groups": groups, "integrations": names, "integration": integration, "error": error},
        actor=actor,
        status_code=error.status_code if error else 200,
    )


# -- change events -----------------------------------------------------------------------------
CHANGE_ROWS = 200
CHANGE_WINDOWS_HOURS = [(1, "last hour"), (6, "last 6 hours"), (24, "last day"), (168, "last week")]


@router.get("/changes")
def changes_page(
    request: Request,
    actor: Viewer,
    integration: FilterQuery = "",
    service: FilterQuery = "",
    hours: FilterQuery = "",
) -> Response:
    """Deploys and config changes, newest first: what changed before things broke?"""
    error: DomainError | None = None
    changes = []
    with _runtime(request).read() as session:
        names = [  # change events come only with PagerDuty keys
            i.name
            for i in signals.list_integrations(session)
            if i.kind == IntegrationKind.pagerduty
        ]
        services = [s.name for s in catalog.list_services(session)]
        try:
            windows = [str(h) for h, _ in CHANGE_WINDOWS_HOURS]
            if hours and hours not in windows:
                raise InvalidInput(
                    f"hours: {hours!r} is not one of the windows ({', '.join(windows)})",
                    field="hours",
                )
            now = clock.now()
            changes = signals.list_changes(
                session,
                integration=integration or None,
                service_name=service or None,
                # A window ends now: a change stamped in the future is in none of them.
                since=now - timedelta(hours=int(hours)) if hours else None,
                until=now if hours else None,
                limit=CHANGE_ROWS,
            )
        except DomainError as exc:
            error = exc
    return render(
        request,
        "signals/changes.html",
        {
            "changes": [(c, queries.web_links(c.links)) for c in changes],
            "limit": CHANGE_ROWS,
            "integrations": names,
            "services": services,
            "windows": CHANGE_WINDOWS_HOURS,
            "filters": {"integration": integration, "service": service, "hours": hours},
            "error": error,
        },
        actor=actor,
        status_code=error.status_code if error else 200,
    )


# -- silences and maintenance windows ---------------------------------------------------------
def _window_end(starts_at: datetime | None, ends_at: str, duration_minutes: str) -> datetime:
    """The end of a silence or window: a date given, else start (or now) plus the duration."""
    end = parse_local_utc(ends_at, "ends_at")
    if end is not None:
        if end <= clock.now():
            raise InvalidInput("ends_at: must be in the future", field="ends_at")
        return end
    if not duration_minutes.strip().isdecimal() or int(duration_minutes) <= 0:
        raise InvalidInput(
            "duration_minutes: choose a duration or an end", field="duration_minutes"
        )
    minutes = int(duration_minutes)
    if minutes > 366 * 24 * 60:
        raise InvalidInput(
            "duration_minutes: at most a year (527040 minutes)", field="duration_minutes"
        )
    try:
        return (starts_at or clock.now()) + timedelta(minutes=minutes)
    except OverflowError:
        raise InvalidInput("starts_at: too far in the future", field="starts_at") from None


def _silences_page(
    request: Request,
    actor: Actor,
    *,
    show_all: bool = False,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
    window_values: dict[str, Any] | None = None,
) -> Response:
    now = clock.now()
    with _runtime(request).read() as session:
        silences = signals.list_silences(session, include_inactive=show_all)
        rows = [
            {
                "silence": s,
                "state": queries.silence_state(s, now),
                "matchers": [queries.format_matcher(m) for m in s.matchers],
            }
            for s in silences
        ]
        windows = signals.list_maintenance_windows(session)
        window_rows = [{"window": w, "active": w.starts_at <= now} for w in windows]
        services = [s.name for s in catalog.list_services(session)]
    return render(
        request,
        "signals/silences.html",
        {
            "rows": rows,
            "windows": window_rows,
            "services": services,
            "show_all": show_all,
            "durations": DURATIONS_MINUTES,
            "default_duration": DEFAULT_DURATION_MINUTES,
            "values": values or {"duration_minutes": str(DEFAULT_DURATION_MINUTES)},
            "window_values": window_values or {"duration_minutes": "60"},
            "can_act": _can(actor, Role.responder),
            "error": error,
            "notice": _notice(request),
        },
        actor=actor,
        status_code=error.status_code if error else 200,
    )


@router.get("/silences")
def silences_page(request: Request, actor: Viewer, all: bool = False) -> Response:
    return _silences_page(request, actor, show_all=all)


@router.post("/silences")
def create_silence(
    request: Request,
    actor: Responder,
    matchers: Annotated[str, Form(max_length=20_000)] = "",
    starts_at: Short = "",
    ends_at: Short = "",
    duration_minutes: Short = "",
    comment: Text = "",
) -> Response:
    values = {
        "matchers": matchers,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "duration_minutes": duration_minutes,
        "comment": comment,
    }

    def change(session: Session) -> str:
        lines = [line for line in matchers.splitlines() if line.strip()]
        if not lines:
            raise InvalidInput(
                "matchers: give at least one, like alertname=HighLatency", field="matchers"
            )
        parsed = [queries.parse_matcher(line) for line in lines]
        start = parse_local_utc(starts_at, "starts_at")
        end = _window_end(start, ends_at, duration_minutes)
        with as_invalid_input():
            data = SilenceCreate(matchers=parsed, starts_at=start, ends_at=end, comment=comment)
        return f"Silence {signals.create_silence(session, actor, data).id} created."

    return _act_on_silences(request, actor, change, values=values)


@router.post("/silences/{silence_id}/expire")
def expire_silence(request: Request, silence_id: int, actor: Responder) -> Response:
    def change(session: Session) -> str:
        signals.expire_silence(session, actor, silence_id)
        return f"Silence {silence_id} expired."

    return _act_on_silences(request, actor, change)


@router.post("/maintenance-windows")
def create_maintenance_window(
    request: Request,
    actor: Responder,
    service_name: Short = "",
    starts_at: Short = "",
    ends_at: Short = "",
    duration_minutes: Short = "",
    comment: Text = "",
) -> Response:
    values = {
        "service_name": service_name,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "duration_minutes": duration_minutes,
        "comment": comment,
    }

    def change(session: Session) -> str:
        if not service_name.strip():
            raise InvalidInput("service_name: choose a service", field="service_name")
        start = parse_local_utc(starts_at, "starts_at")
        end = _window_end(start, ends_at, duration_minutes)
        with as_invalid_input():
            data = MaintenanceWindowCreate(
                service_name=service_name.strip(), starts_at=start, ends_at=end, comment=comment
            )
        window_id = signals.create_maintenance_window(session, actor, data).id
        return f"Maintenance window {window_id} for {service_name.strip()} planned."

    return _act_on_silences(request, actor, change, window_values=values)


@router.post("/maintenance-windows/{window_id}/delete")
def delete_maintenance_window(request: Request, window_id: int, actor: Responder) -> Response:
    def change(session: Session) -> str:
        signals.delete_maintenance_window(session, actor, window_id)
        return f"Maintenance window {window_id} deleted."

    return _act_on_silences(request, actor, change)


# -- integrations (admins) --------------------------------------------------------------------
def _integrations_page(
    request: Request,
    actor: Actor,
    *,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
    new_key: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    with _runtime(request).read() as session:
        integrations = [
            IntegrationRead.model_validate(i) for i in signals.list_integrations(session)
        ]
        letters = queries.dead_letters(session)
        services = [s.name for s in catalog.list_services(session)]
    page = render(
        request,
        "signals/integrations.html",
        {
            "integrations": integrations,
            "letters": letters,
            "services": services,
            "kinds": [k.value for k in IntegrationKind],
            "mapping_fields": MAPPING_FIELDS,
            "values": values or {"kind": "alertmanager", "group_by": "alertname, service"},
            "new_key": new_key,
            "base_url": str(request.base_url).rstrip("/"),
            "error": error,
            "notice": _notice(request),
        },
        actor=actor,
        status_code=error.status_code if error else status_code,
    )
    if new_key is not None:
        page.headers.update(NO_STORE)
    return page


def _shown_key(integration: IntegrationRead, key: str, verb: str) -> dict[str, Any]:
    return {"name": integration.name, "kind": integration.kind.value, "key": key, "verb": verb}


@router.get("/integrations")
def integrations_page(request: Request, actor: Admin) -> Response:
    return _integrations_page(request, actor)


@router.post("/integrations")
def create_integration(
    request: Request,
    actor: Admin,
    name: Short = "",
    kind: Short = "",
    service_name: Short = "",
    group_by: Short = "",
    flap_threshold: Short = "",
    flap_window_seconds: Short = "",
    map_title: Annotated[str, Form(max_length=1000)] = "",
    map_severity: Annotated[str, Form(max_length=1000)] = "",
    map_dedup_key: Annotated[str, Form(max_length=1000)] = "",
    map_service: Annotated[str, Form(max_length=1000)] = "",
    map_status: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    mapping = {
        "title": map_title,
        "severity": map_severity,
        "dedup_key": map_dedup_key,
        "service": map_service,
        "status": map_status,
    }
    values: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "service_name": service_name,
        "group_by": group_by,
        "flap_threshold": flap_threshold,
        "flap_window_seconds": flap_window_seconds,
        **{f"map_{k}": v for k, v in mapping.items()},
    }
    fields: dict[str, Any] = {
        "name": name.strip(),
        "kind": kind,
        "service_name": service_name.strip() or None,
        "group_by": [k.strip() for k in group_by.split(",") if k.strip()],
    }
    if flap_threshold.strip():
        fields["flap_threshold"] = flap_threshold.strip()
    if flap_window_seconds.strip():
        fields["flap_window_seconds"] = flap_window_seconds.strip()
    given = {k: v.strip() for k, v in mapping.items() if v.strip()}
    if given:
        fields["mapping"] = given
    try:
        with as_invalid_input():
            data = IntegrationCreate(**fields)
        with _runtime(request).transaction() as session:
            integration, key = signals.create_integration(session, actor, data)
            shown = _shown_key(IntegrationRead.model_validate(integration), key, "created")
    except DomainError as exc:
        return _integrations_page(request, actor, error=exc, values=values)
    return _integrations_page(request, actor, new_key=shown, status_code=201)


@router.post("/integrations/{name}/rotate")
def rotate_integration(request: Request, name: str, actor: Admin) -> Response:
    try:
        with _runtime(request).transaction() as session:
            integration, key = signals.rotate_key(session, actor, name)
            shown = _shown_key(IntegrationRead.model_validate(integration), key, "rotated")
    except DomainError as exc:
        return _integrations_page(request, actor, error=exc)
    return _integrations_page(request, actor, new_key=shown)


@router.post("/integrations/{name}/revoke")
def revoke_integration(request: Request, name: str, actor: Admin) -> Response:
    def change(session: Session) -> str:
        signals.revoke(session, actor, name)
        return f"Integration {name} revoked: its key no longer works."

    return _act(
        request,
        change,
        refused=lambda exc: _integrations_page(request, actor, error=exc),
        to="/integrations",
    )
