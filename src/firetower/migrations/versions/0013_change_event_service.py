"""signals: change events keep their service and are listed newest first

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

A change event's service is settled when it arrives (its integration's, or the one its
payload names); rows stored before this revision get their integration's service.
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
    op.create_index("ix_change_events_timestamp", "change_events", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_change_events_timestamp", table_name="change_events")
    with op.batch_alter_table("change_events") as batch:
        batch.drop_column("service_name")
