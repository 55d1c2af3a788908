"""Storage: engine and session factory, the declarative Base, an aware-UTC datetime type.

SQLite runs in WAL mode with foreign keys on; PostgreSQL through psycopg 3. Nothing is
built at import time: ``Database(settings)`` makes the engine.

On SQLite a write transaction takes the write lock up front (``BEGIN IMMEDIATE``); read
sessions (``Database.read_sessions``) begin deferred, so in WAL mode they never wait for a
writer and never make a writer wait. Writers queue for SQLite's one write lock on a
``WriterLock`` first, so that they take turns in order instead of polling, and they never
copy the write-ahead log back into the database themselves: a ``WalCheckpointer`` thread
does that beside them.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from firetower.settings import Settings

# Python's sqlite3 binds None and bool (not exact ints) through its adapter lookup, which
# tries the registry and then two attribute lookups per value: for an alert row of a dozen
# None and bool columns, binding cost as much as SQLite's insert. A registered adapter is
# found on the first step; for None it is a C function that gives None back (an empty
# dict's ``get``), so that binding NULL runs no Python code. Both keep what is stored:
# NULL, and 0 or 1 as SQLAlchemy's Boolean writes them. (Process-wide, for every sqlite3
# connection; nothing else here registers adapters for these types.)
_NO_ADAPTATION: dict[None, None] = {}
sqlite3.register_adapter(type(None), cast(Callable[[None], None], _NO_ADAPTATION.get))
sqlite3.register_adapter(bool, int)

log = structlog.get_logger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

READ_ONLY_OPTION = "firetower_read_only"
BOUNDED_WRITES_OPTION = "firetower_bounded_writes"
"""Set on the connection of a write transaction whose statements each change a bounded
number of pages (a group commit's, see ``begin_bounded_writes``): on SQLite it keeps its
statement journals in memory.

A statement that may fail half-way (a multi-row INSERT, one with a trigger or a foreign
key) saves the pages it changes in a statement journal. Past 64 KiB SQLite spilled that
to a temporary file: in a storm every INSERT of 100 alerts wrote more pages there than to
the write-ahead log, and created and deleted the file, all inside the write turn. Other
transactions keep SQLite's default, a file, since one big statement (a migration's
UPDATE, a retention DELETE) would journal a whole table."""
MAX_ID = 2**31 - 1
"""Ids are INTEGER columns: a larger one cannot exist (and SQLite overflows binding it)."""
SETTINGS_INFO = "firetower.settings"
WRITER_LOCK_INFO = "firetower.writer_lock"
WRITER_LOCK_WAIT_SECONDS = 10.0
"""How long a SQLite writer queues in-process before it falls back to the busy timeout."""

JSONType = JSON().with_variant(JSONB(), "postgresql")


def to_utc(value: datetime) -> datetime:
    """An aware time as the same instant in UTC, as every time column stores it; a naive
    one is refused (it has no zone to convert from). Raises OverflowError for a time that
    leaves the years 1 to 9999 once in UTC."""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: use an aware UTC datetime")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite forgets zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = to_utc(value)
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
    # Commits never checkpoint: WalCheckpointer does it outside the write lock.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


_TEMP_STORE_INFO = "firetower.temp_store"


def begin_bounded_writes(session: Session) -> None:
    """Begin ``session``'s transaction as one of bounded writes (``BOUNDED_WRITES_OPTION``).

    An option of the connection, not of an engine made for it: the session's bind stays the
    database's engine, which intake's per-engine caches are keyed by."""
    session.connection(execution_options={BOUNDED_WRITES_OPTION: True})


def _sqlite_begin(connection: Connection) -> None:
    # pysqlite's own transaction handling defers BEGIN; a writer takes the write lock up
    # front so two writers never deadlock upgrading a read lock. Readers stay deferred.
    options = connection.get_execution_options()
    # SQLite reads temp_store when a write transaction begins; switched only on a change.
    temp_store = "MEMORY" if options.get(BOUNDED_WRITES_OPTION, False) else "DEFAULT"
    if connection.info.get(_TEMP_STORE_INFO, "DEFAULT") != temp_store:
        connection.exec_driver_sql(f"PRAGMA temp_store={temp_store}")
        connection.info[_TEMP_STORE_INFO] = temp_store
    connection.exec_driver_sql(
        "BEGIN" if options.get(READ_ONLY_OPTION, False) else "BEGIN IMMEDIATE"
    )


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


def _lock_file(engine: Engine) -> str | None:
    """Where a SQLite database's writers take turns: beside its file (none in memory)."""
    path = engine.url.database
    if not path or path == ":memory:" or engine.url.query.get("mode") == "memory":
        return None
    return f"{path}.writer"


class WriterLock:
    """The turn to write a SQLite database, for the threads of this process and for every
    other process on the same file (``serve --processes``, a separate ``worker``).

    SQLite lets one writer in at a time and makes the others poll with growing sleeps (its
    busy timeout): under load some wait for seconds while others get in again and again.
    Here the waiters block instead, on a re-entrant lock between threads and on an
    exclusive ``flock`` of ``<database>.writer`` between processes, and each is woken the
    moment the writer before it is done. The kernel drops the ``flock`` of a process that
    dies, so a crashed writer never holds the turn.

    Only the in-process wait has a timeout (``acquire``'s); a writer of another process
    holds the turn for one transaction, which the group commit keeps short.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        """The lock file; None (an in-memory database): threads of this process only."""
        self.first_write: Callable[[], None] | None = None
        """Called when a thread of this process first takes the turn (starts the checkpointer)."""
        self._threads = threading.RLock()
        self._depth = 0  # re-entries of the holding thread
        self._fd: int | None = None
        self._fd_pid = 0

    def _file(self) -> int:
        # Opened per process: a forked child shares its parent's open file, and with it
        # the parent's flock, so it opens its own.
        if self._fd is None or self._fd_pid != os.getpid():
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fd_pid = os.getpid()
        return self._fd

    def acquire(self, timeout: float = -1) -> bool:
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._depth == 0 and self.path is not None:
            try:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise
            if self.first_write is not None:
                self.first_write()
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self.path is not None:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        self._threads.release()


WAL_CHECKPOINT_INTERVAL_SECONDS = 0.5
WAL_RESTART_FRAMES = 32_768
"""Once the log holds this many pages (128 MiB of 4 KiB pages), it is started over.

A restart holds the writers' turn for about 13 ms plus 4 µs per page written since the
pass before it (two syncs and the copy). At 16 MiB, a storm of 35,000 alerts a second
restarted the log at every pass of both processes' checkpointers: 4% of the turn, every
writer waiting. At 128 MiB it restarts about once a second."""
WAL_RESTART_BUSY_MS = 50
"""How long a restart waits for readers of the old log while it holds the writers' turn."""


class WalCheckpointer:
    """Copies a SQLite write-ahead log back into the database beside the writers.

    SQLite's automatic checkpoint runs in the commit that crosses 1,000 pages, inside the
    write lock, so every writer waits while pages are copied and synced: under a storm that
    was a fifth of intake's time. Here commits never checkpoint (``wal_autocheckpoint=0``);
    a thread of each writing process copies what is committed every half second without
    the lock (``PASSIVE``), in SQLite's C code, beside the Python that writes. Once the log is
    long it takes the writers' turn for a moment to copy the last pages and start the log
    over (``RESTART``), so the log stays short however long the storm. A restart that
    readers hold up gives up after ``WAL_RESTART_BUSY_MS`` and is tried on the next pass.
    """

    def __init__(self, database_path: str, writer_lock: WriterLock) -> None:
        self.database_path = database_path
        self.writer_lock = writer_lock
        self._started_pid = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None

    def ensure_running(self) -> None:
        """Start the thread in this process, once (a forked child starts its own)."""
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._stop = threading.Event()
        self._connection = None
        self._thread = threading.Thread(
            target=self._run, name="firetower-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WAL_CHECKPOINT_INTERVAL_SECONDS):
            try:
                self.checkpoint()
            except sqlite3.Error as error:  # the next pass tries again; nothing is lost
                log.warning(
                    "could not copy SQLite's write-ahead log into the database file; "
                    "nothing is lost, trying again in half a second",
                    error=str(error),
                )

    def checkpoint(self) -> tuple[int, int]:
        """One pass; returns the log's pages and how many are in the database now."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.database_path, isolation_level=None, check_same_thread=False
            )
            self._connection.execute(f"PRAGMA busy_timeout={WAL_RESTART_BUSY_MS}")
        _busy, pages, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= WAL_RESTART_FRAMES and self.writer_lock.acquire(timeout=10):
            try:
                _busy, pages, copied = self._connection.execute(
                    "PRAGMA wal_checkpoint(RESTART)"
                ).fetchone()
            finally:
                self.writer_lock.release()
        return pages, copied

    def close(self) -> None:
        """Stop the thread and close its connection (a later write starts them again)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._thread = None
        self._started_pid = 0
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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
        # SQLite has one writer: writers queue on a lock, in order, instead of polling the
        # file lock with sleeps (busy_timeout), which starves some of them.
        writer_lock = (
            WriterLock(_lock_file(self.engine)) if self.engine.dialect.name == "sqlite" else None
        )
        self.writer_lock = writer_lock
        """SQLite's turn to write, taken by every write transaction (None on PostgreSQL)."""
        self.checkpointer: WalCheckpointer | None = None
        if writer_lock is not None and writer_lock.path is not None:
            self.checkpointer = WalCheckpointer(str(self.engine.url.database), writer_lock)
            writer_lock.first_write = self.checkpointer.ensure_running
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
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()
