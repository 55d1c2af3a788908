"""Read-side helpers shared by the signals tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from firetower.incidents.models import Incident
from firetower.runtime import Runtime
from firetower.signals.models import Alert
from tests.factories import Factory


def alert_by_fingerprint(runtime: Runtime, fingerprint: str) -> Alert:
    with runtime.read() as session:
        alert = session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))
        assert alert is not None, f"no alert with fingerprint {fingerprint!r}"
        return alert


def incident_count(runtime: Runtime) -> int:
    with runtime.read() as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)


def send_batch(factory: Factory, key: str, *alerts: dict[str, Any]) -> Any:
    """POST one Alertmanager batch (its status is the first alert's); its answer."""
    body = {"version": "4", "status": alerts[0]["status"], "alerts": list(alerts)}
    answer = factory.client.post(f"/ingest/alertmanager/{key}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def matcher(label: str, op: str, value: str) -> dict[str, str]:
    return {"label": label, "op": op, "value": value}
