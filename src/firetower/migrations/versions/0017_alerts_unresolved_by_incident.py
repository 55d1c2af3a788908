"""signals: an incident's unresolved alerts indexed apart

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

Each batch that resolves alerts asks, for each incident it touches, whether any alert of that
incident has not resolved. Through ``(incident_id, attached_at)`` that read every alert of the
incident, resolved or not, and its row for the status: 20,000 alerts an incident in the
resolving half of a million-alert storm, for each of its 10,000 batches, inside the write
turn. A partial index of the alerts that are attached and not resolved answers with one seek.
A new alert fires, so intake adds one entry per new alert; resolving removes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UNRESOLVED_ATTACHED = sa.text("incident_id IS NOT NULL AND status != 'resolved'")


def upgrade() -> None:
    op.create_index(
        "ix_alerts_incident_unresolved",
        "alerts",
        ["incident_id"],
        sqlite_where=UNRESOLVED_ATTACHED,
        postgresql_where=UNRESOLVED_ATTACHED,
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_incident_unresolved", table_name="alerts")
