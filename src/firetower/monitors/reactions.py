"""The monitors domain's jobs and reactions."""

from __future__ import annotations

from sqlalchemy.orm import Session

from firetower.catalog import service as catalog
from firetower.catalog.models import Service
from firetower.monitors import probe_reactions, probes, sla, slo_reactions, slos
from firetower.runtime import Runtime


def service_references(session: Session, service: Service) -> list[str]:
    """What of monitors still names ``service``, so the catalog refuses to delete it."""
    return [
        *probes.probes_naming(session, service),
        *slos.slos_naming(session, service),
        *sla.targets_naming(session, service),
    ]


def register(runtime: Runtime) -> None:
    probe_reactions.register(runtime)
    slo_reactions.register(runtime)
    catalog.refer_to_services("monitors", service_references)
