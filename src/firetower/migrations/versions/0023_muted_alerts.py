"""signals: the muted alerts indexed apart

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01

A firing alert that a silence, a maintenance window or an inhibiting alert muted routed
only at its sender's next repeat once the mute was over. The worker's minutely
``signals.settle_held`` job now routes it; this partial index holds the muted alerts only,
so the job reads those and nothing else, and an alert nothing mutes costs intake no entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_alerts_muted",
        "alerts",
        ["status"],
        sqlite_where=sa.text("silenced = 1 OR inhibited = 1"),
        postgresql_where=sa.text("silenced OR inhibited"),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_muted", table_name="alerts")
