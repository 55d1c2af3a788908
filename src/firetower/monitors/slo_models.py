"""Tables of SLOs, their pushed events, their evaluation history and SLA targets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from firetower.catalog.models import Service
from firetower.db import Base, JSONType, UTCDateTime


class Slo(Base):
    """A service level objective over one SLI (``sli_kind``: probe, prometheus or events)."""

    __tablename__ = "slos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(Text, default="")
    objective_percent: Mapped[float] = mapped_column(Float)
    window_days: Mapped[int] = mapped_column(Integer)
    min_events: Mapped[int] = mapped_column(BigInteger)
    """The minimum-traffic guard: a long window with fewer events raises no alert."""
    sli_kind: Mapped[str] = mapped_column(String(20))
    sli: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The SLI's settings as given (probe name and measure, Prometheus URL and queries)."""
    state: Mapped[str] = mapped_column(String(10), default="ok")
    """The alert level of the last evaluation: ok, ticket or page."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    service: Mapped[Service] = relationship()


class SloEventBucket(Base):
    """Good and bad events pushed for an SLO, summed per minute."""

    __tablename__ = "slo_event_buckets"

    slo_id: Mapped[int] = mapped_column(ForeignKey("slos.id", ondelete="CASCADE"), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    good: Mapped[int] = mapped_column(BigInteger, default=0)
    bad: Mapped[int] = mapped_column(BigInteger, default=0)


class SloEvaluation(Base):
    """One evaluation of an SLO: what the budget and the burn rates were, and the level."""

    __tablename__ = "slo_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slo_id: Mapped[int] = mapped_column(ForeignKey("slos.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    budget_remaining: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Fraction of the window's budget left; None when the window saw no events."""
    window_events: Mapped[float] = mapped_column(Float, default=0)
    burn_rates: Mapped[dict[str, Any]] = mapped_column(JSONType)
    fired: Mapped[list[str]] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the SLI could not be read (Prometheus unreachable, ...); the level then stays."""

    __table_args__ = (Index("ix_slo_evaluations_slo_at", "slo_id", "at"),)


class SlaTarget(Base):
    """A service's monthly promise: an uptime % or a latency percentile, measured by a source.

    The source is an SLO (its SLI) or a probe (its availability, or for latency the share of
    checks under ``latency_threshold_ms``).
    """

    __tablename__ = "sla_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    target_percent: Mapped[float] = mapped_column(Float)
    slo_id: Mapped[int | None] = mapped_column(
        ForeignKey("slos.id", ondelete="CASCADE"), nullable=True
    )
    probe_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    latency_threshold_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    service: Mapped[Service] = relationship()
    slo: Mapped[Slo | None] = relationship()

    __table_args__ = (UniqueConstraint("service_id", "kind", name="uq_sla_targets_service_kind"),)
