"""signals: change events keep their service and are listed newest first

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

A change event's service is settled when it arrives: its integration's, or the catalog
service its ``custom_details.service`` or else its ``source`` names, in any case. Rows
stored before this revision are given theirs by the same rule.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not batch mode: change_events carries none of 0012's triggers,
    # and SQLite adds a nullable column in place.
    op.add_column("change_events", sa.Column("service_name", sa.String(100), nullable=True))
    op.execute(
        "UPDATE change_events SET service_name = (SELECT integrations.service_name "
        "FROM integrations WHERE integrations.id = change_events.integration_id)"
    )
    _name_services_of_shared_keys()
    op.create_index("ix_change_events_timestamp", "change_events", ["timestamp"])
    op.create_index(
        "ix_change_events_service_timestamp", "change_events", ["service_name", "timestamp"]
    )


def _name_services_of_shared_keys() -> None:
    """Changes sent with a key of no service: the service their payload names, if any."""
    connection = op.get_bind()
    changes = sa.table(
        "change_events",
        sa.column("id", sa.Integer),
        sa.column("service_name", sa.String),
        sa.column("source", sa.String),
        sa.column("custom_details", sa.JSON),
    )
    catalog = set(connection.scalars(sa.text("SELECT name FROM services")))
    unnamed = connection.execute(
        sa.select(changes.c.id, changes.c.source, changes.c.custom_details).where(
            changes.c.service_name.is_(None)
        )
    )
    for change_id, source, details in unnamed.all():
        named = (details or {}).get("service")
        for name in (named if isinstance(named, str) else "", source or ""):
            if name.strip().lower() in catalog:  # catalog names are lower case
                connection.execute(
                    changes.update()
                    .where(changes.c.id == change_id)
                    .values(service_name=name.strip().lower())
                )
                break


def downgrade() -> None:
    op.drop_index("ix_change_events_service_timestamp", table_name="change_events")
    op.drop_index("ix_change_events_timestamp", table_name="change_events")
    with op.batch_alter_table("change_events") as batch:
        batch.drop_column("service_name")
