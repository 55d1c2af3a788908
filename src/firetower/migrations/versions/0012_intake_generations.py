"""signals: generations, rewritten by triggers, that tell intake its cached views are stale

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

A change writes a new random generation rather than adding one: a value written by a
transaction that then rolled back is never written again, so a view read inside it (and
holding its undone changes) never passes for current.

SQLite drops a table's triggers with the table, and Alembic's batch mode on SQLite
rebuilds a table by copying it: a later migration that batch-alters one of the watched
tables must create its triggers again (tests/test_signals_intake_cache.py checks they all
exist at head).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ROUTING = "routing"
INCIDENTS = "incidents"
# (table, topic, what changes of it matter: "" for any, else the column whose update does)
WATCHED = [
    ("integrations", ROUTING, ""),
    ("routing_rules", ROUTING, ""),
    ("inhibit_rules", ROUTING, ""),
    ("silences", ROUTING, ""),
    ("maintenance_windows", ROUTING, ""),
    ("services", ROUTING, "name"),
    ("incidents", INCIDENTS, "status"),
    ("incident_services", INCIDENTS, ""),
]
POSTGRES_FUNCTION = "firetower_bump_intake_generation"
RANDOM = {"sqlite": "random()", "postgresql": "floor(random() * 2^53)::bigint"}


def _bump(topic: str) -> str:
    # Topics are this module's constants, never input.
    random = RANDOM["sqlite"]
    return f"UPDATE intake_generations SET generation = {random} WHERE topic = '{topic}'"  # noqa: S608


def _sqlite_triggers() -> None:
    for table, topic, column in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            when = f"UPDATE OF {column}" if event == "UPDATE" and column else event
            op.execute(
                f"CREATE TRIGGER bump_{topic}_on_{event.lower()}_{table} AFTER {when} ON {table} "
                f"BEGIN {_bump(topic)}; END"
            )


def _postgres_triggers() -> None:
    op.execute(
        f"CREATE FUNCTION {POSTGRES_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608
        f"BEGIN UPDATE intake_generations SET generation = {RANDOM['postgresql']} "
        "WHERE topic = TG_ARGV[0]; RETURN NULL; END $$"
    )
    # PostgreSQL caches only the routing topic: intake reads a service's active incident
    # under the service's row lock there, and a generation rewritten by every incident
    # opened would serialize concurrent writers on its row.
    for table, topic, column in WATCHED:
        if topic != ROUTING:
            continue
        update = f"UPDATE OF {column}" if column else "UPDATE"
        op.execute(
            f"CREATE TRIGGER bump_{topic}_on_change_{table} "
            f"AFTER INSERT OR {update} OR DELETE OR TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_FUNCTION}('{topic}')"
        )


def upgrade() -> None:
    op.create_table(
        "intake_generations",
        sa.Column("topic", sa.String(20), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    # Random from the start too: a database made again under a running server (dropped and
    # migrated anew) must not match what the server read from the old one.
    random = RANDOM[op.get_bind().dialect.name]
    op.execute(
        "INSERT INTO intake_generations (topic, generation) "  # noqa: S608 - constants
        f"VALUES ('{ROUTING}', {random}), ('{INCIDENTS}', {random})"
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, topic, _column in WATCHED:
            if topic == ROUTING:
                op.execute(f"DROP TRIGGER bump_{topic}_on_change_{table} ON {table}")
        op.execute(f"DROP FUNCTION {POSTGRES_FUNCTION}()")
    else:
        for table, topic, _column in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER bump_{topic}_on_{event}_{table}")
    op.drop_table("intake_generations")
