"""monitors: SLOs, pushed SLI events, evaluation history and SLA targets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import JSONType, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("objective_percent", sa.Float(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("min_events", sa.BigInteger(), nullable=False),
        sa.Column("sli_kind", sa.String(20), nullable=False),
        sa.Column("sli", JSONType, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_slos_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slos")),
        sa.UniqueConstraint("name", name=op.f("uq_slos_name")),
    )
    op.create_table(
        "slo_event_buckets",
        sa.Column("slo_id", sa.Integer(), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("bad", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["slo_id"],
            ["slos.id"],
            name=op.f("fk_slo_event_buckets_slo_id_slos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("slo_id", "bucket_start", name=op.f("pk_slo_event_buckets")),
    )
    op.create_table(
        "slo_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slo_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("budget_remaining", sa.Float(), nullable=True),
        sa.Column("window_events", sa.Float(), nullable=False),
        sa.Column("burn_rates", JSONType, nullable=False),
        sa.Column("fired", JSONType, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["slo_id"],
            ["slos.id"],
            name=op.f("fk_slo_evaluations_slo_id_slos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slo_evaluations")),
    )
    op.create_index("ix_slo_evaluations_slo_at", "slo_evaluations", ["slo_id", "at"])
    op.create_table(
        "sla_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target_percent", sa.Float(), nullable=False),
        sa.Column("slo_id", sa.Integer(), nullable=True),
        sa.Column("probe_name", sa.String(100), nullable=True),
        sa.Column("latency_threshold_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_sla_targets_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["slo_id"],
            ["slos.id"],
            name=op.f("fk_sla_targets_slo_id_slos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_targets")),
        sa.UniqueConstraint("service_id", "kind", name="uq_sla_targets_service_kind"),
    )


def downgrade() -> None:
    op.drop_table("sla_targets")
    op.drop_index("ix_slo_evaluations_slo_at", table_name="slo_evaluations")
    op.drop_table("slo_evaluations")
    op.drop_table("slo_event_buckets")
    op.drop_table("slos")
