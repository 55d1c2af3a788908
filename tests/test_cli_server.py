"""The server commands (migrate, admin) against a temporary SQLite database, and bad settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.cli_support import error_line, json_of, logs_kept_apart, run_cli, unused_port


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # server commands configure structlog for the process; put it back afterwards
    with logs_kept_apart():
        yield


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str | None]:
    return {
        "FIRETOWER_HOME": str(tmp_path / "home"),
        "FIRETOWER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'firetower.db'}",
        "FIRETOWER_CONFIG": None,
        "FIRETOWER_PORT": None,
    }


def test_migrate_creates_the_schema(server_env: dict[str, str | None], tmp_path: Path) -> None:
    result = run_cli(["migrate"], env=server_env)
    assert result.exit_code == 0, result.output
    assert "creating the database schema (migrations 0001-" in result.stdout
    assert "database migrated" in result.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'firetower.db'}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"users", "incidents", "services", "alembic_version"} <= tables
    # a second run is a no-op, not an error
    assert run_cli(["migrate"], env=server_env).exit_code == 0


def test_admin_creates_a_user_and_a_token(server_env: dict[str, str | None]) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    created = run_cli(
        ["admin", "create-user", "ops@example.com", "--role", "responder"], env=server_env
    )
    assert created.exit_code == 0, created.output
    assert "created responder ops@example.com" in created.stdout
    assert "password (shown once):" in created.stdout

    token = json_of(
        run_cli(
            ["admin", "create-token", "--user", "ops@example.com", "--name", "laptop", "--json"],
            env=server_env,
        )
    )
    assert token["name"] == "laptop"
    assert token["role"] == "responder"
    assert len(token["token"]) >= 20

    plain = run_cli(
        ["admin", "create-token", "--user", "ops@example.com", "--name", "ci"], env=server_env
    )
    assert plain.exit_code == 0, plain.output
    secret = plain.stdout.strip()
    assert secret and "\n" not in secret and secret != token["token"]


def test_admin_create_user_json_and_duplicates(server_env: dict[str, str | None]) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    args = ["admin", "create-user", "lead@example.com", "--role", "admin", "--json"]
    user = json_of(run_cli(args, env=server_env))
    assert (user["email"], user["role"]) == ("lead@example.com", "admin")
    assert user["password"]  # generated, shown once
    again = run_cli(args, env=server_env)
    assert "lead@example.com" in error_line(again)


def test_create_token_for_an_unknown_user(server_env: dict[str, str | None]) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    result = run_cli(
        ["admin", "create-token", "--user", "ghost@example.com", "--name", "x"], env=server_env
    )
    assert "ghost@example.com" in error_line(result)


def test_an_invalid_setting_is_one_line_naming_it(server_env: dict[str, str | None]) -> None:
    result = run_cli(["migrate"], env={**server_env, "FIRETOWER_PORT": "abc"})
    line = error_line(result)
    assert line.startswith("error: invalid configuration: FIRETOWER_PORT")
    assert "'abc'" in line
    assert result.stdout == ""


def test_an_invalid_database_url_is_refused(server_env: dict[str, str | None]) -> None:
    result = run_cli(
        ["admin", "create-user", "x@example.com"],
        env={**server_env, "FIRETOWER_DATABASE_URL": "mysql://db/firetower"},
    )
    assert "FIRETOWER_DATABASE_URL" in error_line(result)


def test_a_short_password_names_the_field(server_env: dict[str, str | None]) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    result = run_cli(
        ["admin", "create-user", "a@example.com", "--password", "short"], env=server_env
    )
    assert error_line(result).startswith("error: password: ")


def test_an_empty_token_name_names_the_field(server_env: dict[str, str | None]) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    assert run_cli(["admin", "create-user", "a@example.com"], env=server_env).exit_code == 0
    result = run_cli(
        ["admin", "create-token", "--user", "a@example.com", "--name", ""], env=server_env
    )
    assert error_line(result).startswith("error: name: ")


def test_an_unmigrated_database_says_to_migrate(server_env: dict[str, str | None]) -> None:
    result = run_cli(["admin", "create-user", "a@example.com"], env=server_env)
    assert "run `firetower migrate`" in error_line(result)


def test_an_unreachable_database_is_one_line(server_env: dict[str, str | None]) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{unused_port()}/firetower"
    result = run_cli(["migrate"], env={**server_env, "FIRETOWER_DATABASE_URL": url})
    assert error_line(result).startswith("error: database error: ")


def _user_row(tmp_path: Path, email: str) -> tuple[bool, int, str | None]:
    """The user as stored: active, session epoch, and who deactivated them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'firetower.db'}")
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT active, session_epoch, deactivated_by FROM users WHERE email = :email"),
            {"email": email},
        ).one()
    engine.dispose()
    return bool(row[0]), int(row[1]), row[2]


def test_admin_deactivates_and_reactivates_a_user(
    server_env: dict[str, str | None], tmp_path: Path
) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    for email, role in (("lead@example.com", "admin"), ("ops@example.com", "responder")):
        made = run_cli(["admin", "create-user", email, "--role", role], env=server_env)
        assert made.exit_code == 0, made.output
    assert _user_row(tmp_path, "ops@example.com") == (True, 0, None)

    done = run_cli(["admin", "deactivate-user", "Ops@Example.com"], env=server_env)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == (
        "deactivated ops@example.com: console sessions ended, API tokens stopped"
    )
    assert _user_row(tmp_path, "ops@example.com") == (False, 1, "firetower admin")

    back = run_cli(["admin", "reactivate-user", "ops@example.com"], env=server_env)
    assert back.exit_code == 0, back.output
    assert back.stdout.strip() == "reactivated ops@example.com"
    assert _user_row(tmp_path, "ops@example.com") == (True, 1, None)


def test_admin_deactivate_refuses_an_unknown_user_and_the_last_admin(
    server_env: dict[str, str | None], tmp_path: Path
) -> None:
    assert run_cli(["migrate"], env=server_env).exit_code == 0
    unknown = run_cli(["admin", "deactivate-user", "ghost@example.com"], env=server_env)
    assert error_line(unknown) == "error: no user with email ghost@example.com"
    unknown = run_cli(["admin", "reactivate-user", "ghost@example.com"], env=server_env)
    assert error_line(unknown) == "error: no user with email ghost@example.com"
    args = ["admin", "create-user", "lead@example.com", "--role", "admin"]
    assert run_cli(args, env=server_env).exit_code == 0
    last = run_cli(["admin", "deactivate-user", "lead@example.com"], env=server_env)
    assert error_line(last) == (
        "error: lead@example.com is the last active admin; make another user an admin "
        "before deactivating them"
    )
    assert _user_row(tmp_path, "lead@example.com") == (True, 0, None)
