"""jobs: a worker that stops cleanly keeps its heartbeat, marked stopped

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02

A clean stop deleted the worker's heartbeat, so after a deliberate stop nobody could tell when
a worker last ran. The row now stays with ``stopped_at`` set (never counted alive); the next
live worker's heartbeat prunes it. Rows written before this are running or went silent (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("worker_heartbeats", sa.Column("stopped_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Before 0027 a row meant a worker that ran; a stopped worker had none.
    op.execute("DELETE FROM worker_heartbeats WHERE stopped_at IS NOT NULL")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE worker_heartbeats DROP COLUMN stopped_at")  # in place, 3.35+
    else:
        op.drop_column("worker_heartbeats", "stopped_at")
