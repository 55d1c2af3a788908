"""The signals domain's jobs: the notification a ``notify`` routing rule asks for, the note
that sums up the alerts that joined an incident in a minute of a storm, the minutely settling
of alerts that flapping or a mute held once it is over, the retention of resolved alerts;
and, when an incident ends, the resolving of its user reports, or the moving of its
alerts to the incident it was merged into.

Delivery (email, chat, webhooks) belongs to the notify domain, which does not exist yet; until
it does, the job records the notification as one structured log line, so that nothing a rule
asked for is lost and each one can be seen.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.service import Actor
from firetower.catalog import service as catalog
from firetower.incidents import service as incidents
from firetower.incidents.events import IncidentStatusChanged
from firetower.incidents.lifecycle import ACTIVE, Status
from firetower.incidents.models import Incident
from firetower.jobs import Job, JobContext, enqueue
from firetower.runtime import Runtime
from firetower.signals.models import Alert, AttachTally, Integration
from firetower.signals.service import (
    ATTACHED_KIND,
    NOTIFY_KIND,
    RETENTION_CHUNK_ALERTS,
    RETENTION_KIND,
    SETTLE_HELD_KIND,
    HeldAlerts,
    MuteWatch,
    delete_expired_alerts,
    find_held,
    lock_alerts_of,
    move_alerts_to_survivor,
    resolve_reports_of,
    service_references,
    settle_held,
)

log = structlog.get_logger(__name__)
RETENTION_CRON = "23 * * * *"
SETTLE_HELD_CRON = "* * * * *"


def notify(context: JobContext, payload: dict[str, Any]) -> None:
    """Log the alert a notify rule matched (a deleted alert is logged as missing).

    ``status`` and ``fired_at`` are the alert's when the rule fired on it, from the payload:
    the alert may have resolved since. A job queued by an older version lacks them; it logs
    the alert's current status and the time the job was queued (in the same transaction).
    """
    alert = context.session.get(Alert, payload.get("alert_id"))
    if alert is None:
        log.warning("alert notification: alert not found", **payload)
        return
    integration = context.session.get(Integration, alert.integration_id)
    fired_at = payload.get("fired_at")
    if fired_at is None:
        job = context.session.get(Job, context.job_id)
        fired_at = job.created_at.isoformat() if job is not None else None
    log.info(
        "alert notification",
        rule=payload.get("rule"),
        alert_id=alert.id,
        fingerprint=alert.fingerprint,
        integration=integration.name if integration is not None else None,
        status=payload.get("status", alert.status),
        fired_at=fired_at,
        title=alert.title,
        service=alert.service_name,
        severity=alert.severity,
        delivered=False,
    )


def attached_note(context: JobContext, payload: dict[str, Any]) -> None:
    """At a minute's end: note the alerts that joined the incident after its first note.

    Intake tallied them (``AttachTally``), the latest request's titles with the count; a
    tally of an earlier minute is summed up too (a request of that minute that committed
    after its job ran), and the note's span starts at it. Tallies noted are deleted, so a
    job run again notes nothing twice.
    """
    session = context.session
    incident = session.get(Incident, payload["incident_id"])
    if incident is None:
        return
    # The incident before its tallies, as intake takes them (an alert joining the incident
    # share-locks it, then the request adds to the tally): the other way round, a request
    # of the minute committing late and this job would wait for each other.
    incidents.lock(session, incident)
    since = datetime.fromisoformat(payload["since"])
    until = datetime.fromisoformat(payload["until"])
    tallies = session.scalars(
        select(AttachTally)
        .where(AttachTally.incident_id == incident.id, AttachTally.minute <= since)
        .order_by(AttachTally.minute)
    ).all()
    if not tallies:
        return
    more = sum(tally.alerts for tally in tallies)
    latest = tallies[-1].latest
    for tally in tallies:
        session.delete(tally)
    shown = "; ".join(latest) + ("; …" if more > len(latest) else "")
    noun = "alert" if more == 1 else "alerts"
    incidents.add_note(
        session,
        Actor.system("signals"),
        incident,
        f"{more} more {noun} attached between {tallies[0].minute:%H:%M} and {until:%H:%M} UTC "
        f"(latest: {shown})",
    )


def retention(context: JobContext, payload: dict[str, Any]) -> None:
    """Delete one chunk of resolved alerts past ``keep_days``; a full chunk queues the next
    run at once, in the same transaction, so a backlog (the first run after a storm)
    drains in short transactions instead of one long write."""
    cutoff = clock.now() - timedelta(days=float(payload["keep_days"]))
    limit = RETENTION_CHUNK_ALERTS
    deleted = delete_expired_alerts(context.session, last_seen_before=cutoff, limit=limit)
    if deleted == limit:
        enqueue(context.session, RETENTION_KIND, payload)
    log.info("resolved alerts deleted", count=deleted, last_seen_before=cutoff.isoformat())


def follow_incident_end(session: Session, event: IncidentStatusChanged) -> None:
    """A merged incident hands its alerts to the survivor (``move_alerts_to_survivor``);
    any other ending takes its user reports with it (``resolve_reports_of``)."""
    if event.after == Status.merged:
        merged = session.get(Incident, event.incident_id)
        if merged is None or merged.merged_into is None:
            return
        survivor = merged.merged_into
        moved = move_alerts_to_survivor(session, merged.id, survivor.id)
        if moved:
            noun = "alert" if moved == 1 else "alerts"
            incidents.add_note(
                session,
                Actor.system("signals"),
                survivor,
                f"{moved} {noun} moved from {merged.ref}",
            )
    elif event.before in ACTIVE and event.after not in ACTIVE:  # Status is a StrEnum
        resolve_reports_of(session, event.incident_id)


def register(runtime: Runtime) -> None:
    runtime.bus.react(IncidentStatusChanged, follow_incident_end)
    incidents.lock_first_on_merge("signals", lock_alerts_of)
    catalog.refer_to_services("signals", service_references)
    runtime.jobs.handler(NOTIFY_KIND)(notify)
    runtime.jobs.handler(ATTACHED_KIND)(attached_note)
    runtime.jobs.handler(RETENTION_KIND)(retention)
    policy = runtime.settings.severity_policy

    watch = MuteWatch()

    def find(payload: dict[str, Any]) -> HeldAlerts:
        with runtime.read() as session:
            return find_held(session, watch)

    @runtime.jobs.handler(SETTLE_HELD_KIND, prepare=find)
    def settle(context: JobContext, payload: dict[str, Any]) -> None:
        """Settle the alerts that flapping or a mute held, once it is over, with no signal."""
        if not context.prepared:
            return
        lifted, freed = settle_held(context.session, policy, context.prepared)
        if lifted or freed:
            log.info("held alerts settled", flapping_lifted=lifted, unmuted=freed)

    runtime.jobs.schedule("signals.settle_held", SETTLE_HELD_CRON, SETTLE_HELD_KIND)
    keep_days = runtime.settings.alert_retention_days
    runtime.jobs.schedule(
        "signals.retention", RETENTION_CRON, RETENTION_KIND, {"keep_days": keep_days}
    )
