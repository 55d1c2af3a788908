"""Input and output shapes: the integration admin API and the payloads senders post.

The Alertmanager and PagerDuty shapes follow those tools' documented formats; unknown
fields are ignored (senders add fields over time), wrong types are refused.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from firetower.text import NO_NUL

NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class IntegrationKind(StrEnum):
    alertmanager = "alertmanager"
    pagerduty = "pagerduty"
    grafana = "grafana"
    generic = "generic"


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, max_length=100)
    kind: IntegrationKind
    service_name: str | None = Field(
        default=None,
        max_length=100,
        pattern=NO_NUL,
        description="The catalog service its alerts open incidents for.",
    )


class IntegrationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    kind: IntegrationKind
    service_name: str | None
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class IntegrationWithKey(IntegrationRead):
    key: str = Field(description="The ingest key; shown this once, only its hash is stored.")


class RejectedPayloadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    integration_id: int | None
    received_at: datetime
    reason: str
    body: str


def _no_zero_time(value: datetime | None) -> datetime | None:
    """Alertmanager sends ``0001-01-01T00:00:00Z`` for "no end yet"."""
    return None if value is None or value.year <= 1 else value


class AlertmanagerAlert(BaseModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(default="", max_length=255)

    _zero = field_validator("startsAt", "endsAt")(_no_zero_time)


class AlertmanagerPayload(BaseModel):
    """Alertmanager webhook payload, version 4."""

    version: Literal["4"] = "4"
    status: Literal["firing", "resolved"]
    groupKey: str = ""
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(max_length=10_000)


class PagerDutySeverity(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


class PagerDutyPayload(BaseModel):
    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: PagerDutySeverity
    timestamp: AwareDatetime | None = None
    component: str | None = Field(default=None, max_length=255)
    group: str | None = Field(default=None, max_length=255)
    class_: str | None = Field(default=None, alias="class", max_length=255)
    custom_details: Any = None


class PagerDutyEvent(BaseModel):
    """An Events API v2 alert event (the routing key is checked before this)."""

    routing_key: str
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: PagerDutyPayload | None = None
    links: list[dict[str, Any]] = Field(default_factory=list)
    images: list[dict[str, Any]] = Field(default_factory=list)
    client: str | None = None
    client_url: str | None = None


class PagerDutyChangePayload(BaseModel):
    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(default="", max_length=255)
    timestamp: AwareDatetime | None = None
    custom_details: dict[str, Any] = Field(default_factory=dict)


class PagerDutyChangeEvent(BaseModel):
    routing_key: str
    payload: PagerDutyChangePayload
    links: list[dict[str, Any]] = Field(default_factory=list)
