"""Job handlers and schedules of synthetic probes.

A cron schedule with one-minute resolution cannot run a probe every 10 seconds, so a
dispatcher runs every ``DISPATCH_EVERY_SECONDS`` (a seconds-field cron schedule): it enqueues
one ``probes.run`` job per probe whose slot has come (idempotency key: probe and slot) and
moves the slot on. A run job does the network check in its ``prepare`` step, outside any
transaction, and records the outcome in its handler. Roll-ups and retention run hourly.
"""

from __future__ import annotations

from typing import Any

import structlog

from firetower.errors import NotFound
from firetower.jobs import JobContext
from firetower.monitors import probes
from firetower.monitors.probe_checks import CheckOutcome, run_check
from firetower.runtime import Runtime
from firetower.signals import service as signals

log = structlog.get_logger(__name__)
DISPATCH_EVERY_SECONDS = 5
DISPATCH_CRON = f"* * * * * */{DISPATCH_EVERY_SECONDS}"
MAINTENANCE_CRON = "7 * * * *"


def register(runtime: Runtime) -> None:
    """Wire the probe jobs into the runtime's job registry, and tell the route test how a
    probe's alert gets its severity (here, not at import: every process that assembles a
    runtime gets it, whatever it imported)."""
    signals.own_severity_from(probes.INTEGRATION, probes.signal_severity)
    registry = runtime.jobs

    def prepare_run(payload: dict[str, Any]) -> dict[str, Any] | None:
        with runtime.read() as session:
            try:
                spec = probes.run_spec(session, str(payload["probe"]))
            except NotFound:
                return None
        if spec.probe_id != payload.get("probe_id") or not spec.enabled:
            return None  # deleted (perhaps made again under the name) or paused since
        outcome = run_check(spec.kind, spec.settings, spec.timeout_seconds)
        return {"spec": spec.__dict__, "outcome": outcome.as_payload()}

    @registry.handler(probes.RUN_KIND, prepare=prepare_run)
    def run(context: JobContext, payload: dict[str, Any]) -> None:
        prepared = context.prepared
        if prepared is None:
            log.info("probe run skipped: the probe was deleted or paused", probe=payload["probe"])
            return
        spec = probes.RunSpec(**prepared["spec"])
        recorded = probes.record_result(
            context.session, spec, CheckOutcome.from_payload(prepared["outcome"])
        )
        if recorded is None:
            log.info("probe run discarded: the probe changed meanwhile", probe=spec.name)

    @registry.handler(probes.DISPATCH_KIND)
    def dispatch(context: JobContext, payload: dict[str, Any]) -> None:
        probes.dispatch_due(context.session)

    @registry.handler(probes.MAINTENANCE_KIND)
    def maintenance(context: JobContext, payload: dict[str, Any]) -> None:
        written = probes.roll_up(context.session)
        results, rollups = probes.trim(context.session)
        log.info(
            "probe roll-ups and retention",
            rollups_written=written,
            results_deleted=results,
            rollups_deleted=rollups,
        )

    registry.schedule("probes.dispatch", DISPATCH_CRON, probes.DISPATCH_KIND)
    registry.schedule("probes.maintenance", MAINTENANCE_CRON, probes.MAINTENANCE_KIND)
