"""The catalog page: every service with its owners, and the dependency graph as SVG."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from firetower.auth.deps import Viewer
from firetower.catalog import service as catalog
from firetower.incidents import service as incidents
from firetower.runtime import Runtime
from firetower.web.graph import GraphNode, layout
from firetower.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/catalog")
def catalog_page(request: Request, actor: Viewer) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.read() as session:
        services = [catalog.read_service(session, s) for s in catalog.list_services(session)]
        dependencies = catalog.list_dependencies(session)
        active = incidents.list_incidents(session, active=True, limit=200)
    in_trouble = {name for item in active.items for name in item.services}
    graph = layout(
        [GraphNode(s.name, s.tier, s.team, s.name in in_trouble) for s in services],
        [(d.service, d.depends_on) for d in dependencies],
    )
    return render(
        request,
        "catalog.html",
        {"services": services, "graph": graph, "in_trouble": in_trouble},
        actor=actor,
    )
