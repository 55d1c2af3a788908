"""Alerts as intake handles them: plain rows, read and written a batch at a time.

Intake is the one write path that must keep up with a storm (tens of thousands of alerts a
second on SQLite). ORM objects cost more to build, track and flush than everything else an
alert needs, so intake works on ``AlertRow`` values and writes them with one multi-row
statement per kind of change: an ``executemany`` INSERT for new alerts and one UPDATE for
changed ones, with values encoded here once instead of per column by the type system.

The encoding matches what the ORM column types store (``db.UTCDateTime``, ``db.JSONType``),
so rows written here read back through the ORM unchanged (tests/test_signals_rows.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower.signals.models import Alert

READ_CHUNK = 500
"""Fingerprints per ``IN (...)`` when a batch's known alerts are read (bind limits)."""


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
    id: int | None = None
    stored: bool = False
    """The row exists in the database (read from it, or inserted by ``write``)."""
    dirty: bool = False
    """A stored row changed since it was read or last written."""


COLUMNS = tuple(f.name for f in fields(AlertRow) if f.name not in ("id", "stored", "dirty"))
"""The alert columns intake writes, in one fixed order (``id`` is the database's)."""
_JSON = frozenset({"labels", "annotations", "state_changes"})
_TIMES = frozenset({"starts_at", "ends_at", "first_seen_at", "last_seen_at", "attached_at"})
assert set(COLUMNS) | {"id"} == set(Alert.__table__.columns.keys()), "AlertRow drifted from Alert"


def load(session: Session, integration_id: int, fingerprints: Sequence[str]) -> list[AlertRow]:
    """The stored alerts of one integration with these fingerprints (a few queries)."""
    table = Alert.__table__
    columns = [table.c.id, *(table.c[name] for name in COLUMNS)]
    found: list[AlertRow] = []
    for start in range(0, len(fingerprints), READ_CHUNK):
        chunk = fingerprints[start : start + READ_CHUNK]
        query = (
            select(*columns)
            .where(table.c.integration_id == integration_id)
            .where(table.c.fingerprint.in_(chunk))
        )
        for values in session.execute(query):
            row = AlertRow(**dict(zip(COLUMNS, values[1:], strict=True)), id=values[0])
            row.labels = row.labels or {}
            row.annotations = row.annotations or {}
            row.state_changes = row.state_changes or []
            row.stored = True
            found.append(row)
    return found


class _Encoder:
    """Turns a row into the driver's parameters, the way the ORM's column types would."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self._times: dict[datetime, Any] = {}

    def time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        encoded = self._times.get(value)
        if encoded is None:
            if value.tzinfo is None:
                raise ValueError("naive datetime refused: use an aware UTC datetime")
            utc = value.astimezone(UTC)
            # SQLAlchemy's SQLite DATETIME text: always six fractional digits, so stored
            # values compare as text in time order.
            encoded = (
                utc.replace(tzinfo=None).isoformat(" ", timespec="microseconds")
                if self.sqlite
                else utc
            )
            self._times[value] = encoded  # a batch shares a few distinct times
        return encoded

    def values(self, row: AlertRow) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in COLUMNS:
            value = getattr(row, name)
            if name in _JSON:
                value = pydantic_core.to_json(value).decode()
            elif name in _TIMES:
                value = self.time(value)
            out.append(value)
        return tuple(out)


def _statements(dialect: str) -> tuple[str, str]:
    """The INSERT and UPDATE in the driver's parameter style (built from ``COLUMNS`` only)."""
    mark = "?" if dialect == "sqlite" else "%s"
    names = ", ".join(COLUMNS)
    marks = ", ".join([mark] * len(COLUMNS))
    assignments = ", ".join(f"{name} = {mark}" for name in COLUMNS)
    return (
        f"INSERT INTO alerts ({names}) VALUES ({marks})",  # noqa: S608 - constant names
        f"UPDATE alerts SET {assignments} WHERE id = {mark}",  # noqa: S608 - constant names
    )


STATEMENTS = {dialect: _statements(dialect) for dialect in ("sqlite", "postgresql")}


def write(session: Session, rows: Iterable[AlertRow]) -> None:
    """Insert the new rows and update the changed stored ones: two statements at most.

    New rows get no id here (an ``executemany`` INSERT returns none); ``read_ids`` fetches
    them when the caller needs them.
    """
    dialect = session.get_bind().dialect.name
    encoder = _Encoder(dialect)
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    for row in rows:
        if not row.stored:
            inserts.append(encoder.values(row))
            row.stored = True
        elif row.dirty:
            updates.append((*encoder.values(row), row.id))
        row.dirty = False
    insert, update = STATEMENTS[dialect]
    connection = session.connection()
    if inserts:
        connection.exec_driver_sql(insert, inserts)
    if updates:
        connection.exec_driver_sql(update, updates)


def read_ids(session: Session, integration_id: int, rows: Sequence[AlertRow]) -> None:
    """Fill in the ids of inserted rows that have none yet."""
    missing = {row.fingerprint: row for row in rows if row.id is None}
    names = list(missing)
    table = Alert.__table__
    for start in range(0, len(names), READ_CHUNK):
        chunk = names[start : start + READ_CHUNK]
        query = (
            select(table.c.fingerprint, table.c.id)
            .where(table.c.integration_id == integration_id)
            .where(table.c.fingerprint.in_(chunk))
        )
        for fingerprint, alert_id in session.execute(query):
            missing[fingerprint].id = alert_id
