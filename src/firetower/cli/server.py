"""Commands that run on the server machine: serve, worker, migrate, admin.

The server's modules (SQLAlchemy, Alembic, the domains) are imported inside the commands,
so that the client commands sharing this ``firetower`` executable start quickly.
"""

from __future__ import annotations

import functools
import secrets
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from firetower.auth.schemas import Role
from firetower.cli.output import console, fail, print_json
from firetower.errors import ConfigError, DomainError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from firetower.db import Database
    from firetower.settings import Settings

admin_app = typer.Typer(
    help="Administer users and tokens on this server's database.", no_args_is_help=True
)
BOOTSTRAP_EMAIL = "admin@example.com"
P = ParamSpec("P")
R = TypeVar("R")


def validation_message(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``field: message`` (one line)."""
    errors = exc.errors()
    if not errors:
        return "invalid input"
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    return f"{field}: {first['msg']}" if field else str(first["msg"])


def database_message(exc: SQLAlchemyError) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    orig = getattr(exc, "orig", None)
    if "no such table" in first or type(orig).__name__ == "UndefinedTable":
        return f"the database has no firetower schema yet; run `firetower migrate` ({first})"
    return f"database error: {first}"


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the failures a server command can meet into one line on stderr, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pydantic import ValidationError
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return command(*args, **kwargs)
        except DomainError as exc:
            fail(exc.detail)
        except ValidationError as exc:
            fail(validation_message(exc))
        except SQLAlchemyError as exc:
            fail(database_message(exc))
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"cannot use{where}: {exc.strerror or exc}")

    return wrapper


def _database() -> tuple[Settings, Database]:
    from firetower.db import Database
    from firetower.logs import configure_logging
    from firetower.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    return settings, Database(settings)


@one_line_errors
def migrate() -> None:
    """Bring the database schema up to date."""
    from firetower.migrate import upgrade

    _settings, database = _database()
    upgrade(database.engine, progress=console.print)
    console.print(f"database migrated: {database.engine.url.render_as_string(hide_password=True)}")


def _bootstrap_admin(database: Database) -> tuple[str, str] | None:
    """On an empty database, make the first admin with a one-time password."""
    from sqlalchemy import func, select

    from firetower.auth import service as auth_service
    from firetower.auth.models import User
    from firetower.auth.schemas import UserCreate
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    with unit_of_work(database.sessions, None) as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        password = secrets.token_urlsafe(12)
        auth_service.create_user(
            session,
            Actor.system(),
            UserCreate(email=BOOTSTRAP_EMAIL, name="Admin", role=Role.admin, password=password),
        )
        return BOOTSTRAP_EMAIL, password


@one_line_errors
def serve(
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Leave jobs to `firetower worker` processes.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Overrides FIRETOWER_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides FIRETOWER_PORT.")] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Overrides FIRETOWER_WEB_PROCESSES (default 1)."),
    ] = None,
) -> None:
    """Migrate, then serve the API and console (with an embedded worker unless --no-worker).

    With several processes each listens on the port itself and they share the database;
    each runs its own embedded worker (jobs are claimed, never run twice).
    """
    import uvicorn

    from firetower.app import create_app, tune_garbage_collector
    from firetower.migrate import upgrade

    settings, database = _database()
    processes = processes or settings.web_processes
    upgrade(database.engine, progress=console.print)
    host = host or settings.host
    port = port or settings.port
    first = _bootstrap_admin(database)
    url = settings.public_url or f"http://{host}:{port}"
    console.print(f"firetower console: {url}/")
    if first:
        console.print(
            f"first admin login (shown once): {first[0]} / {first[1]}\n"
            f"change it with: firetower admin set-password {first[0]}"
        )
    if processes > 1:
        from firetower.cli.processes import supervise

        database.dispose()  # the processes open their own connections
        supervise(processes, host, port, embedded_worker=not no_worker)
        return
    app = create_app(
        settings, database=database, start_worker=not no_worker and settings.embedded_worker
    )
    tune_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True)


@one_line_errors
def worker() -> None:
    """Run a job worker alone (next to `serve --no-worker`, or several on PostgreSQL)."""
    from firetower.app import build_runtime

    settings, database = _database()
    runtime = build_runtime(settings, database)
    from firetower.jobs import Worker

    job_worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    stop = threading.Event()

    def _stop(*_: object) -> None:
        job_worker.stop(0)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    job_worker.run_forever()


@admin_app.command("create-user")
@one_line_errors
def create_user(
    email: str,
    role: Annotated[Role, typer.Option(help="viewer, responder or admin.")] = Role.responder,
    name: Annotated[str, typer.Option()] = "",
    password: Annotated[
        str | None, typer.Option(help="At least 12 characters; omit to generate one.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user who can log in to the console."""
    from pydantic import ValidationError

    from firetower.auth import service as auth_service
    from firetower.auth.schemas import UserCreate
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    _settings, database = _database()
    chosen = password or secrets.token_urlsafe(12)
    try:
        with unit_of_work(database.sessions, None) as session:
            user = auth_service.create_user(
                session,
                Actor.system("firetower admin"),
                UserCreate(email=email, name=name, role=role, password=chosen),
            )
            result = {"id": user.id, "email": user.email, "role": user.role}
    except DomainError as exc:
        fail(exc.detail)
    except ValidationError as exc:
        fail(validation_message(exc))
    if json_output:
        print_json({**result, "password": None if password else chosen})
    else:
        console.print(f"created {result['role']} {result['email']}")
        if not password:
            console.print(f"password (shown once): {chosen}")


@admin_app.command("set-password")
@one_line_errors
def set_password(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a user's console password."""
    from firetower.auth import service as auth_service
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    _settings, database = _database()
    try:
        with unit_of_work(database.sessions, None) as session:
            auth_service.set_password(session, Actor.system("firetower admin"), email, password)
    except DomainError as exc:
        fail(exc.detail)
    console.print(f"password changed for {email}")


@admin_app.command("create-token")
@one_line_errors
def create_token(
    user: Annotated[str, typer.Option("--user", help="The email of the token's owner.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    role: Annotated[
        Role | None, typer.Option(help="At most the user's role; defaults to it.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API token; the secret is printed once and never stored."""
    from firetower.auth import service as auth_service
    from firetower.auth.schemas import TokenCreate
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    _settings, database = _database()
    try:
        with unit_of_work(database.sessions, None) as session:
            token, secret = auth_service.create_token(
                session, Actor.system("firetower admin"), user, TokenCreate(name=name, role=role)
            )
            result = {"id": token.id, "name": token.name, "role": token.role, "token": secret}
    except DomainError as exc:
        fail(exc.detail)
    if json_output:
        print_json(result)
    else:
        typer.echo(secret)


@admin_app.command("revoke-token")
@one_line_errors
def revoke_token(token_id: int) -> None:
    """Revoke an API token by id."""
    from firetower.auth import service as auth_service
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    _settings, database = _database()
    try:
        with unit_of_work(database.sessions, None) as session:
            auth_service.revoke_token(session, Actor.system("firetower admin"), token_id)
    except DomainError as exc:
        fail(exc.detail)
    console.print(f"token {token_id} revoked")


def _set_active(email: str, active: bool) -> str:
    """Deactivate or reactivate the user with this email; their email as stored."""
    from firetower.auth import service as auth_service
    from firetower.auth.service import Actor
    from firetower.events import unit_of_work

    _settings, database = _database()
    with unit_of_work(database.sessions, None) as session:
        user = auth_service.get_user_by_email(session, email)
        auth_service.set_active(session, Actor.system("firetower admin"), user, active)
        return user.email


@admin_app.command("deactivate-user")
@one_line_errors
def deactivate_user(email: str) -> None:
    """Deactivate a user: their console sessions end and their API tokens stop working."""
    shown = _set_active(email, False)
    console.print(f"deactivated {shown}: console sessions ended, API tokens stopped")


@admin_app.command("reactivate-user")
@one_line_errors
def reactivate_user(email: str) -> None:
    """Let a deactivated user log in and use their API tokens again."""
    shown = _set_active(email, True)
    console.print(f"reactivated {shown}")
