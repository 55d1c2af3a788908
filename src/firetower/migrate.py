"""Alembic, driven from code: ``firetower migrate`` and ``serve`` call ``upgrade``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from firetower.db import READ_ONLY_OPTION

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(
    engine: Engine, revision: str = "head", progress: Callable[[str], None] | None = None
) -> None:
    """Apply the pending migrations, in one transaction.

    ``progress`` hears which migrations will run before the first starts, and each one's
    time as it ends: an index build takes longer the more alerts are stored, and on SQLite
    the whole upgrade holds the write lock, so an operator sees what intake waits for.
    """
    config = alembic_config(engine)
    if progress is not None:
        current, pending = pending_migrations(engine, revision)
        if current is None and pending:
            progress(f"creating the database schema (migrations {pending[0][0]}-{pending[-1][0]})")
        elif pending:
            progress(f"upgrading the database from {current}, in one transaction:")
            for name, title in pending:
                progress(f"  {name}: {title}")
            config.attributes["on_version_apply"] = _step_timer(progress)
    command.upgrade(config, revision)


def pending_migrations(
    engine: Engine, revision: str = "head"
) -> tuple[str | None, list[tuple[str, str]]]:
    """The database's revision (None: no schema yet), and the migrations ``upgrade`` would
    apply, oldest first, as (revision, its docstring's first paragraph)."""
    current = current_revision(engine)
    scripts = ScriptDirectory.from_config(alembic_config())
    steps = list(scripts.iterate_revisions(revision, current))
    return current, [(step.revision, (step.doc or "").strip()) for step in reversed(steps)]


def _step_timer(progress: Callable[[str], None]) -> Callable[..., None]:
    """Alembic's ``on_version_apply`` hook: reports each migration's time as it ends."""
    started = time.monotonic()

    def applied(*, step: Any, **_: Any) -> None:
        nonlocal started
        now = time.monotonic()
        progress(f"  {step.up_revision_id} applied in {now - started:.1f} s")
        started = now

    return applied


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None when it has no schema yet."""
    # A read-only connection: on SQLite it must not queue behind a writer's lock.
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrations_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
