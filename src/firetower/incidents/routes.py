"""REST API for incidents under /api/v1/incidents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlalchemy.orm import Session

from firetower.auth.deps import ReadSession, Responder, RuntimeDep, Viewer
from firetower.incidents import service
from firetower.incidents.lifecycle import IncidentRole, Severity, Status
from firetower.incidents.schemas import (
    NO_NUL,
    IncidentCreate,
    IncidentPage,
    IncidentRead,
    IncidentUpdate,
    NoteCreate,
    RoleAssign,
    RoleRead,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    TimelineEventRead,
    TimelinePage,
    TransitionRequest,
)

router = APIRouter(prefix="/incidents", tags=["incidents"])
Ref = Annotated[str, Path(max_length=40, description="An incident reference like INC-42.")]
MAX_ID = service.MAX_ID
EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IncidentRead)
def declare_incident(data: IncidentCreate, runtime: RuntimeDep, actor: Responder) -> IncidentRead:
    def declare(session: Session) -> str:  # it locks services: see ``runtime.write``
        return service.declare(session, actor, data, runtime.settings.severity_policy).ref

    ref = runtime.write(declare)
    with runtime.read() as session:
        return service.read(session, service.get_incident(session, ref))


@router.get("", response_model=IncidentPage)
def list_incidents(
    session: ReadSession,
    actor: Viewer,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    service_name: Annotated[
        str | None, Query(alias="service", max_length=100, pattern=NO_NUL)
    ] = None,
    active: bool | None = None,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IncidentPage:
    return service.list_incidents(
        session,
        statuses=status_ or (),
        severities=severity or (),
        service=service_name,
        active=active,
        text=q,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{ref}", response_model=IncidentRead)
def show_incident(ref: Ref, session: ReadSession, actor: Viewer) -> IncidentRead:
    return service.read(session, service.get_incident(session, ref))


def _then_read(runtime: RuntimeDep, ref: str) -> IncidentRead:
    with runtime.read() as session:
        return service.read(session, service.get_incident(session, ref))


@router.patch("/{ref}", response_model=IncidentRead)
def update_incident(
    ref: Ref, data: IncidentUpdate, runtime: RuntimeDep, actor: Responder
) -> IncidentRead:
    def change(session: Session) -> None:  # a status change may merge: see ``runtime.write``
        incident = service.get_incident(session, ref)
        service.update(session, actor, incident, data, runtime.settings.severity_policy)

    runtime.write(change)
    return _then_read(runtime, ref)


@router.post("/{ref}/transitions", response_model=IncidentRead)
def transition_incident(
    ref: Ref, data: TransitionRequest, runtime: RuntimeDep, actor: Responder
) -> IncidentRead:
    def change(session: Session) -> None:  # a merge may be ended once: see ``runtime.write``
        incident = service.get_incident(session, ref)
        service.transition(
            session, actor, incident, data.to, merged_into=data.merged_into, note=data.note
        )

    runtime.write(change)
    return _then_read(runtime, ref)


@router.post("/{ref}/acknowledge", response_model=IncidentRead)
def acknowledge_incident(ref: Ref, runtime: RuntimeDep, actor: Responder) -> IncidentRead:
    with runtime.transaction() as session:
        service.acknowledge(session, actor, service.get_incident(session, ref))
    return _then_read(runtime, ref)


@router.post("/{ref}/join", response_model=IncidentRead)
def join_incident(ref: Ref, runtime: RuntimeDep, actor: Responder) -> IncidentRead:
    with runtime.transaction() as session:
        service.join(session, actor, service.get_incident(session, ref))
    return _then_read(runtime, ref)


@router.put("/{ref}/roles/{role}", response_model=RoleRead)
def assign_role(
    ref: Ref, role: IncidentRole, data: RoleAssign, runtime: RuntimeDep, actor: Responder
) -> RoleRead:
    with runtime.transaction() as session:
        assignment = service.assign_role(
            session, actor, service.get_incident(session, ref), role, data.user
        )
        return service.role_read(assignment)


@router.post("/{ref}/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskRead)
def add_task(ref: Ref, data: TaskCreate, runtime: RuntimeDep, actor: Responder) -> TaskRead:
    with runtime.transaction() as session:
        task = service.add_task(session, actor, service.get_incident(session, ref), data)
        return service.task_read(task)


@router.patch("/{ref}/tasks/{task_id}", response_model=TaskRead)
def update_task(
    ref: Ref, task_id: TaskId, data: TaskUpdate, runtime: RuntimeDep, actor: Responder
) -> TaskRead:
    with runtime.transaction() as session:
        task = service.update_task(
            session, actor, service.get_incident(session, ref), task_id, data
        )
        return service.task_read(task)


@router.post("/{ref}/notes", status_code=status.HTTP_201_CREATED, response_model=TimelineEventRead)
def add_note(
    ref: Ref, data: NoteCreate, runtime: RuntimeDep, actor: Responder
) -> TimelineEventRead:
    with runtime.transaction() as session:
        incident = service.get_incident(session, ref)
        event = service.add_note(session, actor, incident, data.text, pinned=data.pinned)
        event_id = event.id
    with runtime.read() as session:
        incident = service.get_incident(session, ref)
        return service.timeline(session, incident, after_id=event_id - 1)[0]


@router.get("/{ref}/timeline", response_model=TimelinePage)
def get_timeline(
    ref: Ref,
    session: ReadSession,
    actor: Viewer,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    pinned: bool = False,
) -> TimelinePage:
    incident = service.get_incident(session, ref)
    return TimelinePage(
        items=service.timeline(session, incident, after_id=after_id, pinned_only=pinned)
    )


@router.put("/{ref}/timeline/{event_id}/pin", response_model=TimelineEventRead)
def pin_event(
    ref: Ref, event_id: EventId, runtime: RuntimeDep, actor: Responder
) -> TimelineEventRead:
    return _set_pin(ref, event_id, runtime, actor, pinned=True)


@router.delete("/{ref}/timeline/{event_id}/pin", response_model=TimelineEventRead)
def unpin_event(
    ref: Ref, event_id: EventId, runtime: RuntimeDep, actor: Responder
) -> TimelineEventRead:
    return _set_pin(ref, event_id, runtime, actor, pinned=False)


def _set_pin(
    ref: str, event_id: EventId, runtime: RuntimeDep, actor: Responder, *, pinned: bool
) -> TimelineEventRead:
    with runtime.transaction() as session:
        service.set_pinned(session, actor, service.get_incident(session, ref), event_id, pinned)
    with runtime.read() as session:
        incident = service.get_incident(session, ref)
        return service.timeline(session, incident, after_id=event_id - 1)[0]
