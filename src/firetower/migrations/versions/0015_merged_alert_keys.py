"""signals: a third level of alert keys, alert_keys_merged, on SQLite

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29

With two levels, each fold of 10,000 new keys into ``alert_keys_folded`` touched nearly every
page of that table once a few million alerts were stored: close to a page of SQLite's log
per alert again, and folds of a median 85 ms, longest 154 ms, at 4.9 million alerts
(``bench.sqlite_ceiling --seconds 150``), each holding the write turn. Intake on SQLite
now keeps ``alert_keys_folded`` to about ``intake_rows.MERGE_FROM_KEYS`` keys and merges
slices of it in key order, from where the last one stopped (``alert_key_merge_cursor``),
into ``alert_keys_merged`` (see ``signals.models.AlertKey``).
The folded keys stored so far go to the merged table here. PostgreSQL keeps every key in
``alert_keys`` as before; its delete trigger covers the new table too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MERGED, CURSOR = "alert_keys_merged", "alert_key_merge_cursor"
ON_INSERT, ON_DELETE = "add_key_on_insert_alerts", "drop_key_on_delete_alerts"
POSTGRES_FUNCTION = "firetower_keep_alert_keys"
_ADD_KEY = (
    "INSERT INTO alert_keys (integration_id, fingerprint, alert_id) "
    "VALUES (NEW.integration_id, NEW.fingerprint, NEW.id)"
)


def _refuse(table: str) -> str:
    """Refuse a new alert whose key is already stored in ``table`` (SQLite): only intake's
    lookup keeps keys out of the lower levels, and a duplicate there would make every later
    fold or merge fail."""
    return (
        f"SELECT RAISE(ABORT, 'UNIQUE constraint failed: {table}.integration_id, "  # noqa: S608
        f"{table}.fingerprint') FROM {table} "
        "WHERE integration_id = NEW.integration_id AND fingerprint = NEW.fingerprint"
    )


def _drop_keys(tables: tuple[str, ...]) -> str:
    return "; ".join(
        f"DELETE FROM {table} WHERE integration_id = OLD.integration_id "  # noqa: S608
        "AND fingerprint = OLD.fingerprint AND alert_id = OLD.id"
        for table in tables
    )


def _keep_keys(lower: tuple[str, ...]) -> None:
    """(Re)create the triggers that keep the keys, with ``lower`` the levels below
    ``alert_keys``."""
    tables = ("alert_keys", *lower)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {POSTGRES_FUNCTION}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'INSERT' THEN {_ADD_KEY}; "
            f"ELSE {_drop_keys(tables)}; END IF; RETURN NULL; END $$"
        )
        return
    for name in (ON_INSERT, ON_DELETE):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    refusals = "; ".join(_refuse(table) for table in lower)
    op.execute(
        f"CREATE TRIGGER {ON_INSERT} AFTER INSERT ON alerts BEGIN {refusals}; {_ADD_KEY}; END"
    )
    op.execute(f"CREATE TRIGGER {ON_DELETE} AFTER DELETE ON alerts BEGIN {_drop_keys(tables)}; END")


def _move_keys(source: str, target: str) -> None:
    op.execute(
        f"INSERT INTO {target} (integration_id, fingerprint, alert_id) "  # noqa: S608
        f"SELECT integration_id, fingerprint, alert_id FROM {source} "
        "ORDER BY integration_id, fingerprint"
    )
    op.execute(f"DELETE FROM {source}")  # noqa: S608 - constant names


def upgrade() -> None:
    op.create_table(
        MERGED,
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("integration_id", "fingerprint", name=op.f(f"pk_{MERGED}")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        CURSOR,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{CURSOR}")),
    )
    _move_keys("alert_keys_folded", MERGED)  # empty on PostgreSQL
    _keep_keys(("alert_keys_folded", MERGED))


def downgrade() -> None:
    _move_keys(MERGED, "alert_keys_folded")
    _keep_keys(("alert_keys_folded",))
    op.drop_table(CURSOR)
    op.drop_table(MERGED)
