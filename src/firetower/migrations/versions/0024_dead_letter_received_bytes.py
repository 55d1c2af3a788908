"""signals: a dead letter's size as received

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01

A dead letter keeps the first 64 KiB of a refused body, and the console gave the size of
what it kept: a refused body of 900 KB read "65536 bytes". The size received is now kept
beside it; for the rows already stored, that is all anyone knows: the size kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rejected_payloads", sa.Column("received_bytes", sa.Integer(), nullable=True))
    op.execute("UPDATE rejected_payloads SET received_bytes = length(body)")  # bytes, both
    with op.batch_alter_table("rejected_payloads") as batch:
        batch.alter_column("received_bytes", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("rejected_payloads") as batch:
        batch.drop_column("received_bytes")
