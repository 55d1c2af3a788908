"""signals: alerts no longer indexed by integration and group key

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30

``(integration_id, group_key)`` took an entry for every new alert, about a tenth of SQLite's
work in intake's write turn, and served only the console's and the API's group summaries,
which it made slower: over a million alerts they read every row in the index's order, a
page at random for each (1.4 s on SQLite), where reading the table in its own order takes
1.0 s. The alert lists read by status since 0019, the group filter included.
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_alerts_integration_group", table_name="alerts")


def downgrade() -> None:
    op.create_index("ix_alerts_integration_group", "alerts", ["integration_id", "group_key"])
