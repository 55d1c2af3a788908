"""API of SLOs and SLA reports (mounted under /api/v1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from firetower.auth.deps import ReadSession, Responder, RuntimeDep, Viewer
from firetower.db import MAX_ID
from firetower.monitors import sla, slo_import, slos
from firetower.monitors.slo_schemas import (
    ApplySummary,
    EvaluationRead,
    SlaReport,
    SlaTargetCreate,
    SlaTargetRead,
    SLOCreate,
    SLOEvents,
    SLOEventsAccepted,
    SLOImport,
    SLORead,
)

router = APIRouter(tags=["slos"])
SloName = Annotated[str, Path(max_length=100)]


@router.get("/slos", response_model=list[SLORead])
def list_slos(session: ReadSession, actor: Viewer) -> list[SLORead]:
    """Every SLO with its budget, burn rates and alert level at the last evaluation."""
    return [slos.read_slo(session, s) for s in slos.list_slos(session)]


@router.post("/slos", status_code=status.HTTP_201_CREATED, response_model=SLORead)
def create_slo(data: SLOCreate, runtime: RuntimeDep, actor: Responder) -> SLORead:
    with runtime.transaction() as session:
        return slos.read_slo(session, slos.create_slo(session, actor, data))


@router.post("/slos/import", response_model=ApplySummary)
def import_slos(data: SLOImport, runtime: RuntimeDep, actor: Responder) -> ApplySummary:
    """Create or update SLOs from a Sloth ``prometheus/v1`` or OpenSLO v1 file (auto-detected)."""
    with runtime.transaction() as session:
        return slo_import.import_slos(
            session, actor, data.content, data.format, data.prometheus_url
        )


@router.get("/slos/{name}", response_model=SLORead)
def show_slo(name: SloName, session: ReadSession, actor: Viewer) -> SLORead:
    return slos.read_slo(session, slos.get_slo(session, name))


@router.put("/slos/{name}", response_model=SLORead)
def put_slo(
    name: SloName, data: SLOCreate, runtime: RuntimeDep, actor: Responder, response: Response
) -> SLORead:
    """Create or replace the SLO; its events and history stay."""
    with runtime.transaction() as session:
        slo, created = slos.replace_slo(session, actor, name, data)
        if created:
            response.status_code = status.HTTP_201_CREATED
        return slos.read_slo(session, slo)


@router.delete("/slos/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_slo(name: SloName, runtime: RuntimeDep, actor: Responder) -> Response:
    with runtime.transaction() as session:
        slos.delete_slo(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/slos/{name}/events", status_code=status.HTTP_202_ACCEPTED, response_model=SLOEventsAccepted
)
def push_events(
    name: SloName, data: SLOEvents, runtime: RuntimeDep, actor: Responder
) -> SLOEventsAccepted:
    """Add good and bad event counts to an events SLO (summed per minute)."""
    with runtime.transaction() as session:
        bucket = slos.record_events(session, actor, name, data)
        return SLOEventsAccepted(
            slo=name, bucket_start=bucket.bucket_start, good=bucket.good, bad=bucket.bad
        )


@router.get("/slos/{name}/evaluations", response_model=list[EvaluationRead])
def list_evaluations(
    name: SloName,
    session: ReadSession,
    actor: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EvaluationRead]:
    """The latest evaluations, newest first."""
    slo = slos.get_slo(session, name)
    return slos.read_evaluations(slos.evaluations(session, slo, limit=limit))


# -- SLA ---------------------------------------------------------------------------------------
@router.get("/sla/targets", response_model=list[SlaTargetRead])
def list_sla_targets(session: ReadSession, actor: Viewer) -> list[SlaTargetRead]:
    return [sla.read_target(t) for t in sla.list_targets(session)]


@router.put("/sla/targets", response_model=SlaTargetRead)
def put_sla_target(data: SlaTargetCreate, runtime: RuntimeDep, actor: Responder) -> SlaTargetRead:
    """Set a service's uptime or latency target (one of each kind per service)."""
    with runtime.transaction() as session:
        return sla.read_target(sla.put_target(session, actor, data))


@router.delete("/sla/targets/{target_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_sla_target(
    target_id: Annotated[int, Path(ge=1, le=MAX_ID)], runtime: RuntimeDep, actor: Responder
) -> Response:
    with runtime.transaction() as session:
        sla.delete_target(session, actor, target_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sla/report", response_model=SlaReport)
def sla_report(
    session: ReadSession,
    actor: Viewer,
    month: Annotated[str, Query(max_length=7, description="The month, like 2026-11 (UTC).")],
) -> SlaReport:
    """Per service and target: achieved, breached or not, downtime allowed and used."""
    return sla.report(session, month)
