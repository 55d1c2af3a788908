"""signals: attach notes tallied per minute; an incident's alerts indexed by status again

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

Each new alert of a storm joins one of a few incidents, and each index keyed by incident took
an entry for it in the middle of the index, which costs SQLite a page split now and then:
two such indexes were about 4,500 instructions of the 85,000 an alert's transaction runs.
``(incident_id, attached_at)`` served only the minute-end attach note, which counted the
minute's alerts; intake now adds each request's count to ``attach_tallies`` instead (one
row per incident and minute, updated once per request). The partial index of unresolved
alerts becomes ``(incident_id, status)``, which answers "has this incident an alert that
has not resolved" with a seek per such status and serves every other read by incident.

The minute jobs queued before this migration count the alerts themselves; their counts are
taken here, into tallies, so that the new job notes them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from firetower.db import JSONType, UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UNRESOLVED_ATTACHED = sa.text("incident_id IS NOT NULL AND status != 'resolved'")
SHOWN_TITLES = 10

_jobs = sa.table(
    "jobs",
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("payload", JSONType),
)
_alerts = sa.table(
    "alerts",
    sa.column("id", sa.Integer),
    sa.column("incident_id", sa.Integer),
    sa.column("title", sa.String),
    sa.column("attached_at", UTCDateTime()),
)
_tallies = sa.table(
    "attach_tallies",
    sa.column("incident_id", sa.Integer),
    sa.column("minute", UTCDateTime()),
    sa.column("alerts", sa.Integer),
    sa.column("latest", JSONType),
)


def _tally_queued_jobs() -> None:
    """The count and latest titles each queued minute job would have noted, as tallies."""
    from datetime import datetime

    connection = op.get_bind()
    queued = connection.execute(
        sa.select(_jobs.c.payload).where(
            _jobs.c.kind == "signals.attached", _jobs.c.status.in_(("queued", "running"))
        )
    ).scalars()
    for payload in queued:
        since = datetime.fromisoformat(payload["since"])
        joined: Any = sa.and_(
            _alerts.c.incident_id == payload["incident_id"],
            _alerts.c.attached_at >= since,
            _alerts.c.attached_at < datetime.fromisoformat(payload["until"]),
        )
        if "noted_at" in payload:
            joined &= _alerts.c.attached_at > datetime.fromisoformat(payload["noted_at"])
        count = connection.scalar(sa.select(sa.func.count()).select_from(_alerts).where(joined))
        more = (count or 0) - int(payload.get("noted", 0))
        if more <= 0:
            continue
        titles = connection.scalars(
            sa.select(_alerts.c.title)
            .where(joined)
            .order_by(_alerts.c.attached_at.desc(), _alerts.c.id.desc())
            .limit(min(more, SHOWN_TITLES))
        ).all()
        connection.execute(
            sa.insert(_tallies).values(
                incident_id=payload["incident_id"], minute=since, alerts=more, latest=titles
            )
        )


def upgrade() -> None:
    op.create_table(
        "attach_tallies",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("latest", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_attach_tallies_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", "minute", name=op.f("pk_attach_tallies")),
    )
    _tally_queued_jobs()
    op.drop_index("ix_alerts_incident_unresolved", table_name="alerts")
    op.drop_index("ix_alerts_incident_attached", table_name="alerts")
    op.create_index("ix_alerts_incident_status", "alerts", ["incident_id", "status"])


def downgrade() -> None:
    """The tallies are dropped: a minute job still queued then counts its minute's alerts,
    the first note's too."""
    op.drop_index("ix_alerts_incident_status", table_name="alerts")
    op.create_index("ix_alerts_incident_attached", "alerts", ["incident_id", "attached_at"])
    op.create_index(
        "ix_alerts_incident_unresolved",
        "alerts",
        ["incident_id"],
        sqlite_where=UNRESOLVED_ATTACHED,
        postgresql_where=UNRESOLVED_ATTACHED,
    )
    op.drop_table("attach_tallies")
