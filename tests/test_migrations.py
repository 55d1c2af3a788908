"""Migrations: they build exactly the schema the models describe, and they run both ways."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import READ_ONLY_OPTION, Base, Database
from firetower.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    migrations_current,
    upgrade,
)
from firetower.settings import Settings
from tests.factories import Factory


def test_the_migrated_schema_is_the_models_schema(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    assert migrations_current(database.engine)


def test_migrations_run_down_and_up_again(tmp_path) -> None:
    settings = Settings(env="test", home=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    database = Database(settings)
    upgrade(database.engine, "0001")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (email, name, role, active, created_at) "
                "VALUES ('old@example.com', 'old', 'admin', 1, '2026-01-01 00:00:00')"
            )
        )
    assert not migrations_current(database.engine)
    upgrade(database.engine)
    with database.engine.connect() as connection:
        epoch = connection.execute(
            text("SELECT session_epoch FROM users WHERE email = 'old@example.com'")
        ).scalar_one()
    assert epoch == 0  # existing users keep their sessions
    command.downgrade(alembic_config(database.engine), "base")
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(database.engine)
    assert migrations_current(database.engine)
    assert head_revision() == "0027"
    database.dispose()


def test_dead_letters_stored_before_0024_are_as_large_as_what_they_kept(tmp_path) -> None:
    """Their size as received was never kept: what they kept is all anyone knows."""
    settings = Settings(env="test", home=tmp_path, database_url=f"sqlite:///{tmp_path / 'd.db'}")
    database = Database(settings)
    upgrade(database.engine, "0023")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO rejected_payloads (received_at, reason, body) "
                "VALUES ('2026-11-30 00:00:00', 'not JSON', :body)"
            ),
            {"body": "{brøken".encode()},
        )
    upgrade(database.engine)
    with database.engine.connect() as connection:
        size = connection.execute(text("SELECT received_bytes FROM rejected_payloads")).scalar()
    assert size == len("{brøken".encode()) == 8
    database.dispose()


def test_the_migration_environment_knows_every_table(tmp_path) -> None:
    """`alembic check` in a fresh interpreter: env.py alone must import every model module.

    Otherwise a future autogenerate would propose dropping the tables it does not know.
    """
    url = f"sqlite:///{tmp_path / 'check.db'}"
    script = (
        "from alembic import command\n"
        "from firetower.db import make_engine\n"
        "from firetower.migrate import alembic_config, upgrade\n"
        f"engine = make_engine({url!r})\n"
        "upgrade(engine)\n"
        "command.check(alembic_config(engine))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_upgrade_says_what_it_applies_and_how_long_each_took(tmp_path) -> None:
    """An index build takes longer the more alerts are stored, and on SQLite the upgrade
    holds the write lock: ``migrate`` and ``serve`` name each pending migration first."""
    import re

    settings = Settings(env="test", home=tmp_path, database_url=f"sqlite:///{tmp_path / 'p.db'}")
    database = Database(settings)
    heard: list[str] = []
    upgrade(database.engine, "0015", progress=heard.append)
    assert heard == ["creating the database schema (migrations 0001-0015)"]

    heard.clear()
    upgrade(database.engine, "0017", progress=heard.append)
    assert heard[:3] == [
        "upgrading the database from 0015, in one transaction:",
        "  0016: signals: an incident's alerts indexed by when they joined it, not by status",
        "  0017: signals: an incident's unresolved alerts indexed apart",
    ]
    assert [re.sub(r"\d+\.\d s", "T s", line) for line in heard[3:]] == [
        "  0016 applied in T s",
        "  0017 applied in T s",
    ]
    heard.clear()
    upgrade(database.engine, "0017", progress=heard.append)
    assert heard == []  # up to date: nothing to say
    database.dispose()


def test_0026_adds_who_deactivated_a_user_and_both_ways_keeps_every_row(
    unmigrated_database: Database,
) -> None:
    """Users deactivated before 0026 keep who and when unknown. Neither way rebuilds the
    users table: on SQLite, dropping the old one would delete its tokens and memberships."""
    database = unmigrated_database
    upgrade(database.engine, "0025")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (email, name, role, active, session_epoch, created_at) "
                "VALUES ('gone@example.com', 'gone', 'responder', false, 1, "
                "'2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO teams (name, description, created_at) "
                "VALUES ('ops', '', '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO team_members (team_id, user_id) "
                "SELECT t.id, u.id FROM teams t, users u"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_tokens (user_id, name, prefix, token_hash, role, created_at) "
                "SELECT id, 'laptop', 'abc123', 'x', 'responder', '2026-01-01 00:00:00' "
                "FROM users"
            )
        )

    def kept() -> tuple[int, int, int]:
        with database.engine.connect() as connection:
            return tuple(  # type: ignore[return-value]
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("users", "team_members", "api_tokens")
            )

    upgrade(database.engine)
    with database.engine.connect() as connection:
        row = connection.execute(
            text("SELECT active, deactivated_at, deactivated_by_id, deactivated_by FROM users")
        ).one()
    assert tuple(row) == (False, None, None, None)
    assert kept() == (1, 1, 1)
    command.downgrade(alembic_config(database.engine), "0025")
    assert "deactivated_by" not in {
        c["name"] for c in inspect(database.engine).get_columns("users")
    }
    assert kept() == (1, 1, 1)
    upgrade(database.engine)
    assert migrations_current(database.engine)


def test_0027_keeps_heartbeats_running_and_a_downgrade_drops_the_stopped_ones(
    unmigrated_database: Database,
) -> None:
    """A heartbeat from before 0027 is a running (or silent) worker's. Before 0027 a stopped
    worker had no row, so going back deletes the stopped ones rather than reviving them."""
    database = unmigrated_database
    upgrade(database.engine, "0026")
    insert = (
        "INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, last_seen_at) "
        "VALUES (:name, 'h', 1, '2026-12-01 00:00:00', '2026-12-01 00:00:10')"
    )
    with database.engine.begin() as connection:
        connection.execute(text(insert), {"name": "running"})
    upgrade(database.engine)
    with database.engine.begin() as connection:
        assert connection.execute(
            text("SELECT worker_id, stopped_at FROM worker_heartbeats")
        ).all() == [("running", None)]
        connection.execute(text(insert), {"name": "stopped"})
        connection.execute(
            text(
                "UPDATE worker_heartbeats SET stopped_at = last_seen_at WHERE worker_id = 'stopped'"
            )
        )
    command.downgrade(alembic_config(database.engine), "0026")
    with database.engine.connect() as connection:
        left = connection.execute(text("SELECT worker_id FROM worker_heartbeats")).scalars().all()
    assert left == ["running"]
    assert "stopped_at" not in {
        c["name"] for c in inspect(database.engine).get_columns("worker_heartbeats")
    }
    upgrade(database.engine)
    assert migrations_current(database.engine)


def _kept_rows(engine: Engine) -> dict[tuple[str, str], int]:
    """Every table's rows, and every foreign key column's non-NULL values, as the database
    lists them: a rebuilt table must not take rows, or references to it, with it."""
    counts: dict[tuple[str, str], int] = {}
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as connection:
        inspector = inspect(connection)
        for table in set(inspector.get_table_names()) - {"alembic_version"}:
            counts[(table, "*")] = connection.execute(
                text(f'SELECT count(*) FROM "{table}"')
            ).scalar_one()
            for key in inspector.get_foreign_keys(table):
                for column in key["constrained_columns"]:
                    counts[(table, column)] = connection.execute(
                        text(f'SELECT count("{column}") FROM "{table}"')
                    ).scalar_one()
    return counts


def _same_where_both_have_it(
    before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]
) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        key: (before[key], after[key])
        for key in before.keys() & after.keys()
        if before[key] != after[key]
    }


def test_each_migration_down_and_up_keeps_the_rows_that_reference_a_rebuilt_table(
    unmigrated_database: Database, tmp_path
) -> None:
    """SQLite alters most columns by rebuilding the table, and dropping the old table deleted
    (ON DELETE CASCADE), emptied (SET NULL) or refused to drop (no action) whatever referenced
    it: users' tokens and team memberships, integrations' alerts and dead letters. Each
    migration, down and up again, keeps every row and every reference of the tables it keeps."""
    database = unmigrated_database
    upgrade(database.engine)
    settings = Settings(
        env="test",
        home=tmp_path / "home",
        database_url=database.settings.resolved_database_url,
        secret_key="test-secret-" + "x" * 40,
        embedded_worker=False,
    )
    app = create_app(settings, database=database, start_worker=False, configure_logs=False)
    with TestClient(app) as client:
        factory = Factory(app.state.runtime, client)
        admin = factory.user(Role.admin)
        ana = factory.user(email="ana@example.com")
        bo = factory.user(email="bo@example.com")
        made = admin.post("/api/v1/teams", json={"name": "ops", "members": [ana.email, bo.email]})
        assert made.status_code == 201, made.text
        factory.service("db", team="ops")
        made = admin.post(
            "/api/v1/integrations", json={"name": "pd", "kind": "pagerduty", "service_name": "db"}
        )
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        event = {
            "routing_key": key,
            "event_action": "trigger",
            "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "error"},
        }
        assert client.post("/v2/enqueue", json=event).status_code == 202
        change = {"routing_key": key, "payload": {"summary": "Deploy v42", "source": "ci"}}
        assert client.post("/v2/change/enqueue", json=change).status_code == 202
        assert client.post("/v2/enqueue", json={"routing_key": key}).status_code == 400
        ref = factory.incident(ana.actor, severity="SEV2", services=["db"])
        commander = {"user": bo.email}
        assert ana.put(f"/api/v1/incidents/{ref}/roles/commander", json=commander).is_success
        task = {"title": "Roll back", "assignee": bo.email}
        assert ana.post(f"/api/v1/incidents/{ref}/tasks", json=task).status_code == 201
        bo_id = bo.get("/api/v1/me").json()["id"]
        assert admin.patch(f"/api/v1/users/{bo_id}", json={"active": False}).is_success
    held = _kept_rows(database.engine)
    assert held[("api_tokens", "*")] == 3 and held[("team_members", "*")] == 2
    assert held[("alerts", "integration_id")] == 1 and held[("change_events", "*")] == 1
    assert held[("rejected_payloads", "integration_id")] == 1
    assert held[("users", "deactivated_by_id")] == 1

    config = alembic_config(database.engine)
    scripts = ScriptDirectory.from_config(config)
    lost: dict[str, dict[tuple[str, str], tuple[int, int]]] = {}
    for step in scripts.walk_revisions():  # newest first
        before = _kept_rows(database.engine)
        command.downgrade(config, step.down_revision or "base")
        below = _kept_rows(database.engine)
        if differences := _same_where_both_have_it(before, below):
            lost[f"{step.revision} down"] = differences
        upgrade(database.engine, step.revision)
        if differences := _same_where_both_have_it(below, _kept_rows(database.engine)):
            lost[f"{step.revision} up"] = differences
        command.downgrade(config, step.down_revision or "base")
    assert lost == {}
    upgrade(database.engine)
    assert migrations_current(database.engine)


def test_a_sqlite_migration_is_rolled_back_when_a_reference_dangles_after_it(tmp_path) -> None:
    """Foreign keys are off while SQLite migrates (a rebuilt table would take what refers to
    it along), so the references are checked before the migration commits. The check
    reads the whole database: a row left dangling before, here by a deletion with foreign
    keys off, stops the migration too, and the message says where to look."""
    settings = Settings(env="test", home=tmp_path, database_url=f"sqlite:///{tmp_path / 'f.db'}")
    database = Database(settings)
    upgrade(database.engine, "0024")
    with database.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute(
            "INSERT INTO api_tokens (user_id, name, prefix, token_hash, role, created_at) "
            "VALUES (42, 'orphan', 'abc123', 'x', 'responder', '2026-01-01 00:00:00')"
        )
        raw.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(RuntimeError, match=r"changed nothing.*\(api_tokens row 1 -> users\)"):
        upgrade(database.engine)
    assert current_revision(database.engine) == "0024"  # neither 0025 nor 0026 stayed
    assert "deactivated_at" not in {
        c["name"] for c in inspect(database.engine).get_columns("users")
    }
    with database.engine.connect() as connection:  # the pool's connection has them on again
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    database.dispose()


def test_an_upgrade_that_fails_half_way_leaves_the_database_where_it_was(
    unmigrated_database: Database,
) -> None:
    """The upgrade is one transaction, as ``migrate`` says: on SQLite, alembic's own would
    have committed each step apart, and left the database at the last step that passed."""
    database = unmigrated_database
    upgrade(database.engine, "0023")

    def fail_after_0025(line: str) -> None:
        if line.startswith("  0025 applied"):
            raise RuntimeError("the operator's terminal went away")

    with pytest.raises(RuntimeError, match="terminal went away"):
        upgrade(database.engine, "0026", progress=fail_after_0025)
    assert current_revision(database.engine) == "0023"
    columns = {c["name"] for c in inspect(database.engine).get_columns("alerts")}
    assert "status_by" not in columns  # 0025's column, rolled back with it
    upgrade(database.engine)
    assert migrations_current(database.engine)
