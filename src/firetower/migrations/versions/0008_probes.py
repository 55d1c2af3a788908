"""monitors: synthetic probes, results and roll-ups

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import JSONType, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("settings", JSONType, nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Integer(), nullable=False),
        sa.Column("success_threshold", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("state_changed_at", UTCDateTime(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("consecutive_successes", sa.Integer(), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_checked_at", UTCDateTime(), nullable=True),
        sa.Column("last_ok", sa.Boolean(), nullable=True),
        sa.Column("last_latency_ms", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("rolled_up_until", UTCDateTime(), nullable=True),
        sa.Column("raw_trimmed_before", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_probes_service_id_services",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_probes"),
        sa.UniqueConstraint("name", name="uq_probes_name"),
    )
    op.create_index("ix_probes_due", "probes", ["enabled", "next_run_at"])
    op.create_table(
        "probe_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name="fk_probe_results_probe_id_probes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_probe_results"),
    )
    op.create_index("ix_probe_results_probe_checked", "probe_results", ["probe_id", "checked_at"])
    op.create_table(
        "probe_rollups",
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("hour_start", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("latency_max_ms", sa.Float(), nullable=True),
        sa.Column("ok_latency_histogram", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name="fk_probe_rollups_probe_id_probes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("probe_id", "hour_start", name="pk_probe_rollups"),
    )


def downgrade() -> None:
    op.drop_table("probe_rollups")
    op.drop_index("ix_probe_results_probe_checked", table_name="probe_results")
    op.drop_table("probe_results")
    op.drop_index("ix_probes_due", table_name="probes")
    op.drop_table("probes")
