"""API of synthetic probes: definitions (admins), runs on request (responders), results (viewers).

A run on request does its network check in the request's worker thread with no transaction
open, then stores the result like a scheduled run (it counts toward the thresholds).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from firetower.auth.deps import Admin, ReadSession, Responder, RuntimeDep, Viewer
from firetower.auth.schemas import Role
from firetower.clock import UtcDatetime
from firetower.monitors import probes
from firetower.monitors.probe_schemas import (
    NAME,
    ProbeCreate,
    ProbePatch,
    ProbeRead,
    ProbeResultRead,
    ProbeRollupRead,
    ProbeRunRead,
)

router = APIRouter(tags=["probes"])
ProbeName = Annotated[str, Path(pattern=NAME, max_length=100)]


@router.post("/probes", status_code=status.HTTP_201_CREATED, response_model=ProbeRead)
def create_probe(data: ProbeCreate, runtime: RuntimeDep, actor: Admin) -> ProbeRead:
    with runtime.transaction() as session:
        return probes.read_probe(probes.create_probe(session, actor, data))


@router.get("/probes", response_model=list[ProbeRead])
def list_probes(session: ReadSession, actor: Viewer) -> list[ProbeRead]:
    reveal = actor.role.allows(Role.admin)
    return [probes.read_probe(p, reveal_headers=reveal) for p in probes.list_probes(session)]


@router.get("/probes/{name}", response_model=ProbeRead)
def get_probe(name: ProbeName, session: ReadSession, actor: Viewer) -> ProbeRead:
    return probes.read_probe(
        probes.get_probe(session, name), reveal_headers=actor.role.allows(Role.admin)
    )


@router.put("/probes/{name}", response_model=ProbeRead)
def replace_probe(
    name: ProbeName, data: ProbeCreate, runtime: RuntimeDep, actor: Admin
) -> ProbeRead:
    with runtime.transaction() as session:
        return probes.read_probe(probes.replace_probe(session, actor, name, data))


@router.patch("/probes/{name}", response_model=ProbeRead)
def patch_probe(name: ProbeName, data: ProbePatch, runtime: RuntimeDep, actor: Admin) -> ProbeRead:
    with runtime.transaction() as session:
        return probes.read_probe(probes.set_enabled(session, actor, name, data.enabled))


@router.delete("/probes/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_probe(name: ProbeName, runtime: RuntimeDep, actor: Admin) -> Response:
    with runtime.transaction() as session:
        probes.delete_probe(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/probes/{name}/run", response_model=ProbeRunRead)
def run_probe(name: ProbeName, runtime: RuntimeDep, actor: Responder) -> ProbeRunRead:
    """Run the probe now and answer with what it saw; the run is stored and counted."""
    return probes.run_now(runtime, name)


Since = Annotated[UtcDatetime | None, Query(description="Aware ISO 8601 time.")]


@router.get("/probes/{name}/results", response_model=list[ProbeResultRead])
def list_results(
    name: ProbeName,
    session: ReadSession,
    actor: Viewer,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[ProbeResultRead]:
    """Raw results (kept 7 days) from ``since``, oldest first; without it, the latest ones."""
    probe = probes.get_probe(session, name)
    found = probes.list_results(session, probe, since=since, limit=limit)
    return [ProbeResultRead.model_validate(r) for r in found]


@router.get("/probes/{name}/rollups", response_model=list[ProbeRollupRead])
def list_rollups(
    name: ProbeName, session: ReadSession, actor: Viewer, since: Since = None
) -> list[ProbeRollupRead]:
    """Hourly roll-ups (kept 90 days) from the hour of ``since``, oldest first."""
    probe = probes.get_probe(session, name)
    return [
        ProbeRollupRead.model_validate(r) for r in probes.list_rollups(session, probe, since=since)
    ]
