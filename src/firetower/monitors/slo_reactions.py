"""Job handlers and schedules of SLO evaluation.

Every minute ``slo.evaluate_all`` enqueues one ``slo.evaluate`` job per SLO, so one SLO
whose Prometheus is slow or broken never holds up the others. A Prometheus SLI is queried
in the job's ``prepare`` step, outside any transaction; the handler then evaluates and
records in the job's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from firetower import clock
from firetower.jobs import JobContext
from firetower.monitors import slos
from firetower.monitors.slo_models import Slo
from firetower.runtime import Runtime
from firetower.signals import service as signals

EVALUATE_ALL = "slo.evaluate_all"
EVALUATE = "slo.evaluate"
SCHEDULE = "slo.evaluate"
EVERY_MINUTE = "* * * * *"


def register(runtime: Runtime) -> None:
    """Wire the SLO jobs into the runtime's job registry, and tell the route test how an
    SLO's alert gets its severity (here, not at import: see ``probe_reactions.register``)."""
    signals.own_severity_from(slos.INTEGRATION, slos.signal_severity)
    registry = runtime.jobs

    @registry.handler(EVALUATE_ALL)
    def evaluate_all(context: JobContext, payload: dict[str, Any]) -> None:
        tick = str(payload.get("scheduled_for") or clock.now().isoformat())
        slos.enqueue_evaluations(context.session, EVALUATE, tick)

    def fetch(payload: dict[str, Any]) -> dict[str, Any] | None:
        with runtime.read() as session:
            plan = slos.prometheus_plan(session, str(payload.get("slo", "")))
        return slos.fetch_prometheus(plan, clock.now()) if plan is not None else None

    @registry.handler(EVALUATE, prepare=fetch)
    def evaluate(context: JobContext, payload: dict[str, Any]) -> None:
        slo = context.session.scalar(select(Slo).where(Slo.name == payload.get("slo")))
        if slo is None:
            return  # deleted since the tick
        slos.evaluate(
            context.session,
            slo,
            fetched=context.prepared,
            policy=runtime.settings.severity_policy,
        )

    registry.schedule(SCHEDULE, EVERY_MINUTE, EVALUATE_ALL)
