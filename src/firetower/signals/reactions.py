"""The signals domain's jobs: the notification a ``notify`` routing rule asks for, and the
note that sums up the alerts that joined an incident in a minute of a storm.

Delivery (email, chat, webhooks) belongs to the notify domain, which does not exist yet; until
it does, the job records the notification as one structured log line, so that nothing a rule
asked for is lost and each one can be seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select

from firetower.auth.service import Actor
from firetower.incidents import service as incidents
from firetower.incidents.models import Incident
from firetower.jobs import Job, JobContext
from firetower.runtime import Runtime
from firetower.signals.models import Alert, Integration
from firetower.signals.service import ATTACHED_KIND, NOTIFY_KIND, joined_in_window

log = structlog.get_logger(__name__)


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


SHOWN_TITLES = 10


def attached_note(context: JobContext, payload: dict[str, Any]) -> None:
    """At a minute's end: note the alerts that joined the incident after its first note.

    ``noted_at`` is the time of the request that wrote the first note, its alerts'
    ``attached_at``: only alerts that joined later are counted (not those, nor the alert
    that opened the incident), and the latest of them named. A job queued by an older
    version carries ``noted`` instead, a count to subtract.
    """
    session = context.session
    incident = session.get(Incident, payload["incident_id"])
    if incident is None:
        return
    since = datetime.fromisoformat(payload["since"])
    until = datetime.fromisoformat(payload["until"])
    in_window = joined_in_window(incident.id, since, until)
    if "noted_at" in payload:
        in_window &= Alert.attached_at > datetime.fromisoformat(payload["noted_at"])
    joined = session.scalar(select(func.count()).select_from(Alert).where(in_window)) or 0
    more = joined - int(payload.get("noted", 0))
    if more <= 0:
        return
    titles = session.scalars(
        select(Alert.title)
        .where(in_window)
        .order_by(Alert.attached_at.desc(), Alert.id.desc())
        .limit(min(more, SHOWN_TITLES))
    ).all()
    shown = "; ".join(titles) + ("; …" if more > len(titles) else "")
    noun = "alert" if more == 1 else "alerts"
    incidents.add_note(
        session,
        Actor.system("signals"),
        incident,
        f"{more} more {noun} attached between {since:%H:%M} and {until:%H:%M} UTC "
        f"(latest: {shown})",
    )


def register(runtime: Runtime) -> None:
    runtime.jobs.handler(NOTIFY_KIND)(notify)
    runtime.jobs.handler(ATTACHED_KIND)(attached_note)
