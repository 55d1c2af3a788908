"""The alert lists read each status's newest alerts from its own index range: the console's
firing first, the API's newest first across statuses, and neither sorts the whole table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from firetower.signals import intake_rows, queries, service
from firetower.signals.schemas import AlertStatus
from tests.factories import Factory
from tests.signals_support import alert_row, bare_integration, sql_run, sqlite_plan

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STORED = (  # fingerprint, status, seconds after T0; stored in this order (ids ascending)
    ("f1", "firing", 1),
    ("f2", "firing", 5),
    ("a1", "acknowledged", 6),
    ("r1", "resolved", 7),
    ("r2", "resolved", 2),
    ("a2", "acknowledged", 3),
    ("f3", "firing", 4),
    ("f4", "firing", 5),  # seen with f2: the later id comes first
)
CONSOLE_ORDER = ["f4", "f2", "f3", "f1", "a1", "a2", "r1", "r2"]
API_ORDER = ["r1", "a1", "f4", "f2", "f3", "a2", "r2", "f1"]


def _store(runtime: Runtime) -> None:
    integration_id = bare_integration(runtime)
    with runtime.transaction() as session:
        intake_rows.write(
            session,
            [
                alert_row(
                    integration_id,
                    fingerprint,
                    status=status,
                    first_seen_at=T0,
                    last_seen_at=T0 + timedelta(seconds=seconds),
                    group_key=f"kind={fingerprint[0]}",
                )
                for fingerprint, status, seconds in STORED
            ],
        )


def test_the_console_list_is_firing_first_and_each_status_newest_first(runtime: Runtime) -> None:
    _store(runtime)
    with runtime.read() as session:
        for limit in range(1, len(STORED) + 2):  # every cut, within a status and across
            listed = queries.alert_rows(session, limit=limit)
            assert [row.alert.fingerprint for row in listed] == CONSOLE_ORDER[:limit], limit
        firing = queries.alert_rows(session, status=AlertStatus.firing, limit=3)
        assert [row.alert.fingerprint for row in firing] == ["f4", "f2", "f3"]
        resolved = queries.alert_rows(session, status=AlertStatus.resolved)
        assert [row.alert.fingerprint for row in resolved] == ["r1", "r2"]
        grouped = queries.alert_rows(session, group_key="kind=a")
        assert [row.alert.fingerprint for row in grouped] == ["a1", "a2"]
        groups = service.list_groups(session)
        assert [(g.group_key, g.firing, g.resolved) for g in groups] == [
            ("kind=r", 0, 2),  # r1 was seen last
            ("kind=a", 2, 0),  # acknowledged counts as firing
            ("kind=f", 4, 0),
        ]
        assert groups[0].last_seen_at == T0 + timedelta(seconds=7)


def test_the_api_list_is_newest_first_across_statuses(factory: Factory, runtime: Runtime) -> None:
    _store(runtime)
    viewer = factory.user(Role.viewer)
    for limit in range(1, len(STORED) + 2):
        answer = viewer.get("/api/v1/alerts", params={"limit": limit})
        assert answer.status_code == 200, answer.text
        assert [a["fingerprint"] for a in answer.json()] == API_ORDER[:limit], limit
    answer = viewer.get("/api/v1/alerts", params={"status": "acknowledged"})
    assert [a["fingerprint"] for a in answer.json()] == ["a1", "a2"]


def test_the_lists_walk_the_status_index_without_sorting(runtime: Runtime) -> None:
    """Sorting every alert to show 200 took 1.3 s over a million on SQLite, at every poll of
    the console (bench/console_lists.py). Each status's read must walk its range of
    ``ix_alerts_status_last_seen`` in order, with or without an integration."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("the plan is SQLite's: PostgreSQL plans by its statistics of the table")
    _store(runtime)
    engine = runtime.database.engine
    with sql_run(engine) as ran, runtime.read() as session:
        queries.alert_rows(session)
        queries.alert_rows(session, status=AlertStatus.firing, integration="rows")
        service.list_alerts(session)
    reads = [(s, p) for s, p in ran if "FROM alerts" in s and "ORDER BY" in s]
    assert len(reads) == 7  # three statuses, one, three
    with engine.connect() as connection:
        plans = [sqlite_plan(connection, statement, parameters) for statement, parameters in reads]
    for plan in plans:
        assert "INDEX ix_alerts_status_last_seen (status=?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
