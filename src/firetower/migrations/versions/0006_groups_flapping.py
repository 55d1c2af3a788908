"""signals: alert groups by configurable label keys, and flapping detection

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import JSONType

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(
            sa.Column(
                "group_by",
                JSONType,
                nullable=False,
                server_default=sa.text("""'["alertname", "service"]'"""),
            )
        )
        batch.add_column(
            sa.Column("flap_threshold", sa.Integer(), nullable=False, server_default=sa.text("5"))
        )
        batch.add_column(
            sa.Column(
                "flap_window_seconds", sa.Integer(), nullable=False, server_default=sa.text("600")
            )
        )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("group_key", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("state_changes", JSONType, nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(
            sa.Column("flapping", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_alerts_integration_group", "alerts", ["integration_id", "group_key"])


def downgrade() -> None:
    op.drop_index("ix_alerts_integration_group", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("flapping")
        batch.drop_column("state_changes")
        batch.drop_column("group_key")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("flap_window_seconds")
        batch.drop_column("flap_threshold")
        batch.drop_column("group_by")
