"""signals: an incident's alerts indexed by status and flapping

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

A flapping alert's resolve is held: it does not count towards "every alert of the incident
has resolved". Asking whether an incident has a resolved alert that flaps read every resolved
alert of the incident through ``(incident_id, status)``; with ``flapping`` in the index it is
one more seek. The column changes only when an alert starts or stops flapping.
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_alerts_incident_status", table_name="alerts")
    op.create_index("ix_alerts_incident_status", "alerts", ["incident_id", "status", "flapping"])


def downgrade() -> None:
    op.drop_index("ix_alerts_incident_status", table_name="alerts")
    op.create_index("ix_alerts_incident_status", "alerts", ["incident_id", "status"])
