"""Signal tables: integrations and their ingest keys, alerts, change events, dead letters,
silences, maintenance windows, routing rules, inhibition rules and intake's cache generations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from firetower.db import Base, JSONType, UTCDateTime

DEFAULT_GROUP_BY = ("alertname", "service")
DEFAULT_GROUP_BY_SQL = text("""'["alertname", "service"]'""")


class Integration(Base):
    """A sender of signals. Its key is shown once; only a sha256 of it is stored."""

    __tablename__ = "integrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    service_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    mapping: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    group_by: Mapped[list[str]] = mapped_column(
        JSONType, default=lambda: list(DEFAULT_GROUP_BY), server_default=DEFAULT_GROUP_BY_SQL
    )
    """The label keys whose values put its alerts in one group."""
    flap_threshold: Mapped[int] = mapped_column(Integer, default=5, server_default=text("5"))
    flap_window_seconds: Mapped[int] = mapped_column(
        Integer, default=600, server_default=text("600")
    )
    """An alert changing state ``flap_threshold`` times within this window is flapping."""


class Alert(Base):
    """One alert per (integration, fingerprint): a repeat updates it, never adds a row.

    The alert is found by its key through ``AlertKey`` and ``FoldedAlertKey``, not through
    an index of this table: see ``AlertKey``.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    fingerprint: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(1024))
    severity: Mapped[str] = mapped_column(String(10))
    service_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONType)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSONType)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
    )
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    """Its last firing matched an active silence or maintenance window: it opened nothing."""
    group_key: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    """The sorted ``label=value`` pairs of its integration's ``group_by`` keys."""
    state_changes: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    """When it last changed between firing and resolved (ISO times, within the flap window)."""
    flapping: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """It changed state too often lately: it opens and attaches nothing until it is stable."""
    inhibited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Its last firing was muted by an inhibition rule: a firing source alert covered it."""
    inhibited_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The id of the source alert that inhibited it (no foreign key: the mark is history, not
    a link to keep, and retention may delete the source first)."""
    inhibit_rule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    routed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The routing rule that decided its last routing; None when no rule matched."""
    routing_action: Mapped[str | None] = mapped_column(String(10), nullable=True)
    """What its last routing did: open, attach, notify or drop; None while never routed."""
    on_clear: Mapped[str | None] = mapped_column(String(10), nullable=True)
    """What its routing asked for when the incident's alerts have all resolved: note, resolve."""
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """When it last joined its incident (opened it, joined it, or fired again in it)."""
    status_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    """The person who set its status by hand (acknowledged or resolved it in the API, CLI or
    console); None when its sender set it. A signal that changes its status clears it."""

    integration: Mapped[Integration] = relationship()

    __table_args__ = (
        # An incident's alerts; and whether it has one that has not resolved, one seek per
        # such status (each resolving batch asks, and a storm's incident has thousands), and
        # one for the resolved ones that flap (their resolve is held).
        Index("ix_alerts_incident_status", "incident_id", "status", "flapping"),
        # The lists, each status newest first: a new alert's entry lands at the end.
        Index("ix_alerts_status_last_seen", "status", "last_seen_at", "id"),
        # The few that flap, for the job that lifts the mark once they settle
        # (``settle_flapping``): a partial index, so intake's new alerts add no entry.
        Index(
            "ix_alerts_flapping",
            "status",
            sqlite_where=text("flapping = 1"),
            postgresql_where=text("flapping"),
        ),
        # The muted ones (silenced, in maintenance, inhibited), for the job that routes them
        # once nothing mutes them (``settle_unmuted``): only a muted alert has an entry.
        Index(
            "ix_alerts_muted",
            "status",
            sqlite_where=text("silenced = 1 OR inhibited = 1"),
            postgresql_where=text("silenced OR inhibited"),
        ),
    )


class AttachTally(Base):
    """The alerts that joined an incident within one minute after that minute's first attach
    note: intake adds each later request's to it, and the minute's ``signals.attached`` job
    notes the sum and deletes the row. Counting the alerts themselves instead took an index
    of alerts by incident and time, an entry per new alert in a storm."""

    __tablename__ = "attach_tallies"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    alerts: Mapped[int] = mapped_column(Integer)
    latest: Mapped[list[str]] = mapped_column(JSONType)
    """The titles of the alerts the latest request attached, newest first (ten at most)."""


class _AlertKeyColumns:
    """The columns the alert key tables share."""

    integration_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255), primary_key=True)
    alert_id: Mapped[int] = mapped_column(Integer)
    """No foreign key: a migration in SQLite's batch mode rebuilds ``alerts`` by copying
    and dropping it, which a cascading key would follow and any other would refuse. Such a
    migration must create the triggers of 0015 again (SQLite drops a table's triggers with
    it); tests/test_signals_keys.py fails if a new alert gets no key."""

    __table_args__ = {"sqlite_with_rowid": False}  # the key is the table: one B-tree


class AlertKey(_AlertKeyColumns, Base):
    """An alert's (integration, fingerprint), kept by triggers on ``alerts``: written when
    the alert is inserted, deleted with it. An alert's key never changes.

    It replaces a unique index of ``alerts``, in which each new alert's hashed fingerprint
    dirtied a page of its own that SQLite's log took whole. On SQLite intake folds these
    keys into ``FoldedAlertKey`` in key order every ``intake_rows.FOLD_EVERY_ALERTS`` new
    alerts, and merges slices of that into ``MergedAlertKey``; PostgreSQL keeps them all
    here. docs/group-commit.md ("Alert keys") says how they stay unique.
    """

    __tablename__ = "alert_keys"


class FoldedAlertKey(_AlertKeyColumns, Base):
    """Alert keys folded out of ``AlertKey`` on SQLite (see there); empty on PostgreSQL."""

    __tablename__ = "alert_keys_folded"


class MergedAlertKey(_AlertKeyColumns, Base):
    """Alert keys merged out of ``FoldedAlertKey`` on SQLite, a slice in key order at a time,
    once it holds ``intake_rows.MERGE_FROM_KEYS`` keys; empty on PostgreSQL."""

    __tablename__ = "alert_keys_merged"


class AlertKeyMergeCursor(Base):
    """Where the next merge of folded alert keys starts: the last key merged (one row, on
    SQLite; see ``intake_rows.fold_keys``)."""

    __tablename__ = "alert_key_merge_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integration_id: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(255))


class ChangeEvent(Base):
    """A deploy or config change (PagerDuty change events); kept for analysis, never paged.

    ``service_name`` is settled when the change arrives: the integration's service, or the
    catalog service its ``custom_details.service`` or ``source`` names.
    """

    __tablename__ = "change_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    service_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    summary: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str] = mapped_column(String(255), default="")
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    custom_details: Mapped[dict[str, Any]] = mapped_column(JSONType)
    links: Mapped[list[Any]] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_change_events_timestamp", "timestamp"),
        Index("ix_change_events_service_timestamp", "service_name", "timestamp"),
    )


class RejectedPayload(Base):
    """The raw body of a refused intake request and why; bounded (oldest rows go first)."""

    __tablename__ = "rejected_payloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integration_id: Mapped[int | None] = mapped_column(
        ForeignKey("integrations.id", ondelete="SET NULL"), nullable=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    """The body as received, cut to its first ``DEAD_LETTER_BODY_BYTES``."""
    received_bytes: Mapped[int] = mapped_column(Integer)
    """The size of the body as received, which ``body`` may be only the start of."""


class Silence(Base):
    """Mutes firing alerts whose labels match every matcher, from ``starts_at`` to ``ends_at``.

    ``matchers`` is a list of ``{label, op, value}``; regexes are fully anchored, like
    Alertmanager's. Expiring one early sets ``expired_at``; rows are never deleted.
    """

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MaintenanceWindow(Base):
    """While it lasts, firing alerts of its service are kept but open and attach nothing."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_name: Mapped[str] = mapped_column(String(100), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))


class RoutingRule(Base):
    """One ordered routing rule: matchers → service, severity and an action.

    ``matchers`` is a list of ``{label, op, value}`` as for silences; the pseudo-label
    ``@integration`` reads the integration's name. ``severity_map`` is ``{label, values}``.
    """

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    service_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    severity: Mapped[str | None] = mapped_column(String(10), nullable=True)
    severity_map: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    action: Mapped[str] = mapped_column(String(10))
    on_clear: Mapped[str] = mapped_column(String(10))
    continue_matching: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InhibitRule(Base):
    """While a source alert fires, matching target alerts with the same ``equal`` labels are
    muted (Alertmanager's inhibition)."""

    __tablename__ = "inhibit_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source_matchers: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    target_matchers: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    equal: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IntakeGeneration(Base):
    """A value that database triggers replace (with a random one) whenever what intake
    caches may have changed.

    ``routing``: integrations, routing and inhibition rules, silences, maintenance windows
    and service names. ``incidents`` (SQLite only): which incidents are active and their
    services. A process keeps what it read with the generation it read it at
    (``signals/intake_cache.py``); triggers rather than service code change it, so that
    every writer (another process, the CLI, plain SQL) invalidates every cache. Random
    rather than counted: a value written by a transaction that rolled back never recurs.
    """

    __tablename__ = "intake_generations"

    topic: Mapped[str] = mapped_column(String(20), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
