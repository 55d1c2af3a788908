"""Tables of synthetic probes: definitions with their up/down state, raw results, hourly roll-ups.

Raw results are kept ``RAW_RETENTION_DAYS`` (see ``probes.py``); an hourly roll-up per probe
keeps 90 days of history in a few thousand rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from firetower.catalog.models import Service
from firetower.db import Base, JSONType, UTCDateTime

UNKNOWN, UP, DOWN = "unknown", "up", "down"


class Probe(Base):
    """One probe: what to check (``settings``, shaped by ``kind``), how often, and its state."""

    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The kind's own settings (url, host/port, DNS name, ...) as ``probe_schemas`` shapes them."""
    service_id: Mapped[int | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), nullable=True
    )
    severity: Mapped[str] = mapped_column(String(10))
    interval_seconds: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    failure_threshold: Mapped[int] = mapped_column(Integer)
    success_threshold: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(10), default=UNKNOWN)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, default=0)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """The slot of the next scheduled run; the dispatcher moves it forward as it enqueues."""
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    rolled_up_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Hours before this one have final roll-ups."""
    raw_trimmed_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Raw results before this hour were deleted; their roll-ups stand in for them."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    service: Mapped[Service | None] = relationship()

    __table_args__ = (Index("ix_probes_due", "enabled", "next_run_at"),)


class ProbeResult(Base):
    """One run of a probe: what it saw, when, and how long it took."""

    __tablename__ = "probe_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Time to the full answer (or to the failure); None when nothing was attempted."""
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the run failed, in words (None when it succeeded)."""
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """Extra facts of the run (certificate expiry, DNS answers)."""

    __table_args__ = (Index("ix_probe_results_probe_checked", "probe_id", "checked_at"),)


class ProbeRollup(Base):
    """One probe's results over one hour: counts, latency percentiles and a histogram."""

    __tablename__ = "probe_rollups"

    probe_id: Mapped[int] = mapped_column(
        ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True
    )
    hour_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_max_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ok_latency_histogram: Mapped[list[int]] = mapped_column(JSONType)
    """Successful runs per latency bucket (``probes.LATENCY_BUCKETS_MS``, then +Inf)."""
