"""signals: alerts indexed by status and last-seen time, for the lists

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

The console's live alert list (firing first, each status newest first) and the API's list
(newest first) sorted every stored alert to show 200 of them: 1.3 s over a million alerts
on SQLite, read again at every poll of every open console, in the storm that stored them.
With ``(status, last_seen_at, id)`` each status's newest alerts are a short walk from the
end of its range. A new alert's entry goes at the end of the firing range (its last-seen
time is the newest), so intake appends to the index rather than scattering across it.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_status_last_seen", "alerts", ["status", "last_seen_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_status_last_seen", table_name="alerts")
