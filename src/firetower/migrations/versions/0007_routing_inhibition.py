"""signals: routing rules and inhibition rules, and what they did on each alert

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import JSONType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("matchers", JSONType, nullable=False),
        sa.Column("service_name", sa.String(100), nullable=True),
        sa.Column("severity", sa.String(10), nullable=True),
        sa.Column("severity_map", JSONType, nullable=True),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("on_clear", sa.String(10), nullable=False),
        sa.Column("continue_matching", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "inhibit_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("source_matchers", JSONType, nullable=False),
        sa.Column("target_matchers", JSONType, nullable=False),
        sa.Column("equal", JSONType, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("inhibited", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("inhibited_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("inhibit_rule", sa.String(100), nullable=True))
        batch.add_column(sa.Column("routed_by", sa.String(100), nullable=True))
        batch.add_column(sa.Column("routing_action", sa.String(10), nullable=True))
        batch.add_column(sa.Column("on_clear", sa.String(10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("on_clear")
        batch.drop_column("routing_action")
        batch.drop_column("routed_by")
        batch.drop_column("inhibit_rule")
        batch.drop_column("inhibited_by")
        batch.drop_column("inhibited")
    op.drop_table("inhibit_rules")
    op.drop_table("routing_rules")
