"""signals: alerts are found by key through alert_keys, not a unique index of alerts

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Each new alert with a hashed fingerprint landed in a leaf page of the unique
(integration_id, fingerprint) index of its own, and SQLite's write-ahead log takes every
page a commit touches whole. The keys now live in two tables of their own (see
``signals.models.AlertKey``): a trigger writes each new alert's key to ``alert_keys``, and
intake on SQLite folds that table into ``alert_keys_folded`` in key order from time to
time. Existing alerts' keys go to ``alert_keys_folded`` on SQLite, ``alert_keys`` on
PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KEY_TABLES = ("alert_keys", "alert_keys_folded")
ON_INSERT, ON_DELETE = "add_key_on_insert_alerts", "drop_key_on_delete_alerts"
POSTGRES_FUNCTION = "firetower_keep_alert_keys"
_ADD_KEY = (
    "INSERT INTO alert_keys (integration_id, fingerprint, alert_id) "
    "VALUES (NEW.integration_id, NEW.fingerprint, NEW.id)"
)
# Only intake's lookup keeps a new key out of the folded table on SQLite; this refuses one
# that got past it (hand-written SQL, a future code path), which the next fold would
# otherwise fail on, and every fold after it. It reads pages the lookup has just read.
_REFUSE_FOLDED = (
    "SELECT RAISE(ABORT, 'UNIQUE constraint failed: alert_keys_folded.integration_id, "
    "alert_keys_folded.fingerprint') FROM alert_keys_folded "
    "WHERE integration_id = NEW.integration_id AND fingerprint = NEW.fingerprint"
)
_DROP_KEYS = [
    f"DELETE FROM {table} WHERE integration_id = OLD.integration_id "  # noqa: S608 - constants
    "AND fingerprint = OLD.fingerprint AND alert_id = OLD.id"
    for table in KEY_TABLES
]


def upgrade() -> None:
    # Batch mode rebuilds alerts on SQLite; it carries none of 0012's triggers, and this
    # revision's own are created after the rebuild.
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("uq_alerts_integration_fingerprint", type_="unique")
    for table in KEY_TABLES:
        op.create_table(
            table,
            sa.Column("integration_id", sa.Integer(), nullable=False),
            sa.Column("fingerprint", sa.String(length=255), nullable=False),
            sa.Column("alert_id", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("integration_id", "fingerprint", name=op.f(f"pk_{table}")),
            sqlite_with_rowid=False,
        )
    # Stored alerts' keys go where they would be by now: folded on SQLite (so the first
    # fold after the upgrade does not move them all in one write turn), unfolded on
    # PostgreSQL, which never folds.
    target = "alert_keys" if op.get_bind().dialect.name == "postgresql" else "alert_keys_folded"
    op.execute(
        f"INSERT INTO {target} (integration_id, fingerprint, alert_id) "  # noqa: S608 - constants
        "SELECT integration_id, fingerprint, id FROM alerts ORDER BY integration_id, fingerprint"
    )
    if op.get_bind().dialect.name == "postgresql":
        # Nothing is folded on PostgreSQL: alert_keys' primary key alone keeps keys unique.
        op.execute(
            f"CREATE FUNCTION {POSTGRES_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF TG_OP = 'INSERT' THEN {_ADD_KEY}; "
            f"ELSE {'; '.join(_DROP_KEYS)}; END IF; RETURN NULL; END $$"
        )
        for name, event in ((ON_INSERT, "INSERT"), (ON_DELETE, "DELETE")):
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON alerts "
                f"FOR EACH ROW EXECUTE FUNCTION {POSTGRES_FUNCTION}()"
            )
    else:
        op.execute(
            f"CREATE TRIGGER {ON_INSERT} AFTER INSERT ON alerts "
            f"BEGIN {_REFUSE_FOLDED}; {_ADD_KEY}; END"
        )
        op.execute(
            f"CREATE TRIGGER {ON_DELETE} AFTER DELETE ON alerts BEGIN {'; '.join(_DROP_KEYS)}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in (ON_INSERT, ON_DELETE):
            op.execute(f"DROP TRIGGER {name} ON alerts")
        op.execute(f"DROP FUNCTION {POSTGRES_FUNCTION}()")
    else:
        for name in (ON_INSERT, ON_DELETE):
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("alerts") as batch:
        batch.create_unique_constraint(
            "uq_alerts_integration_fingerprint", ["integration_id", "fingerprint"]
        )
    for table in reversed(KEY_TABLES):
        op.drop_table(table)
