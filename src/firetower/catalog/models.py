"""Catalog tables: services and the graph of what depends on what."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from firetower.auth.models import Team
from firetower.db import Base, UTCDateTime

feature_services = Table(
    "feature_services",
    Base.metadata,
    Column("feature_id", ForeignKey("features.id", ondelete="CASCADE"), primary_key=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)

customer_services = Table(
    "customer_services",
    Base.metadata,
    Column("customer_id", ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    owner: Mapped[str] = mapped_column(String(320), default="")
    tier: Mapped[int] = mapped_column(Integer, default=3)
    description: Mapped[str] = mapped_column(Text, default="")
    runbook_url: Mapped[str] = mapped_column(String(2000), default="")
    estimated_users: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    team: Mapped[Team | None] = relationship()

    __table_args__ = (CheckConstraint("tier BETWEEN 1 AND 4", name="tier_range"),)


class Dependency(Base):
    """``service`` depends on ``depends_on``: when depends_on fails, service may fail too."""

    __tablename__ = "service_dependencies"

    service_id: Mapped[int] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[int] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )


class Feature(Base):
    """Something users see and use, served by one or more services."""

    __tablename__ = "features"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    services: Mapped[list[Service]] = relationship(secondary=feature_services)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    contact: Mapped[str] = mapped_column(String(320), default="")
    services: Mapped[list[Service]] = relationship(secondary=customer_services)


class ServiceCheck(Base):
    """The latest state of one named check of a service (a probe, an SLO).

    A failing check marks the service failing and its transitive dependents at risk;
    reported by the monitors domain, read by the catalog and incidents' blast radius.
    """

    __tablename__ = "service_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(200))
    failing: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("service_id", "check", name="uq_service_checks_check"),)
