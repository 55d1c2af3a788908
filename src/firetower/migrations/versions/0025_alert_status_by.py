"""signals: who set an alert's status by hand

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02

People may now acknowledge and resolve an alert themselves (an alert whose sender never
resolves it, a user report about no known service, stayed firing for good). The alert keeps
who did it; a signal from its sender that changes its status clears the mark.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("status_by", sa.String(320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("status_by")
