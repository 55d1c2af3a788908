"""Retention of resolved alerts: the hourly job deletes those last seen before the setting's
days, in bounded chunks, and leaves every alert that still stands for a live problem."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from firetower.app import build_runtime
from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.db import Database
from firetower.jobs import Job, Worker, enqueue
from firetower.runtime import Runtime
from firetower.settings import Settings
from firetower.signals import reactions
from firetower.signals.models import Alert
from firetower.signals.service import RETENTION_KIND, delete_expired_alerts
from tests.factories import Factory
from tests.signals_support import sql_run, sqlite_plan
from tests.test_signals_intake import _am_alert, _am_batch, _integration

T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


def _alerts(runtime: Runtime) -> dict[str, tuple[int, str, int]]:
    """Each stored alert's (id, status, count) by fingerprint."""
    with runtime.read() as session:
        rows = session.execute(select(Alert.fingerprint, Alert.id, Alert.status, Alert.count))
        return {
            fingerprint: (alert_id, status, count) for fingerprint, alert_id, status, count in rows
        }


def _run_retention(runtime: Runtime) -> int:
    """Queue the retention job as its schedule does and run every job it leaves; the runs."""
    with runtime.transaction() as session:
        enqueue(session, RETENTION_KIND, runtime.jobs.schedules["signals.retention"].payload)
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    runs = 0
    while worker.run_once():
        runs += 1
    return runs


def test_resolved_alerts_past_the_retention_are_deleted_and_live_ones_kept(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    am = f"/ingest/alertmanager/{_integration(admin, 'prom', 'alertmanager')}"
    pagerduty = _integration(admin, "pd", "pagerduty")
    with FrozenClock(T0) as frozen:
        batch = _am_batch(_am_alert("old-resolved", "resolved"), _am_alert("old-firing"))
        assert factory.client.post(am, json=batch).status_code == 200
        trigger = {
            "routing_key": pagerduty,
            "event_action": "trigger",
            "dedup_key": "old-acknowledged",
            "payload": {"summary": "queue stuck", "source": "worker-1", "severity": "error"},
        }
        assert factory.client.post("/v2/enqueue", json=trigger).status_code == 202
        acknowledge = {**trigger, "event_action": "acknowledge"}
        del acknowledge["payload"]
        assert factory.client.post("/v2/enqueue", json=acknowledge).status_code == 202
        frozen.current = T0 + timedelta(days=30)
        batch = _am_batch(_am_alert("young-resolved", "resolved"))
        assert factory.client.post(am, json=batch).status_code == 200
        before = _alerts(runtime)
        assert {name: status for name, (_, status, _) in before.items()} == {
            "old-resolved": "resolved",
            "old-firing": "firing",
            "old-acknowledged": "acknowledged",
            "young-resolved": "resolved",
        }

        frozen.current = T0 + timedelta(days=90, minutes=-1)  # not yet past the 90 days
        assert _run_retention(runtime) == 1
        assert _alerts(runtime) == before

        frozen.current = T0 + timedelta(days=90, minutes=1)
        assert _run_retention(runtime) == 1
        after = _alerts(runtime)
        assert set(after) == {"old-firing", "old-acknowledged", "young-resolved"}
        assert after == {name: before[name] for name in after}  # untouched

        # Its key went with it: the same fingerprint firing again is a new alert.
        batch = _am_batch(_am_alert("old-resolved"))
        assert factory.client.post(am, json=batch).status_code == 200
        again = _alerts(runtime)["old-resolved"]
        assert again[1:] == ("firing", 1)
        assert again[0] != before["old-resolved"][0]


def test_a_backlog_drains_in_chunks_each_in_a_job_of_its_own(
    factory: Factory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reactions, "RETENTION_CHUNK_ALERTS", 2)
    admin = factory.user(Role.admin)
    am = f"/ingest/alertmanager/{_integration(admin, 'prom', 'alertmanager')}"
    with FrozenClock(T0) as frozen:
        names = [f"r{number}" for number in range(5)]
        batch = _am_batch(*(_am_alert(name, "resolved") for name in names), status="resolved")
        assert factory.client.post(am, json=batch).status_code == 200
        frozen.current = T0 + timedelta(days=91)
        # 2 + 2 + 1: the run that deleted fewer than a chunk queued no other.
        assert _run_retention(runtime) == 3
    assert _alerts(runtime) == {}
    with runtime.read() as session:
        retention_jobs = session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == RETENTION_KIND)
        )
    assert retention_jobs == 3


def test_the_schedule_takes_the_days_from_the_setting(
    settings: Settings, database: Database
) -> None:
    def keep_days(settings: Settings) -> object:
        return build_runtime(settings, database).jobs.schedules["signals.retention"].payload

    assert keep_days(settings) == {"keep_days": 90.0}
    assert keep_days(settings.model_copy(update={"alert_retention_days": 7.5})) == {
        "keep_days": 7.5
    }


@pytest.mark.parametrize("days", [0, -1, "soon"])
def test_a_retention_that_is_not_a_positive_number_is_refused(days: object) -> None:
    with pytest.raises(ValidationError, match="alert_retention_days"):
        Settings(alert_retention_days=days)


def test_an_alert_firing_again_while_retention_waits_for_its_row_is_kept(
    factory: Factory, runtime: Runtime
) -> None:
    """PostgreSQL: the DELETE tests status and time again on the row as intake left it."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the two cannot overlap there")
    admin = factory.user(Role.admin)
    am = f"/ingest/alertmanager/{_integration(admin, 'prom', 'alertmanager')}"
    with FrozenClock(T0):
        batch = _am_batch(_am_alert("flare", "resolved"), status="resolved")
        assert factory.client.post(am, json=batch).status_code == 200
    deleted: list[int] = []
    with runtime.transaction() as intake:  # as intake: the known row read locked, then written
        intake.execute(select(Alert.id).where(Alert.fingerprint == "flare").with_for_update())
        retention = threading.Thread(
            target=lambda: deleted.append(_delete_expired(runtime, T0 + timedelta(days=1)))
        )
        retention.start()
        assert _waits_for_a_row_lock(runtime, "DELETE FROM alerts"), "the DELETE never waited"
        intake.execute(
            update(Alert)
            .where(Alert.fingerprint == "flare")
            .values(status="firing", last_seen_at=T0 + timedelta(days=2))
        )
    retention.join(10)
    assert deleted == [0]
    assert _alerts(runtime)["flare"][1] == "firing"


def test_retention_locks_its_chunk_in_id_order_as_intake_does(
    factory: Factory, runtime: Runtime
) -> None:
    """PostgreSQL: intake locks the alerts it reads in id order. A chunk locked oldest first
    held a later id while it waited for an earlier one that intake held: intake, going on
    to the later one, would then wait for it crosswise (a deadlock)."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time and locks no rows")
    admin = factory.user(Role.admin)
    am = f"/ingest/alertmanager/{_integration(admin, 'prom', 'alertmanager')}"
    with FrozenClock(T0 + timedelta(hours=1)) as frozen:  # stored first, seen last
        batch = _am_batch(_am_alert("earlier-id", "resolved"), status="resolved")
        assert factory.client.post(am, json=batch).status_code == 200
        frozen.current = T0
        batch = _am_batch(_am_alert("later-id", "resolved"), status="resolved")
        assert factory.client.post(am, json=batch).status_code == 200
    ids = {name: alert_id for name, (alert_id, _, _) in _alerts(runtime).items()}
    assert ids["earlier-id"] < ids["later-id"]

    def lock(session: Session, name: str, *, nowait: bool = False) -> None:
        locking = select(Alert.id).where(Alert.id == ids[name])
        session.execute(locking.with_for_update(nowait=nowait))

    deleted: list[int] = []
    with runtime.transaction() as intake:
        lock(intake, "earlier-id")
        retention = threading.Thread(
            target=lambda: deleted.append(_delete_expired(runtime, T0 + timedelta(days=1)))
        )
        retention.start()
        assert _waits_for_a_row_lock(runtime, "DELETE FROM alerts"), "the DELETE never waited"
        lock(intake, "later-id", nowait=True)  # refused if the chunk holds it already
    retention.join(10)
    assert deleted == [2]


def test_a_chunk_finds_its_rows_by_id_however_many_have_expired(runtime: Runtime) -> None:
    """SQLite: a DELETE that also tested status and time walked the index over every
    expired alert for each chunk of 2,000 (a backlog's chunks then took ever longer)."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("a SQLite plan; PostgreSQL's planner picks by its statistics")
    with sql_run(runtime.database.engine) as ran:
        _delete_expired(runtime, T0)
    deletes = [(s, p) for s, p in ran if s.startswith("DELETE FROM alerts")]
    assert len(deletes) == 1
    with runtime.database.engine.connect() as connection:
        plan = sqlite_plan(connection, *deletes[0])
    assert plan.startswith("SEARCH alerts USING INTEGER PRIMARY KEY (rowid=?)"), plan
    assert plan.count("ix_alerts_status_last_seen") == 1, plan  # the chunk's ids only


def _waits_for_a_row_lock(runtime: Runtime, statement_start: str) -> bool:
    """Whether a session of this test's database, running a statement that starts so, comes
    to wait for a lock (PostgreSQL's pg_stat_activity) within ten seconds."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE :start"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with runtime.database.engine.connect() as connection:
            if connection.scalar(waiting, {"start": f"{statement_start}%"}):
                return True
        time.sleep(0.02)
    return False


def _delete_expired(runtime: Runtime, last_seen_before: datetime) -> int:
    with runtime.transaction() as session:
        return delete_expired_alerts(session, last_seen_before=last_seen_before)
