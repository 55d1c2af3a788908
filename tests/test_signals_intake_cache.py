"""Intake's per-process views (signals/intake_cache.py): read once, used while current, and
read again after any writer (this process, another one, plain SQL) changed what they hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect, select, text

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.db import make_engine
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from firetower.settings import Settings
from firetower.signals import intake_cache
from firetower.signals.models import IntakeGeneration
from tests.factories import ApiUser, Factory
from tests.signals_support import alert_by_fingerprint, firing_alert, incident_count

T0 = datetime(2026, 11, 29, 12, 0, 10, tzinfo=UTC)
WATCHED = {
    "integrations": "routing",
    "routing_rules": "routing",
    "inhibit_rules": "routing",
    "silences": "routing",
    "maintenance_windows": "routing",
    "services": "routing",
    "incidents": "incidents",
    "incident_services": "incidents",
}


def _key(admin: ApiUser, service: str, name: str | None = None) -> str:
    answer = admin.post(
        "/api/v1/integrations",
        json={"name": name or f"am-{service}", "kind": "alertmanager", "service_name": service},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _send(factory: Factory, key: str, *alerts: dict[str, Any]) -> Any:
    body = {"version": "4", "status": "firing", "alerts": list(alerts)}
    return factory.client.post(f"/ingest/alertmanager/{key}", json=body)


def _post(factory: Factory, key: str, fingerprint: str, **labels: str) -> Any:
    answer = _send(factory, key, firing_alert(fingerprint, **labels))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _silence_api_jobs(admin: ApiUser) -> Any:
    """A silence of ``job="api"`` for the next hour."""
    answer = admin.post(
        "/api/v1/silences",
        json={
            "matchers": [{"label": "job", "op": "=", "value": "api"}],
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "comment": "deploy",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _generations(runtime: Runtime) -> dict[str, int]:
    with runtime.read() as session:
        rows = session.execute(select(IntakeGeneration.topic, IntakeGeneration.generation))
        return dict(rows.all())


@contextmanager
def _statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements the database runs meanwhile, lower-cased."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.lower().split()))

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


@contextmanager
def _another_writer(settings: Settings) -> Iterator[Any]:
    """A connection of its own, as another process or a plain SQL client has."""
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def test_a_warm_request_reads_none_of_the_cached_tables(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    _post(factory, key, "first")  # opens the incident and fills the views
    with _statements(runtime) as seen:
        _post(factory, key, "second")
    reads = [s for s in seen if s.startswith("select")]
    assert len([s for s in reads if "intake_generations" in s]) == 1
    for table in ("integrations", "routing_rules", "inhibit_rules", "silences", "maintenance_"):
        assert not [s for s in reads if f"from {table}" in s], table
    services = [s for s in reads if "from services" in s]
    active = [s for s in reads if "incident_services.service_id in (" in s]  # active incidents
    if runtime.database.dialect == "sqlite":
        assert services == [] and active == []
    else:  # PostgreSQL locks the service and reads its active incident under the lock
        assert len(services) == 1 and services[0].endswith("for no key update")
        assert len(active) == 1
    assert alert_by_fingerprint(runtime, "second").incident_id is not None
    assert incident_count(runtime) == 1


@pytest.mark.parametrize(
    ("table", "change", "moves"),
    [
        ("services", "UPDATE services SET description = 'x'", False),
        ("services", "UPDATE services SET name = 'renamed'", True),
        ("incidents", "UPDATE incidents SET title = 'x'", False),
        ("incidents", "UPDATE incidents SET status = 'resolved'", True),
        ("silences", "DELETE FROM silences", True),
        ("integrations", "UPDATE integrations SET flap_threshold = 9", True),
    ],
)
def test_triggers_move_a_generation_only_for_what_the_views_hold(
    factory: Factory, runtime: Runtime, settings: Settings, table: str, change: str, moves: bool
) -> None:
    admin = factory.user(Role.admin)
    _key(admin, factory.service("checkout"))
    factory.incident(services=["checkout"])
    _silence_api_jobs(admin)
    topic = WATCHED[table]
    before = _generations(runtime)
    with _another_writer(settings) as connection:
        connection.execute(text(change))
    after = _generations(runtime)
    tracked = topic == "routing" or runtime.database.dialect == "sqlite"
    assert (after[topic] != before[topic]) is (moves and tracked)
    other = "incidents" if topic == "routing" else "routing"
    assert after[other] == before[other]


def test_every_watched_table_has_its_triggers_at_head(runtime: Runtime) -> None:
    """A later migration that rebuilds a watched table (Alembic's batch mode on SQLite)
    drops its triggers: this fails until it makes them again. ``alerts`` has two more, the
    triggers that keep its keys (migration 0014)."""
    with runtime.database.engine.connect() as connection:
        if runtime.database.dialect == "sqlite":
            rows = connection.execute(
                text("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
            )
            found = {(table, sql.split()[4].lower()) for table, sql in rows}  # AFTER <event>
            expected = {(t, e) for t in WATCHED for e in ("insert", "update", "delete")}
        else:
            rows = connection.execute(
                text(
                    "SELECT event_object_table, lower(event_manipulation) "
                    "FROM information_schema.triggers"
                )
            )
            found = set(rows.all())
            expected = {
                (t, e)
                for t, topic in WATCHED.items()
                if topic == "routing"
                for e in ("insert", "update", "delete")
            }
    expected |= {("alerts", "insert"), ("alerts", "delete")}
    assert found == expected
    assert set(inspect(runtime.database.engine).get_table_names()) >= set(WATCHED)


def test_config_changed_through_the_api_applies_to_the_next_request(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    _post(factory, key, "warm", job="web")

    silence = _silence_api_jobs(admin)
    _post(factory, key, "muted", job="api")
    assert alert_by_fingerprint(runtime, "muted").silenced

    assert admin.post(f"/api/v1/silences/{silence['id']}/expire").status_code == 200
    _post(factory, key, "loud", job="api")
    assert not alert_by_fingerprint(runtime, "loud").silenced

    rule = {"name": "drop-api", "matchers": [{"label": "job", "op": "=", "value": "api"}]}
    answer = admin.post("/api/v1/routing-rules", json={**rule, "action": "drop"})
    assert answer.status_code == 201, answer.text
    _post(factory, key, "dropped", job="api")
    dropped = alert_by_fingerprint(runtime, "dropped")
    assert dropped.routed_by == "drop-api" and dropped.incident_id is None

    factory.service("payments")  # a service made after the views were read
    _post(factory, key, "paid", job="web", service="payments")
    assert alert_by_fingerprint(runtime, "paid").service_name == "payments"


def test_a_rotated_or_revoked_key_is_refused_at_once(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"), name="am")
    _post(factory, key, "warm")
    rotated = admin.post("/api/v1/integrations/am/rotate").json()["key"]
    assert _send(factory, key, firing_alert("old")).status_code == 401
    _post(factory, rotated, "new")
    assert admin.delete("/api/v1/integrations/am").status_code == 204
    assert _send(factory, rotated, firing_alert("gone")).status_code == 401


def test_changes_by_another_writer_apply_to_the_next_request(
    factory: Factory, runtime: Runtime, settings: Settings
) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    first = _post(factory, key, "first")["opened"][0]
    _post(factory, key, "second")
    assert alert_by_fingerprint(runtime, "second").incident_id is not None

    with _another_writer(settings) as connection:  # resolved behind this process's back
        connection.execute(text("UPDATE incidents SET status = 'resolved'"))
    opened = _post(factory, key, "third")["opened"]
    assert len(opened) == 1 and opened[0] != first
    assert incident_count(runtime) == 2

    with _another_writer(settings) as connection:
        connection.execute(text("UPDATE integrations SET revoked_at = created_at"))
    assert _send(factory, key, firing_alert("late")).status_code == 401


def test_the_attach_note_job_is_queued_once_a_minute_and_then_not_tried_again(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    with FrozenClock(T0):
        _post(factory, key, "opener")
        inserts = []
        for number in range(3):
            with _statements(runtime) as seen:
                _post(factory, key, f"joiner-{number}")
            inserts.append(len([s for s in seen if s.startswith("insert into jobs")]))
    # The first joiner queues the minute's job, the second finds it queued (and remembers),
    # the third does not try.
    assert inserts == [1, 1, 0]
    with runtime.read() as session:
        count = session.scalar(text("SELECT count(*) FROM jobs WHERE kind = 'signals.attached'"))
    assert count == 1


def test_a_view_read_in_a_transaction_that_rolled_back_never_passes_for_current(
    factory: Factory, runtime: Runtime, settings: Settings
) -> None:
    """The view holds the undone change; the next committed change must not look like it."""
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    _post(factory, key, "warm", job="api")
    mute = "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at) "
    mute += "VALUES (:matchers, '2000-01-01 00:00:00.000000', '2999-01-01 00:00:00.000000', "
    mute += "'t', '', '2000-01-01 00:00:00.000000')"

    class Undo(Exception):
        pass

    with pytest.raises(Undo), runtime.transaction() as session:
        session.execute(text(mute), {"matchers": '[{"label": "job", "op": "=", "value": "api"}]'})
        routing, _incidents = intake_cache.of(session).views(session, with_incidents=False)
        assert len(routing.silences) == 1  # read with the change this transaction undoes
        raise Undo
    with _another_writer(settings) as connection:  # one committed change after it
        connection.execute(text(mute), {"matchers": '[{"label": "job", "op": "=", "value": "db"}]'})

    _post(factory, key, "after", job="api")
    assert not alert_by_fingerprint(runtime, "after").silenced


def test_a_watched_table_emptied_whole_is_seen_at_once(
    factory: Factory, runtime: Runtime, settings: Settings
) -> None:
    """SQLite empties a table without a WHERE in one step unless it has triggers, and
    PostgreSQL's TRUNCATE fires no row or DELETE trigger: both must still count."""
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("checkout"))
    _silence_api_jobs(admin)
    _post(factory, key, "muted", job="api")
    assert alert_by_fingerprint(runtime, "muted").silenced
    empty = "DELETE FROM silences" if runtime.database.dialect == "sqlite" else "TRUNCATE silences"
    with _another_writer(settings) as connection:
        connection.execute(text(empty))
    _post(factory, key, "loud", job="api")
    assert not alert_by_fingerprint(runtime, "loud").silenced


def test_a_database_made_again_starts_from_other_generations(tmp_path: Any) -> None:
    """A server whose database is dropped and migrated anew must not take its old views
    for current: the generations start random, not at a fixed value."""
    seen = []
    for number in range(2):
        engine = make_engine(f"sqlite:///{tmp_path / f'{number}.db'}")
        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT topic, generation FROM intake_generations"))
            seen.append(dict(rows.all()))
        engine.dispose()
    assert set(seen[0]) == {"routing", "incidents"}
    assert seen[0]["routing"] != seen[1]["routing"]
    assert seen[0]["incidents"] != seen[1]["incidents"]
