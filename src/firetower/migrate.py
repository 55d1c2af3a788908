"""Alembic, driven from code: ``firetower migrate`` and ``serve`` call ``upgrade``."""

from __future__ import annotations

from pathlib import Path

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


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrations_current(engine: Engine) -> bool:
    # A read-only connection: on SQLite it must not queue behind a writer's lock.
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current == head_revision()
