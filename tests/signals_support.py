"""Read-side helpers shared by the signals tests."""

from __future__ import annotations

from sqlalchemy import func, select

from firetower.incidents.models import Incident
from firetower.runtime import Runtime
from firetower.signals.models import Alert


def alert_by_fingerprint(runtime: Runtime, fingerprint: str) -> Alert:
    with runtime.read() as session:
        alert = session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))
        assert alert is not None, f"no alert with fingerprint {fingerprint!r}"
        return alert


def incident_count(runtime: Runtime) -> int:
    with runtime.read() as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)
