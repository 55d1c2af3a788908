"""Alembic environment: runs on the engine handed over in config.attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import firetower.auth.models
import firetower.catalog.models
import firetower.incidents.models
import firetower.jobs
import firetower.monitors.models
import firetower.signals.models  # noqa: F401  (every table must be imported to be known)
from firetower.db import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    raise RuntimeError("run migrations through `firetower migrate`, which provides the engine")


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign keys, on the raw connection: through SQLAlchemy the statement
    would begin a transaction first, and inside one SQLite ignores the switch, silently."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.execute(f"PRAGMA foreign_keys={int(on)}")
    if dbapi_connection.execute("PRAGMA foreign_keys").fetchone()[0] != int(on):
        raise RuntimeError("SQLite's foreign keys cannot be switched inside a transaction")


def _check_foreign_keys(connection: Connection) -> None:
    """What SQLite would have refused with its foreign keys on, refused at the end instead:
    the migration's transaction rolls back. The check reads the whole database, so a row
    left dangling before (deleted in the sqlite3 shell, where foreign keys are off by
    default) stops the migration too: the message says so, and which rows to mend."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        found = ", ".join(f"{table} row {rowid} -> {parent}" for table, rowid, parent, _ in broken)
        raise RuntimeError(
            "the migration was rolled back and changed nothing: after it, rows of the "
            f"database refer to rows that do not exist ({found}). A migration leaves none, "
            "so such a row was most likely left by a deletion made outside firetower; "
            "delete or mend it, then migrate again"
        )


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite alters most columns by rebuilding the table (alembic's batch mode): copy,
        # drop the old, rename the new. With foreign keys on, dropping the old table deletes
        # (CASCADE), empties (SET NULL) or refuses to drop (no action) every row that
        # references it: a users rebuild took every API token and team membership with it.
        # Off during the migration, as SQLite's own procedure for schema changes says, and
        # every reference checked before a migration commits.
        _sqlite_foreign_keys(connection, on=False)
    try:
        # Begun here, before alembic sees the connection, so that alembic takes it as the
        # caller's and runs every step in it: its own, on SQLite (no transactional DDL to
        # its mind), would commit each step apart, and a failing step would leave the
        # database half-way, at the step before it.
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
                on_version_apply=config.attributes.get("on_version_apply"),
            )
            migration = context.get_context()
            was = migration.get_current_heads()
            context.run_migrations()
            # Only after a change: every `serve` runs this, and the check reads every row.
            if sqlite and migration.get_current_heads() != was:
                _check_foreign_keys(connection)
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)
