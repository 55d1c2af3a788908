"""users: who deactivated a user, and when

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02

A deactivated user showed only that they were: not who did it, nor when. Users deactivated
before this keep both unknown (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firetower.db import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deactivated_at", UTCDateTime(), nullable=True))
    op.add_column("users", sa.Column("deactivated_by", sa.String(320), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place, where alembic would rebuild the
        # whole users table to add the constraint.
        op.execute(
            "ALTER TABLE users ADD COLUMN deactivated_by_id INTEGER "
            "CONSTRAINT fk_users_deactivated_by_id_users REFERENCES users (id)"
        )
    else:
        op.add_column("users", sa.Column("deactivated_by_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_users_deactivated_by_id_users", "users", "users", ["deactivated_by_id"], ["id"]
        )


def downgrade() -> None:
    columns = ("deactivated_by_id", "deactivated_by", "deactivated_at")
    if op.get_bind().dialect.name == "sqlite":
        # Dropped in place (SQLite 3.35+), not by a batch rebuild of the users table.
        for column in columns:
            op.execute(f"ALTER TABLE users DROP COLUMN {column}")
    else:
        for column in columns:
            op.drop_column("users", column)
