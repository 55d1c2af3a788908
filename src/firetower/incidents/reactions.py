"""Incidents' reactions to other domains' events."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower.catalog import service as catalog
from firetower.catalog.events import BlastRadiusInputsChanged
from firetower.db import SETTINGS_INFO
from firetower.incidents import service
from firetower.incidents.lifecycle import ACTIVE
from firetower.incidents.models import Incident
from firetower.runtime import Runtime


def reevaluate_open_incidents(session: Session, event: BlastRadiusInputsChanged) -> None:
    """A catalog change can widen an open incident's blast radius: apply the policy again.

    It runs in the catalog change's own transaction, so a raise lands with its cause.
    """
    settings = session.info[SETTINGS_INFO]
    active = session.scalars(
        select(Incident)
        .where(Incident.status.in_([s.value for s in ACTIVE]), Incident.services.any())
        .order_by(Incident.id)
    )
    for incident in active:
        service.reapply_severity_policy(session, incident, settings.severity_policy)


def register(runtime: Runtime) -> None:
    # It checks every open incident whichever service changed: once for a whole import.
    runtime.bus.react(BlastRadiusInputsChanged, reevaluate_open_incidents, once_per_round=True)
    catalog.refer_to_services("incidents", service.incidents_naming)
