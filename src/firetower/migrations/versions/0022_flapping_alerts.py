"""signals: the flapping alerts indexed apart

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

The worker's ``signals.settle_flapping`` job looks every minute for the alerts that have
stopped flapping while no signal came: one that settled resolved holds its incident open,
and one that settled firing has not routed. A partial index holds the flapping alerts only,
so the job reads a handful of entries however many alerts are stored, and an alert that
does not flap (nearly every one) costs intake no index entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_alerts_flapping",
        "alerts",
        ["status"],
        sqlite_where=sa.text("flapping = 1"),
        postgresql_where=sa.text("flapping"),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_flapping", table_name="alerts")
