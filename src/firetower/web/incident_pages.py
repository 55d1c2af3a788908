"""Incident pages: the list, the declare form, one incident and the actions taken on it.

Actions are plain HTML forms (they work without JavaScript) that HTMX upgrades: on
success the server redirects to the incident page and HTMX swaps its panel in; a refused
action re-renders the page with the reason and the refusal's status, having written nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from firetower.auth import service as auth_service
from firetower.auth.deps import Responder, Viewer
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.errors import DomainError, InvalidInput, NotFound
from firetower.incidents import service as incidents
from firetower.incidents.lifecycle import IncidentRole, Severity, Source, Status
from firetower.incidents.models import Incident
from firetower.incidents.schemas import IncidentCreate, IncidentUpdate, TaskCreate, TaskUpdate
from firetower.runtime import Runtime
from firetower.signals import queries as signal_queries
from firetower.web.forms import as_invalid_input, parse_local_utc
from firetower.web.templating import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
INCIDENT_ALERT_ROWS = 5
"""Alerts the incident page lists (firing first); its link leads to the rest."""
SCOPES = ("active", "ended", "all")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# -- list ------------------------------------------------------------------------------------
@router.get("/")
def incident_list(
    request: Request,
    actor: Viewer,
    status: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006 - FastAPI copies it
    severity: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006
    service: Annotated[str, Query(max_length=100)] = "",
    scope: Annotated[str, Query(max_length=10)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    runtime = _runtime(request)
    error: DomainError | None = None
    statuses = [Status(s) for s in status if s in Status.__members__.values()]
    severities = [Severity(s) for s in severity if s in Severity.__members__.values()]
    unknown = [s for s in status if s not in Status.__members__.values()] + [
        s for s in severity if s not in Severity.__members__.values()
    ]
    if unknown:
        error = InvalidInput(f"unknown filter value {unknown[0]!r}", field="status")
    scope = scope if scope in SCOPES else ("all" if statuses else "active")
    active = {"active": True, "ended": False, "all": None}[scope]
    page = None
    with runtime.read() as session:
        services = [s.name for s in catalog.list_services(session)]
        if error is None:
            try:
                page = incidents.list_incidents(
                    session,
                    statuses=statuses,
                    severities=severities,
                    service=service or None,
                    active=active,
                    text=q or None,
                    cursor=cursor or None,
                    limit=PAGE_SIZE,
                )
            except DomainError as exc:
                error = exc
    filters: dict[str, Any] = {
        "status": [s.value for s in statuses],
        "severity": [s.value for s in severities],
        "service": service,
        "scope": scope,
        "q": q,
    }
    next_url = None
    if page is not None and page.next_cursor:
        next_url = request.url.include_query_params(cursor=page.next_cursor)
    return render(
        request,
        "incidents/list.html",
        {
            "page": page,
            "filters": filters,
            "services": services,
            "statuses": list(Status),
            "severities": list(Severity),
            "scopes": SCOPES,
            "next_url": str(next_url) if next_url else None,
            "error": error,
        },
        actor=actor,
        status_code=error.status_code if error else 200,
    )


# -- declare ---------------------------------------------------------------------------------
def _declare_form(
    request: Request,
    actor: Actor,
    values: dict[str, Any],
    *,
    error: DomainError | None = None,
) -> Response:
    runtime = _runtime(request)
    with runtime.read() as session:
        services = [s.name for s in catalog.list_services(session)]
    return render(
        request,
        "incidents/new.html",
        {
            "values": values,
            "services": services,
            "severities": list(Severity),
            "meanings": runtime.settings.severity_meanings,
            "sources": list(Source),
            "error": error,
        },
        actor=actor,
        status_code=error.status_code if error else 200,
    )


@router.get("/incidents/new")
def declare_form(request: Request, actor: Responder) -> Response:
    defaults = {"severity": Severity.SEV3.value, "source": Source.manual.value, "services": []}
    return _declare_form(request, actor, defaults)


@router.post("/incidents/new")
def declare(
    request: Request,
    actor: Responder,
    title: Annotated[str, Form(max_length=1000)] = "",
    severity: Annotated[str, Form(max_length=20)] = "",
    services: Annotated[list[str], Form(max_length=200)] = [],  # noqa: B006
    summary: Annotated[str, Form(max_length=40_000)] = "",
    source: Annotated[str, Form(max_length=40)] = "manual",
    impact_started_at: Annotated[str, Form(max_length=40)] = "",
    data_at_risk: Annotated[bool, Form()] = False,
    security_at_risk: Annotated[bool, Form()] = False,
    revenue_at_risk: Annotated[bool, Form()] = False,
) -> Response:
    values: dict[str, Any] = {
        "title": title,
        "severity": severity,
        "services": services,
        "summary": summary,
        "source": source,
        "impact_started_at": impact_started_at,
        "data_at_risk": data_at_risk,
        "security_at_risk": security_at_risk,
        "revenue_at_risk": revenue_at_risk,
    }
    runtime = _runtime(request)
    try:
        with as_invalid_input():
            data = IncidentCreate(
                **{
                    **values,
                    "impact_started_at": parse_local_utc(impact_started_at, "impact_started_at"),
                }
            )
        ref = runtime.write(  # it locks services: see ``runtime.write``
            lambda session: (
                incidents.declare(session, actor, data, runtime.settings.severity_policy).ref
            )
        )
    except DomainError as exc:
        return _declare_form(request, actor, values, error=exc)
    return RedirectResponse(f"/incidents/{ref}", status_code=303)


# -- one incident ----------------------------------------------------------------------------
def _incident_page(
    request: Request,
    actor: Actor,
    ref: str,
    *,
    error: DomainError | None = None,
) -> Response:
    with _runtime(request).read() as session:
        incident = incidents.get_incident(session, ref)
        data = incidents.read(session, incident)
        timeline = incidents.timeline(session, incident)
        users = [u.email for u in auth_service.list_users(session) if u.active]
        merged = data.status == Status.merged
        survivor = (
            incidents.get_incident(session, data.merged_into)
            if merged and data.merged_into
            else None
        )
        survivor_title = survivor.title if survivor else None
        alert_counts = signal_queries.alert_counts(session, incident=data.ref)
        alerts = (
            signal_queries.alert_rows(session, incident=data.ref, limit=INCIDENT_ALERT_ROWS)
            if alert_counts.total
            else []
        )
    holders = {r.role: r for r in data.roles}
    return render(
        request,
        "incidents/show.html",
        {
            "incident": data,
            "timeline": timeline,
            "last_entry_id": timeline[-1].id if timeline else 0,
            "users": users,
            "roles": [(role, holders.get(role)) for role in IncidentRole],
            "error": error,
            # A merged incident refuses every change from people (they work on the survivor),
            # so its page offers no form that could only answer with a 409.
            "can_act": actor.role.allows(Role.responder) and not merged,
            "merged": merged,
            "survivor_title": survivor_title,
            "alert_counts": alert_counts,
            "alerts": alerts,
        },
        actor=actor,
        status_code=error.status_code if error else 200,
    )


@router.get("/incidents/{ref}")
def incident_page(request: Request, ref: str, actor: Viewer) -> Response:
    return _incident_page(request, actor, ref)


def _act(
    request: Request,
    actor: Actor,
    ref: str,
    change: Callable[[Session, Incident], object],
) -> Response:
    """Run one change in one transaction (run once more if PostgreSQL ended it as a
    deadlock: ``runtime.write``); a refusal shows on the page, nothing written."""
    runtime = _runtime(request)
    try:
        runtime.write(lambda session: change(session, incidents.get_incident(session, ref)))
    except NotFound as exc:
        if exc.field == "ref":
            raise  # the incident itself is missing: the 404 page
        return _incident_page(request, actor, ref, error=exc)
    except DomainError as exc:
        return _incident_page(request, actor, ref, error=exc)
    return RedirectResponse(f"/incidents/{ref}", status_code=303)


@router.post("/incidents/{ref}/transition")
def transition(
    request: Request,
    ref: str,
    actor: Responder,
    to: Annotated[str, Form(max_length=20)] = "",
    merged_into: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        if to not in Status.__members__.values():
            raise InvalidInput(f"status: unknown status {to!r}", field="status")
        target = merged_into.strip().upper() or None
        incidents.transition(session, actor, incident, Status(to), merged_into=target)

    return _act(request, actor, ref, change)


@router.post("/incidents/{ref}/severity")
def set_severity(
    request: Request,
    ref: str,
    actor: Responder,
    severity: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        if severity not in Severity.__members__:
            raise InvalidInput(f"severity: unknown severity {severity!r}", field="severity")
        policy = _runtime(request).settings.severity_policy
        incidents.update(
            session, actor, incident, IncidentUpdate(severity=Severity(severity)), policy
        )

    return _act(request, actor, ref, change)


@router.post("/incidents/{ref}/acknowledge")
def acknowledge(request: Request, ref: str, actor: Responder) -> Response:
    return _act(
        request,
        actor,
        ref,
        lambda session, incident: incidents.acknowledge(session, actor, incident),
    )


@router.post("/incidents/{ref}/roles")
def assign_role(
    request: Request,
    ref: str,
    actor: Responder,
    role: Annotated[str, Form(max_length=40)] = "",
    user: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        if role not in IncidentRole.__members__.values():
            raise InvalidInput(f"role: unknown role {role!r}", field="role")
        if not user.strip():
            raise InvalidInput("user: choose who takes the role", field="user")
        incidents.assign_role(session, actor, incident, IncidentRole(role), user.strip())

    return _act(request, actor, ref, change)


@router.post("/incidents/{ref}/notes")
def add_note(
    request: Request,
    ref: str,
    actor: Responder,
    text: Annotated[str, Form(max_length=40_000)] = "",
    pinned: Annotated[bool, Form()] = False,
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        if len(text) > 20_000:
            raise InvalidInput("text: a note holds at most 20000 characters", field="text")
        incidents.add_note(session, actor, incident, text, pinned=pinned)

    return _act(request, actor, ref, change)


@router.post("/incidents/{ref}/tasks")
def add_task(
    request: Request,
    ref: str,
    actor: Responder,
    title: Annotated[str, Form(max_length=1000)] = "",
    assignee: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        if not title.strip():  # the service would store a blank title: refuse it here
            raise InvalidInput("title: a task needs a title", field="title")
        with as_invalid_input():
            data = TaskCreate(title=title, assignee=assignee.strip() or None)
        incidents.add_task(session, actor, incident, data)

    return _act(request, actor, ref, change)


@router.post("/incidents/{ref}/tasks/{task_id}")
def update_task(
    request: Request,
    ref: str,
    task_id: int,
    actor: Responder,
    status: Annotated[str | None, Form(max_length=20)] = None,
    assignee: Annotated[str | None, Form(max_length=320)] = None,
) -> Response:
    def change(session: Session, incident: Incident) -> None:
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if assignee is not None:
            fields["assignee"] = assignee.strip() or None
        with as_invalid_input():
            data = TaskUpdate(**fields)
        incidents.update_task(session, actor, incident, task_id, data)

    return _act(request, actor, ref, change)
