"""Helpers shared by the SLO tests: run the evaluation jobs, read what they wrote."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from firetower import clock
from firetower.incidents.models import Incident, TimelineEvent
from firetower.jobs import Job, Worker, enqueue
from firetower.monitors.slo_reactions import EVALUATE_ALL
from firetower.runtime import Runtime
from firetower.signals.models import Alert
from tests.factories import ApiUser


def run_jobs(runtime: Runtime) -> None:
    """Run queued jobs with a real worker until none is due; a failed job fails the test."""
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    while worker.run_once():
        pass
    with runtime.read() as session:
        failed = list(session.scalars(select(Job).where(Job.last_error.is_not(None))))
        assert not failed, [(j.kind, j.last_error) for j in failed]


def evaluate_all(runtime: Runtime) -> None:
    """What the every-minute schedule does: one tick, then the per-SLO jobs it enqueues."""
    with runtime.transaction() as session:
        enqueue(session, EVALUATE_ALL, {"scheduled_for": clock.now().isoformat()})
    run_jobs(runtime)


def events_slo(user: ApiUser, name: str, service: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "service": service,
        "objective_percent": 99.9,
        "sli": {"kind": "events"},
        **fields,
    }
    answer = user.post("/api/v1/slos", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def push(user: ApiUser, name: str, good: int, bad: int, **fields: Any) -> dict[str, Any]:
    answer = user.post(f"/api/v1/slos/{name}/events", json={"good": good, "bad": bad, **fields})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def slo_alerts(runtime: Runtime, name: str) -> dict[str, Alert]:
    """The SLO's alerts by level."""
    with runtime.read() as session:
        alerts = session.scalars(select(Alert).where(Alert.fingerprint.like(f"slo:{name}:%")))
        return {a.fingerprint.rsplit(":", 1)[1]: a for a in alerts}


def incidents(runtime: Runtime) -> list[Incident]:
    with runtime.read() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def timeline(runtime: Runtime, incident_id: int) -> list[TimelineEvent]:
    with runtime.read() as session:
        return list(
            session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id)
                .order_by(TimelineEvent.id)
            )
        )
