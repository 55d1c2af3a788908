"""The signals domain's jobs: the notification a ``notify`` routing rule asks for.

Delivery (email, chat, webhooks) belongs to the notify domain, which does not exist yet; until
it does, the job records the notification as one structured log line, so that nothing a rule
asked for is lost and each one can be seen.
"""

from __future__ import annotations

from typing import Any

import structlog

from firetower.jobs import JobContext
from firetower.runtime import Runtime
from firetower.signals.models import Alert, Integration
from firetower.signals.service import NOTIFY_KIND

log = structlog.get_logger(__name__)


def notify(context: JobContext, payload: dict[str, Any]) -> None:
    """Log the alert a notify rule matched (a deleted alert is logged as missing)."""
    alert = context.session.get(Alert, payload.get("alert_id"))
    if alert is None:
        log.warning("alert notification: alert not found", **payload)
        return
    integration = context.session.get(Integration, alert.integration_id)
    log.info(
        "alert notification",
        rule=payload.get("rule"),
        alert_id=alert.id,
        fingerprint=alert.fingerprint,
        integration=integration.name if integration is not None else None,
        status=alert.status,
        title=alert.title,
        service=alert.service_name,
        severity=alert.severity,
        delivered=False,
    )


def register(runtime: Runtime) -> None:
    runtime.jobs.handler(NOTIFY_KIND)(notify)
