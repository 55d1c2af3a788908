"""Alerts as intake handles them: plain rows, read and written a batch at a time.

Intake is the one write path that must keep up with a storm (tens of thousands of alerts a
second on SQLite). ORM objects cost more to build, track and flush than everything else an
alert needs, so intake works on ``AlertRow`` values and writes a batch with a few statements
per kind of change: INSERTs of many rows each for new alerts and an UPDATE per set of
changed columns for changed ones. On SQLite the values are encoded here once instead of per
column by the type system; on PostgreSQL a statement takes all its rows as one JSON array
of records.

The encoding matches what the ORM column types store (``db.UTCDateTime``, ``db.JSONType``),
so rows written here read back through the ORM unchanged, and on SQLite known rows are
decoded here as those types would (tests/test_signals_rows.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import Any

import pydantic_core
from sqlalchemy import ColumnClause, Connection, TextualSelect, column, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from firetower.db import to_utc
from firetower.metrics import ALERT_KEY_FOLD_SECONDS
from firetower.signals.models import Alert


@dataclass(slots=True, eq=False)
class AlertRow:
    """One alert's columns. ``id`` is None until the row is inserted and its id read back."""

    integration_id: int
    fingerprint: str
    status: str
    title: str
    severity: str
    service_name: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    starts_at: datetime | None
    ends_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime
    count: int = 1
    incident_id: int | None = None
    silenced: bool = False
    group_key: str = ""
    state_changes: list[str] = field(default_factory=list)
    flapping: bool = False
    inhibited: bool = False
    inhibited_by: int | None = None
    inhibit_rule: str | None = None
    routed_by: str | None = None
    routing_action: str | None = None
    on_clear: str | None = None
    attached_at: datetime | None = None
    status_by: str | None = None
    id: int | None = None
    stored: bool = False
    """The row exists in the database (read from it, or inserted by ``write``)."""
    dirty: bool = False
    """A stored row changed since it was read or last written."""
    written: tuple[Any, ...] | None = None
    """Its values as read or last updated, in ``COLUMNS`` order: an update writes only the
    columns that differ. None (a row this process inserted): an update writes them all."""


COLUMNS = tuple(
    f.name for f in fields(AlertRow) if f.name not in ("id", "stored", "dirty", "written")
)
"""The alert columns intake writes, in one fixed order (``id`` is the database's)."""
_JSON_AT = [COLUMNS.index(n) for n in ("labels", "annotations", "state_changes")]
_TIMES_AT = [
    COLUMNS.index(n)
    for n in ("starts_at", "ends_at", "first_seen_at", "last_seen_at", "attached_at")
]
_BOOLS_AT = [COLUMNS.index(n) for n in ("silenced", "flapping", "inhibited")]
_read_columns = attrgetter(*COLUMNS)
_TIME_NAMES = tuple(COLUMNS[place] for place in _TIMES_AT)
_read_times = attrgetter(*_TIME_NAMES)
_KIND_AT: list[str | None] = [None] * len(COLUMNS)
for _place in _JSON_AT:
    _KIND_AT[_place] = "json"
for _place in _TIMES_AT:
    _KIND_AT[_place] = "time"
for _place in _BOOLS_AT:
    _KIND_AT[_place] = "bool"


def _to_json(value: Any) -> bytes:
    try:
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:
        # Text intake now refuses (a lone surrogate) may sit in rows stored before: the
        # ORM's own serializer wrote it escaped, and so does this one.
        return json.dumps(value).encode()


if set(COLUMNS) | {"id"} != set(Alert.__table__.columns.keys()):  # a column added to one only
    raise RuntimeError("AlertRow and the alerts table disagree on their columns")
if fields(AlertRow)[len(COLUMNS)].name != "id":  # ``load`` makes rows from positions
    raise RuntimeError("AlertRow's fields must start with COLUMNS, then id")


def load(session: Session, integration_id: int, fingerprints: Sequence[str]) -> list[AlertRow]:
    """The stored alerts of one integration with these fingerprints (a few queries)."""
    dialect = session.get_bind().dialect.name
    listed = {
        "integration_id": integration_id,
        "fingerprints": _fingerprints(dialect, fingerprints),
    }
    return _loaded(session, dialect, _KNOWN_READS[dialect], listed)


def load_many(session: Session, wanted: Mapping[int, Sequence[str]]) -> list[AlertRow]:
    """The stored alerts with these fingerprints of several integrations (``wanted`` maps an
    integration id to its fingerprints), in one query: a group of Events v2 requests over
    many routing keys read them integration by integration, a third of its write turn."""
    if len(wanted) == 1:  # one integration's statement seeks by fingerprint alone: cheaper
        [(integration_id, fingerprints)] = wanted.items()
        return load(session, integration_id, fingerprints)
    pairs = [(integration_id, f) for integration_id, fs in wanted.items() for f in fs]
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        listed: dict[str, Any] = {"keys": json.dumps(pairs)}
    else:
        listed = {
            "integration_ids": [integration_id for integration_id, _ in pairs],
            "fingerprints": [f for _, f in pairs],
        }
    return _loaded(session, dialect, _KNOWN_MANY_READS[dialect], listed)


def _loaded(
    session: Session, dialect: str, statement: Any, listed: dict[str, Any]
) -> list[AlertRow]:
    """Rows from one of the known-alert reads (``statement``, this dialect's), as
    ``AlertRow``s."""
    if dialect == "sqlite":
        read: Iterable[Sequence[Any]] = map(
            _decoded_sqlite, session.connection().execute(statement, listed)
        )
    else:
        read = session.execute(statement, listed)
    found: list[AlertRow] = []
    for values in read:
        row = AlertRow(*values)  # its fields start with COLUMNS, then id
        row.labels = row.labels or {}
        row.annotations = row.annotations or {}
        row.state_changes = row.state_changes or []
        row.stored = True
        row.written = _read_columns(row)
        found.append(row)
    return found


_TABLE = Alert.__table__


def _fingerprints(dialect: str, fingerprints: Iterable[str]) -> Any:
    """The fingerprints as ONE parameter: a JSON array that SQLite's ``json_each`` reads, a
    PostgreSQL array. An ``IN (...)`` of one parameter each was rendered again for every
    batch (and is bounded by the driver's parameter limits)."""
    return json.dumps(list(fingerprints)) if dialect == "sqlite" else list(fingerprints)


def _keys_listed(dialect: str, table: str, *names: str) -> str:
    """These columns of one key table's rows for the fingerprints asked for."""
    listed = (
        "fingerprint IN (SELECT value FROM json_each(:fingerprints))"
        if dialect == "sqlite"
        else "fingerprint = ANY(:fingerprints)"
    )
    return (
        f"SELECT {', '.join(names)} FROM {table} "  # noqa: S608 - constant names
        f"WHERE integration_id = :integration_id AND {listed}"
    )


KEY_TABLES = ("alert_keys", "alert_keys_folded", "alert_keys_merged")
"""The levels of alert keys, newest first: a key is in exactly one of them."""


def _all_key_tables(dialect: str, *names: str) -> str:
    """These columns of the keys asked for, from every level of keys."""
    return " UNION ALL ".join(_keys_listed(dialect, table, *names) for table in KEY_TABLES)


def _pairs_listed(dialect: str, table: str) -> str:
    """The alert ids of one key table's rows for the (integration, fingerprint) pairs asked
    for, each pair a seek of the table's primary key."""
    wanted = (
        "json_each(:keys) AS wanted CROSS JOIN {table} AS k "
        "ON k.integration_id = json_extract(wanted.value, '$[0]') "
        "AND k.fingerprint = json_extract(wanted.value, '$[1]')"
        if dialect == "sqlite"
        else "unnest(CAST(:integration_ids AS integer[]), CAST(:fingerprints AS varchar[])) "
        "AS wanted (integration_id, fingerprint) "
        "JOIN {table} AS k USING (integration_id, fingerprint)"
    )
    return f"SELECT k.alert_id FROM {wanted.format(table=table)}"  # noqa: S608 - constant names


def _by_id_in(ids: str, *names: str, lock: bool = False) -> TextualSelect:
    sql = (
        f"SELECT {', '.join(names)} FROM alerts "  # noqa: S608 - constant names
        f"WHERE id IN ({ids}) ORDER BY id" + (" FOR UPDATE" if lock else "")
    )
    return text(sql).columns(*(_TABLE.c[name] for name in names))


def _by_fingerprint(dialect: str, *names: str, lock: bool = False) -> TextualSelect:
    return _by_id_in(_all_key_tables(dialect, "alert_id"), *names, lock=lock)


def _by_pairs(dialect: str, *names: str, lock: bool = False) -> TextualSelect:
    pairs = " UNION ALL ".join(_pairs_listed(dialect, table) for table in KEY_TABLES)
    return _by_id_in(pairs, *names, lock=lock)


# Locked on PostgreSQL (in id order, so two batches never lock crosswise): a row's changed
# columns are written back from what was read (a count plus one), so a concurrent request
# must not change it between read and write. SQLite's writers are serialized by its write
# lock already.
KNOWN = {
    "sqlite": _by_fingerprint("sqlite", *COLUMNS, "id"),
    "postgresql": _by_fingerprint("postgresql", *COLUMNS, "id", lock=True),
}
KNOWN_MANY = {
    "sqlite": _by_pairs("sqlite", *COLUMNS, "id"),
    "postgresql": _by_pairs("postgresql", *COLUMNS, "id", lock=True),
}
_UNTYPED: list[ColumnClause[Any]] = [column(name) for name in (*COLUMNS, "id")]
"""SQLite's known rows are decoded by ``_decoded_sqlite``, not the column types. Declared
columns let SQLAlchemy keep the result's description with the cached statement: read from
each cursor (``exec_driver_sql``), it cost more than the statement in a group of Events v2
requests over many routing keys."""
_KNOWN_READS = {**KNOWN, "sqlite": text(str(KNOWN["sqlite"])).columns(*_UNTYPED)}
_KNOWN_MANY_READS = {**KNOWN_MANY, "sqlite": text(str(KNOWN_MANY["sqlite"])).columns(*_UNTYPED)}


def _decoded_sqlite(values: Sequence[Any]) -> list[Any]:
    """A known row as SQLite's driver gives it, decoded as the column types would
    (``db.JSONType``, ``db.UTCDateTime``, Boolean). Through the types, decoding took a third
    of the instructions of a batch of repeats in the write turn: the UTC zone alone, put on
    with ``replace``, cost six times the parse that reads it with the time."""
    decoded = list(values)
    for place in _JSON_AT:
        if decoded[place] is not None:  # pydantic-core's parser: a sixth of json.loads' time
            decoded[place] = pydantic_core.from_json(decoded[place])
    for place in _TIMES_AT:
        if decoded[place] is not None:  # stored as naive UTC text (UTCDateTime on SQLite)
            decoded[place] = datetime.fromisoformat(decoded[place] + "+00:00")
    for place in _BOOLS_AT:
        decoded[place] = bool(decoded[place])
    return decoded


_IDS = {
    dialect: text(_all_key_tables(dialect, "fingerprint", "alert_id AS id")).columns(
        _TABLE.c.fingerprint, _TABLE.c.id
    )
    for dialect in KNOWN
}
"""Built once: building a statement per request costs more than running it."""

FOLD_EVERY_ALERTS = 10_000
"""On SQLite, ``alert_keys`` is folded into ``alert_keys_folded`` each time new alerts' ids
pass a multiple of this, so about every this many new alerts (see ``models.AlertKey``).
Smaller, and each fold rewrites the folded table's pages for fewer alerts; larger, and a
commit's new keys share fewer of the unfolded table's pages. A fold of 10,000 keys took
about 40 ms with 250,000 alerts stored (``bench.sqlite_ceiling``)."""
FOLD_KEYS = (
    "INSERT INTO alert_keys_folded (integration_id, fingerprint, alert_id) "
    "SELECT integration_id, fingerprint, alert_id FROM alert_keys "
    "ORDER BY integration_id, fingerprint",  # the table's own order: no sort
    "DELETE FROM alert_keys",
)


def fold_due(first_id: int, last_id: int) -> bool:
    """Whether inserting alerts ``first_id`` to ``last_id`` passed a multiple of
    ``FOLD_EVERY_ALERTS``. Decided from the ids, not by counting the unfolded keys: the count
    walked the whole table and cost 3% of intake's transaction."""
    return last_id // FOLD_EVERY_ALERTS > (first_id - 1) // FOLD_EVERY_ALERTS


MERGE_FROM_KEYS = 100_000
"""On SQLite, once ``alert_keys_folded`` holds this many keys, each fold also merges a slice
of it into ``alert_keys_merged``, so that a fold touches the pages of a table of about this
size, not of every key stored. A merge's slice is a run of keys in key order, so it lands in
a narrow range of the merged table: about ``FOLD_EVERY_ALERTS / MERGE_FROM_KEYS`` of its
pages. A fold writes about this many keys' pages and a merge that fraction of the merged
table's, so the larger the store, the larger the best threshold (about the square root of
``FOLD_EVERY_ALERTS`` times the keys stored). ``bench.sqlite_ceiling``, scattered keys, 100,000
against 500,000: 72,372-73,586 against 69,723-71,261 alerts/s over 8 s (about 600,000
stored), 59,677-63,002 against 51,153-52,409 over 60 s (3.1-3.8 million)."""
MERGE_AT_MOST_FOLDS = 4
"""A merge takes at most this many folds' worth of keys, so a folded table well over the
threshold (one kept under a larger threshold before an upgrade) drains over several folds
instead of holding the write turn for one long merge."""
_CURSOR = "SELECT integration_id, fingerprint FROM alert_key_merge_cursor WHERE id = 1"
_FIRST = (0, "")
"""Before every key: integration ids start at 1."""
_SLICE_END = (
    "SELECT integration_id, fingerprint FROM alert_keys_folded "
    "WHERE (integration_id, fingerprint) > (?, ?) "
    "ORDER BY integration_id, fingerprint LIMIT 1 OFFSET ?"
)
_IN_SLICE = "(integration_id, fingerprint) > (?, ?) AND (integration_id, fingerprint) <= (?, ?)"
_TO_END = "(integration_id, fingerprint) > (?, ?)"
_MERGE = (
    "INSERT INTO alert_keys_merged (integration_id, fingerprint, alert_id) "
    "SELECT integration_id, fingerprint, alert_id FROM alert_keys_folded WHERE {} "
    "ORDER BY integration_id, fingerprint"
)
_UNMERGED = "DELETE FROM alert_keys_folded WHERE {}"
_MOVE_CURSOR = (
    "INSERT INTO alert_key_merge_cursor (id, integration_id, fingerprint) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET integration_id = excluded.integration_id, "
    "fingerprint = excluded.fingerprint"
)
Execute = Callable[[str, tuple[Any, ...]], Any]
"""Runs one statement with positional parameters and returns a cursor: a SQLAlchemy
connection's ``exec_driver_sql``, or a ``sqlite3`` connection's ``execute`` (benchmarks)."""


def fold_keys(execute: Execute) -> None:
    """Move the unfolded alert keys into ``alert_keys_folded``, in key order, then, if that
    holds ``MERGE_FROM_KEYS`` keys or more, a slice of it into ``alert_keys_merged`` (SQLite
    only): as many keys as were folded, plus any excess (up to ``MERGE_AT_MOST_FOLDS``
    folds' worth in all), from where the last merge stopped
    (``alert_key_merge_cursor``), starting over after the last key.

    Slices taken in turn sweep the keys, so each starts where the folded keys have gathered
    longest, and spans about ``FOLD_EVERY_ALERTS / MERGE_FROM_KEYS`` of them (slices from
    random starts sometimes spanned several times that). Runs inside a write transaction,
    so no alert is added meanwhile.
    """
    with ALERT_KEY_FOLD_SECONDS.time():
        for statement in FOLD_KEYS:
            execute(statement, ())
        (folded,) = execute("SELECT count(*) FROM alert_keys_folded", ()).fetchone()
        if folded < MERGE_FROM_KEYS:
            return
        start = tuple(execute(_CURSOR, ()).fetchone() or _FIRST)
        excess = folded - MERGE_FROM_KEYS
        size = min(FOLD_EVERY_ALERTS + excess, MERGE_AT_MOST_FOLDS * FOLD_EVERY_ALERTS)
        end = execute(_SLICE_END, (*start, size - 1)).fetchone()
        where, bounds = (_TO_END, start) if end is None else (_IN_SLICE, (*start, *end))
        execute(_MERGE.format(where), bounds)
        execute(_UNMERGED.format(where), bounds)
        execute(_MOVE_CURSOR, tuple(end) if end is not None else _FIRST)


_EMPTY_JSON: dict[type, str] = {list: "[]", dict: "{}"}


class Encoder:
    """Turns a row into the driver's parameters, the way the ORM's column types would.

    Values are encoded once per object, remembered by identity (a batch's rows share a few
    objects); the encoder keeps each object alive, so an identity is never reused while it
    remembers. Times are also remembered by value: each alert of a batch parses its own
    ``startsAt``, mostly the same instant, and hashing one costs a third of encoding it.
    ``prepare`` encodes signals' values ahead, before the write lock is taken; an object
    must not change once encoded (intake replaces labels, never edits them).
    """

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self._encoded: dict[int, tuple[object, Any]] = {}
        self._times: dict[datetime, Any] = {}

    def prepare(self, signals: Iterable[Any]) -> None:
        """Encode the labels, annotations and times of ``Signal`` values now (SQLite: on
        PostgreSQL new rows go as JSON records, serialized in one call by ``write``)."""
        if not self.sqlite:
            return
        for signal in signals:
            self.json(signal.labels)
            self.json(signal.annotations)
            if signal.starts_at is not None:
                self.time(signal.starts_at)
            if signal.ends_at is not None:
                self.time(signal.ends_at)

    def json(self, value: Any) -> str:
        if not value and type(value) in _EMPTY_JSON:  # most rows' state_changes: a new []
            return _EMPTY_JSON[type(value)]
        known = self._encoded.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        encoded = _to_json(value).decode()
        self._encoded[id(value)] = (value, encoded)
        return encoded

    def time(self, value: datetime) -> Any:
        known = self._encoded.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        encoded = self._times.get(value)  # equal aware times are the same instant
        if encoded is not None:
            self._encoded[id(value)] = (value, encoded)
            return encoded
        if not self.sqlite:
            encoded = to_utc(value)
        else:
            # SQLAlchemy's SQLite DATETIME text: UTC, no zone, always six fractional
            # digits, so stored values compare as text in time order.
            text = value.isoformat(" ", timespec="microseconds")
            if text.endswith("+00:00"):  # already UTC, as senders' times mostly are
                encoded = text[:-6]
            else:  # a naive time too, which to_utc refuses
                encoded = to_utc(value).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
        self._encoded[id(value)] = (value, encoded)
        self._times[value] = encoded
        return encoded

    def column(self, values: Sequence[Any], place: int) -> Sequence[Any]:
        """One column's values (rows' values at ``place`` in ``COLUMNS``), encoded.

        Written out for speed: it runs for every new row, in the write turn for a batch
        not settled ahead. A column at a time, most columns need no work at all. Values
        encoded ahead are looked up here, not through a call each; the booleans are bound
        as the 0 and 1 that SQLAlchemy's Boolean stores, since the driver would otherwise
        call an adapter for each. SQLite only: PostgreSQL's rows go as JSON records.
        """
        kind = _KIND_AT[place]
        if kind is None:
            return values
        if kind == "bool":
            return [1 if value else 0 for value in values]
        encoded = self._encoded
        encode = self.json if kind == "json" else self.time
        return [
            None
            if value is None and kind == "time"
            else known[1]
            if (known := encoded.get(id(value))) is not None and known[0] is value
            else encode(value)
            for value in values
        ]

    def values_at(self, values: tuple[Any, ...], places: tuple[int, ...]) -> list[Any]:
        """``values`` (a row's, in ``COLUMNS`` order) at these places, encoded as ``column``
        encodes them: for an update, only the columns that changed (SQLite only)."""
        encoded: list[Any] = []
        for place in places:
            value = values[place]
            kind = _KIND_AT[place]
            if kind == "json":
                encoded.append(self.json(value))
            elif kind == "time" and value is not None:
                encoded.append(self.time(value))
            elif kind == "bool":
                encoded.append(1 if value else 0)
            else:
                encoded.append(value)
        return encoded


def _record_fields(places: Iterable[int]) -> str:
    """These columns (places in ``COLUMNS``) as the fields of PostgreSQL's JSON records, each
    of its column's type. Read from the model when first needed: a foreign key's type is
    known once the table it refers to is loaded."""
    dialect = postgresql.dialect()
    table = Alert.__table__
    return ", ".join(
        f"{COLUMNS[place]} {table.c[COLUMNS[place]].type.compile(dialect)}" for place in places
    )


@functools.cache
def postgres_insert() -> str:
    """PostgreSQL's INSERT of any number of new rows, sent as one JSON array of them.

    One statement and one parameter, serialized by pydantic-core in one call. An
    ``executemany`` sent each row as a statement of its own, its 25 values adapted one by
    one, while the transaction held the lock of the alerts' services. A row's fields that
    are not columns (``id``, ``stored``, ...) are in the JSON and not read.
    """
    names = ", ".join(COLUMNS)
    return (
        f"INSERT INTO alerts ({names}) SELECT {names} "  # noqa: S608 - constant names
        f"FROM jsonb_to_recordset(%s::jsonb) AS new_alerts({_record_fields(ALL_COLUMNS)})"
    )


@functools.cache
def update_statement(dialect: str, changed: tuple[int, ...]) -> str:
    """The UPDATE of these columns (places in ``COLUMNS``), found by id: on SQLite of one
    row (run for each), on PostgreSQL of every row of a JSON array of records.

    Only the columns that changed: SQLite rewrites every index that has a column the SET
    names, changed or not, and checks every foreign key it names. A repeat of a storm's
    alert changes its count and last-seen time; all the columns took twice as long.
    """
    if dialect == "sqlite":
        assignments = ", ".join(f"{COLUMNS[place]} = ?" for place in changed)
        return f"UPDATE alerts SET {assignments} WHERE id = ?"  # noqa: S608 - constant names
    assignments = ", ".join(f"{COLUMNS[place]} = changed.{COLUMNS[place]}" for place in changed)
    return (
        f"UPDATE alerts SET {assignments} "  # noqa: S608 - constant names
        f"FROM jsonb_to_recordset(%s::jsonb) AS changed(id INTEGER, {_record_fields(changed)}) "
        "WHERE alerts.id = changed.id"
    )


ALL_COLUMNS = tuple(range(len(COLUMNS)))

SQLITE_INSERT_SIZES = (100, 10, 1)
"""The rows per INSERT on SQLite, largest first: a batch takes a few fixed-size statements
(each shape prepared once, and kept in the driver's statement cache)."""


@functools.lru_cache(maxsize=256)
def sqlite_insert(rows: int, shared: tuple[bool, ...] = (False,) * len(COLUMNS)) -> str:
    """An INSERT of ``rows`` rows. A column marked ``shared`` takes one value for every row:
    it is bound once, before the rows' values, instead of once per row (see
    ``sqlite_inserts``). Bounded: the masks a batch can make are many, those seen few."""
    if not any(shared):
        one = f"({', '.join('?' * len(COLUMNS))})"
        return f"INSERT INTO alerts ({', '.join(COLUMNS)}) VALUES {', '.join([one] * rows)}"  # noqa: S608
    picked: list[str] = []
    per_row = 0
    for is_shared in shared:
        if is_shared:
            picked.append("?")
        else:
            per_row += 1
            picked.append(f"column{per_row}")  # SQLite's names for a VALUES list's columns
    one = f"({', '.join('?' * per_row)})"
    return (
        f"INSERT INTO alerts ({', '.join(COLUMNS)}) SELECT {', '.join(picked)} "  # noqa: S608
        f"FROM (VALUES {', '.join([one] * rows)})"
    )


SqliteInserts = list[tuple[str, tuple[Any, ...]]]
"""New rows as SQLite's INSERTs take them: per statement, its SQL and its parameters in one
tuple (``sqlite_inserts``)."""


def sqlite_inserts(rows: Sequence[AlertRow], encoder: Encoder) -> SqliteInserts:
    """New rows' INSERTs, the rows cut into ``SQLITE_INSERT_SIZES`` statements and their
    values encoded (``Encoder.column``): done ahead, in a request, for a batch settled ahead.

    A column whose value is the same in every row of a statement (a batch's status, its
    times, its group key, the routing's outcome: 21 of the 25 in the benchmarks' storms) is
    bound once. The driver copies every text it binds: binding every value took a fifth of
    the instructions of a storm batch's transaction, in the write turn."""
    statements: SqliteInserts = []
    start = 0
    for size in SQLITE_INSERT_SIZES:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            start += size
            by_column = [
                encoder.column(values, place)
                for place, values in enumerate(zip(*map(_read_columns, chunk), strict=True))
            ]
            shared = [size > 1 and column.count(column[0]) == size for column in by_column]
            if all(shared):  # a VALUES list needs a column (rows alike: none are new alerts)
                values = chain.from_iterable(zip(*by_column, strict=True))
                statements.append((sqlite_insert(size), tuple(values)))
                continue
            parameters = [
                column[0] for column, alike in zip(by_column, shared, strict=True) if alike
            ]
            own = [column for column, alike in zip(by_column, shared, strict=True) if not alike]
            parameters.extend(chain.from_iterable(zip(*own, strict=True)))
            statements.append((sqlite_insert(size, tuple(shared)), tuple(parameters)))
    return statements


def _insert_sqlite(connection: Connection, statements: SqliteInserts) -> int:
    """Many rows per statement: Python's sqlite3 lets go of the GIL around every step of a
    statement, so an ``executemany`` of a hundred rows gave the GIL away a hundred times,
    and while this thread holds the database's write turn, each time it waited to get the
    GIL back, every writer of every process waited with it. Returns the last row's id."""
    last_id = 0
    for statement, parameters in statements:
        last_id = connection.exec_driver_sql(statement, parameters).lastrowid
    return last_id


def write(session: Session, rows: Iterable[AlertRow], encoder: Encoder | None = None) -> None:
    """Insert the new rows and update the changed stored ones, a few statements for a batch.

    New rows get no id here (the INSERTs return none); ``read_ids`` fetches
    them when the caller needs them, and this does before it updates a row inserted earlier
    without one (an update finds its row by id). On SQLite, the write whose new alerts pass
    a multiple of ``FOLD_EVERY_ALERTS`` also folds the alert keys (tens of milliseconds).
    """
    dialect = session.get_bind().dialect.name
    rows = list(rows)
    unknown: dict[int, list[AlertRow]] = {}
    for row in rows:
        if row.stored and row.dirty and row.id is None:
            unknown.setdefault(row.integration_id, []).append(row)
    for integration_id, unidentified in unknown.items():
        read_ids(session, integration_id, unidentified)
    inserts: list[AlertRow] = []
    updates: dict[tuple[int, ...], list[tuple[tuple[Any, ...], int]]] = {}
    for row in rows:
        if not row.stored:
            inserts.append(row)
            row.stored = True
        elif row.dirty:
            now = _read_columns(row)
            changed = _changed(row.written, now)
            if changed:
                assert row.id is not None  # read above
                updates.setdefault(changed, []).append((now, row.id))
            row.written = now
        row.dirty = False
    if dialect == "sqlite":
        _execute_sqlite(session.connection(), encoder or Encoder(dialect), inserts, updates)
    else:
        _execute_postgres(session.connection(), inserts, updates)


def _changed(written: tuple[Any, ...] | None, now: tuple[Any, ...]) -> tuple[int, ...]:
    """The places in ``COLUMNS`` where ``now`` differs from what was written (all of them
    when that is unknown). Intake replaces a row's values, never changes one in place."""
    if written is None:
        return ALL_COLUMNS
    return tuple(
        [
            place
            for place, old, new in zip(ALL_COLUMNS, written, now, strict=True)
            if old is not new and old != new
        ]
    )


_STORED_KEY = _all_key_tables("sqlite", "1")


def is_stored(session: Session, integration_id: int, fingerprint: str) -> bool:
    """Whether an alert of this integration has this fingerprint (SQLite): its key looked
    up at the driver, without reading the alert (``load`` does, through the ORM session)."""
    listed = {
        "integration_id": integration_id,
        "fingerprints": _fingerprints("sqlite", [fingerprint]),
    }
    return session.connection().exec_driver_sql(_STORED_KEY, listed).first() is not None


def insert_encoded_if_new(
    session: Session, rows: Sequence[AlertRow], statements: SqliteInserts
) -> bool:
    """Insert new rows whose INSERTs were made ahead (``sqlite_inserts``, the rows in the
    same order) on SQLite, without knowing that they are new: the key tables
    refuse a stored alert's key (the insert trigger, ``alert_keys``' primary key), and then
    nothing of the batch is inserted and False is returned. A savepoint undoes the rows of
    the batch's earlier statements (a batch of 57 takes 12)."""
    connection = session.connection()
    connection.exec_driver_sql("SAVEPOINT insert_if_new")
    try:
        last_id = _insert_sqlite(connection, statements)
    except IntegrityError:
        connection.exec_driver_sql("ROLLBACK TO insert_if_new")
        connection.exec_driver_sql("RELEASE insert_if_new")
        return False
    connection.exec_driver_sql("RELEASE insert_if_new")
    for row in rows:
        row.stored = True
        row.dirty = False
    _fold_if_due(connection, len(rows), last_id)
    return True


def _fold_if_due(connection: Connection, inserted: int, last_id: int) -> None:
    """Fold the alert keys when the rows just inserted passed a multiple of
    ``FOLD_EVERY_ALERTS``. One writer at a time, and SQLite gives each new row max(id) + 1:
    the ids just given are consecutive."""
    if fold_due(last_id - inserted + 1, last_id):
        fold_keys(connection.exec_driver_sql)


def _execute_sqlite(
    connection: Connection,
    encoder: Encoder,
    inserts: list[AlertRow],
    updates: dict[tuple[int, ...], list[tuple[tuple[Any, ...], int]]],
) -> None:
    if inserts:
        last_id = _insert_sqlite(connection, sqlite_inserts(inserts, encoder))
        _fold_if_due(connection, len(inserts), last_id)
    for changed, changes in updates.items():
        values = [(*encoder.values_at(now, changed), alert_id) for now, alert_id in changes]
        connection.exec_driver_sql(update_statement("sqlite", changed), values)


def _execute_postgres(
    connection: Connection,
    inserts: list[AlertRow],
    updates: dict[tuple[int, ...], list[tuple[tuple[Any, ...], int]]],
) -> None:
    """One statement for the new rows and one per set of changed columns, each taking its
    rows as one JSON array (``postgres_insert``). Every time goes in UTC (``db.to_utc``;
    a new row's is replaced by the same instant): in JSON a naive time would be read in the
    server's zone, and pydantic-core writes a zone's offset to the minute only."""
    if inserts:
        for row in inserts:
            for name, time in zip(_TIME_NAMES, _read_times(row), strict=True):
                if time is not None and time.tzinfo is not UTC:
                    setattr(row, name, to_utc(time))
        connection.exec_driver_sql(postgres_insert(), (pydantic_core.to_json(inserts).decode(),))
    for changed, changes in updates.items():
        records = [
            {"id": alert_id, **{COLUMNS[p]: _json_value(now[p], p) for p in changed}}
            for now, alert_id in changes
        ]
        statement = update_statement("postgresql", changed)
        connection.exec_driver_sql(statement, (pydantic_core.to_json(records).decode(),))


def _json_value(value: Any, place: int) -> Any:
    """A column's value for a JSON record: a time in UTC (``db.to_utc``), else as it is."""
    return to_utc(value) if value is not None and _KIND_AT[place] == "time" else value


def read_ids(session: Session, integration_id: int, rows: Sequence[AlertRow]) -> None:
    """Fill in the ids of inserted rows that have none yet."""
    missing = {row.fingerprint: row for row in rows if row.id is None}
    dialect = session.get_bind().dialect.name
    listed = {"integration_id": integration_id, "fingerprints": _fingerprints(dialect, missing)}
    for fingerprint, alert_id in session.execute(_IDS[dialect], listed):
        missing[fingerprint].id = alert_id
