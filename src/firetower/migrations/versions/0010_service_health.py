"""catalog: service health checks (failing probes and SLOs mark dependents at risk)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_checks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "service_id",
            sa.Integer(),
            sa.ForeignKey(
                "services.id", name="fk_service_checks_service_id_services", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("failing", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("service_id", "check", name="uq_service_checks_check"),
    )


def downgrade() -> None:
    op.drop_table("service_checks")
