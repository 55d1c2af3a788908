"""Storage: engine and session factory, the declarative Base, an aware-UTC datetime type.

SQLite runs in WAL mode with foreign keys on; PostgreSQL through psycopg 3. Nothing is
built at import time: ``Database(settings)`` makes the engine.

On SQLite a write transaction takes the write lock up front (``BEGIN IMMEDIATE``); read
sessions (``Database.read_sessions``) begin deferred, so in WAL mode they never wait for a
writer and never make a writer wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from firetower.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

READ_ONLY_OPTION = "firetower_read_only"
MAX_ID = 2**31 - 1
"""Ids are INTEGER columns: a larger one cannot exist (and SQLite overflows binding it)."""
SETTINGS_INFO = "firetower.settings"
WRITER_LOCK_INFO = "firetower.writer_lock"
WRITER_LOCK_WAIT_SECONDS = 10.0
"""How long a SQLite writer queues in-process before it falls back to the busy timeout."""

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite forgets zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # pysqlite's own transaction handling defers BEGIN; a writer takes the write lock up
    # front so two writers never deadlock upgrading a read lock. Readers stay deferred.
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(
    url: str,
    *,
    static_pool: bool = False,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_timeout_seconds: float = 30.0,
) -> Engine:
    pooling: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_seconds,
    }
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if static_pool or url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(pooling)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", lambda conn, _r: setattr(conn, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No server-side prepared statements: psycopg prepares a query after five runs, and
    # PostgreSQL may then keep one generic plan for it, chosen while a table was small.
    # Without fresh statistics (autovacuum off or behind) the known-alert lookup of intake
    # stayed on a scan of all the integration's alerts: a 1,000,000-alert storm slowed to a
    # few hundred alerts a second. Planned each time, it follows the table's real size.
    return create_engine(
        url, pool_pre_ping=True, connect_args={"prepare_threshold": None}, **pooling
    )


class Database:
    """The engine and the session factory for one app or worker."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        url = settings.resolved_database_url
        if url.startswith("sqlite:///") and engine is None:
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = engine or make_engine(
            url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
        )
        info: dict[str, Any] = {SETTINGS_INFO: settings}
        # SQLite has one writer: writers of this process queue on a lock, in order, instead
        # of polling the file lock with sleeps (busy_timeout), which starves some of them.
        writer_lock = threading.RLock() if self.engine.dialect.name == "sqlite" else None
        self.sessions = sessionmaker(
            self.engine, expire_on_commit=False, info={**info, WRITER_LOCK_INFO: writer_lock}
        )
        """Sessions for writes (``events.unit_of_work``)."""
        self.read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY_OPTION: True}),
            expire_on_commit=False,
            info=info,
        )
        """Sessions for reads: on SQLite they neither wait for nor block the writer."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only-by-habit session; writes go through ``events.unit_of_work``."""
        with self.read_sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
