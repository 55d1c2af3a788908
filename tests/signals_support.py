"""Read-side helpers shared by the signals tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event, func, select

from firetower import clock
from firetower.incidents.models import Incident, TimelineEvent
from firetower.jobs import Worker, enqueue
from firetower.runtime import Runtime
from firetower.signals.intake_rows import AlertRow
from firetower.signals.models import Alert, Integration
from firetower.signals.service import SETTLE_HELD_KIND
from tests.factories import Factory


def alert_by_fingerprint(runtime: Runtime, fingerprint: str) -> Alert:
    with runtime.read() as session:
        alert = session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))
        assert alert is not None, f"no alert with fingerprint {fingerprint!r}"
        return alert


def incident_count(runtime: Runtime) -> int:
    with runtime.read() as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)


def status_changes_and_notes(runtime: Runtime, incident_id: int) -> list[TimelineEvent]:
    """An incident's status changes and notes, oldest first: what clearing alerts write."""
    with runtime.read() as session:
        return list(
            session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id)
                .where(TimelineEvent.kind.in_(["status_changed", "note"]))
                .order_by(TimelineEvent.id)
            )
        )


def send_batch(factory: Factory, key: str, *alerts: dict[str, Any]) -> Any:
    """POST one Alertmanager batch (its status is the first alert's); its answer."""
    body = {"version": "4", "status": alerts[0]["status"], "alerts": list(alerts)}
    answer = factory.client.post(f"/ingest/alertmanager/{key}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def firing_alert(fingerprint: str, **labels: str) -> dict[str, Any]:
    """One firing alert of an Alertmanager batch, named HighErrorRate, with these labels."""
    return {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", **labels},
        "startsAt": "2026-11-29T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def matcher(label: str, op: str, value: str) -> dict[str, str]:
    return {"label": label, "op": op, "value": value}


def bare_integration(runtime: Runtime, name: str = "rows") -> int:
    """An Alertmanager integration made straight in the database (no key to use); its id."""
    with runtime.transaction() as session:
        integration = Integration(
            name=name,
            kind="alertmanager",
            key_prefix=(name * 8)[:8],
            key_hash="0" * 64,
            created_at=clock.now(),
        )
        session.add(integration)
        session.flush()
        return integration.id


def alert_row(integration_id: int, fingerprint: str, **values: object) -> AlertRow:
    """A new firing alert as intake's rows carry it, with these columns changed."""
    now = clock.now()
    defaults: dict[str, object] = {
        "integration_id": integration_id,
        "fingerprint": fingerprint,
        "status": "firing",
        "title": "t",
        "severity": "SEV3",
        "service_name": None,
        "labels": {},
        "annotations": {},
        "starts_at": None,
        "ends_at": None,
        "first_seen_at": now,
        "last_seen_at": now,
    }
    return AlertRow(**{**defaults, **values})  # type: ignore[arg-type]


@contextmanager
def sql_run(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements the engine runs meanwhile, with their parameters, in order."""
    ran: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        ran.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", remember)


def sqlite_plan(connection: Connection, statement: str, parameters: Any) -> str:
    """SQLite's query plan for a statement, its steps joined by " | "."""
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return " | ".join(row[-1] for row in rows)


def scheduled_worker(runtime: Runtime) -> Worker:
    """A worker whose schedules are stored, as a starting worker stores them (first due at
    the next minute of the clock)."""
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    worker.sync_schedules()
    return worker


def run_due_jobs(worker: Worker) -> None:
    """What the worker does on each poll: tick the schedules, then run what is due."""
    while worker.run_once():
        pass


def settle_held_alerts(runtime: Runtime) -> None:
    """One run of the minutely job that routes the alerts a mute or flapping held once it
    is over (``signals.settle_held``), by a real worker."""
    with runtime.transaction() as session:
        enqueue(session, SETTLE_HELD_KIND)
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    while worker.run_once():
        pass
