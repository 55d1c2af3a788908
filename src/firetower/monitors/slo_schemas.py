"""Input and output shapes of SLOs, pushed SLI events and SLA targets and reports.

Numbers in input are strict: ``true`` or ``"99.9"`` is refused, not read as 1 or 99.9 (a JSON
integer still fills a float field).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from firetower.clock import UtcDatetime
from firetower.monitors.probe_schemas import field_error
from firetower.text import NO_NUL

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
MAX_QUERY_CHARS = 10_000
MAX_EVENTS_PER_PUSH = 10**12
MAX_EVENTS_PER_BUCKET = 10**13
"""Good (or bad) events one minute bucket may hold, however many pushes add to it: the sum of
a window's buckets (at most ``MAX_WINDOW_DAYS`` + 10 days of minutes, 144,000) then stays far
inside the 64-bit integers the database sums them in (SQLite fails past them, and
PostgreSQL's bigint column refuses the bucket itself)."""
MAX_WINDOW_EVENTS = 2**63 - 1
"""The most events one window of an SLI may count (a 64-bit integer's range): a Prometheus
answer whose rate times the window passes it is an error, not a count (it overflowed the
exact arithmetic of the burn rates, or was infinite)."""
MAX_WINDOW_DAYS = 90
"""Pushed events are kept this long (and a little more): no window can reach further back."""
MAX_IMPORT_BYTES = 1_000_000
WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*window\s*\}\}")


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class ProbeSli(BaseModel):
    """A synthetic probe's checks: each check is an event, good when it passed (and, for
    ``latency``, answered within ``latency_threshold_ms``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["probe"] = "probe"
    probe: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    measure: Literal["availability", "latency"] = "availability"
    latency_threshold_ms: int | None = Field(default=None, ge=1, le=600_000, strict=True)

    @model_validator(mode="after")
    def _threshold(self) -> ProbeSli:
        if self.measure == "latency" and self.latency_threshold_ms is None:
            raise ValueError("latency_threshold_ms is required when measure is latency")
        if self.measure == "availability" and self.latency_threshold_ms is not None:
            raise ValueError("latency_threshold_ms is only for measure: latency")
        return self


class PrometheusSli(BaseModel):
    """A ratio of two PromQL queries over the Prometheus HTTP API.

    Give ``error_query`` (bad events) or ``good_query``, and ``total_query``; ``{{window}}``
    in them is replaced by each window (``5m``, ``1h``, ... and the SLO's ``30d``). The
    queries should return per-second rates (``rate(...[{{window}}])``), as Sloth and OpenSLO
    examples do: events in a window are the rate times the window's seconds.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["prometheus"] = "prometheus"
    url: str | None = Field(
        default=None,
        max_length=2000,
        description="Prometheus base URL; the server's prometheus_url setting when absent.",
    )
    error_query: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS)
    good_query: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS)
    total_query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)

    _url = field_validator("url")(_http_url)

    @field_validator("error_query", "good_query", "total_query")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if value is not None and not WINDOW_PLACEHOLDER.search(value):
            raise ValueError("must use {{window}} as its range, e.g. rate(x[{{window}}])")
        return value

    @model_validator(mode="after")
    def _one_numerator(self) -> PrometheusSli:
        if (self.error_query is None) == (self.good_query is None):
            raise ValueError("give exactly one of error_query and good_query")
        return self


class EventsSli(BaseModel):
    """Good and bad counts pushed to ``POST /api/v1/slos/{name}/events``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["events"] = "events"


Sli = Annotated[ProbeSli | PrometheusSli | EventsSli, Field(discriminator="kind")]


class SLOCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    service: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    objective_percent: float = Field(gt=0, le=99.9999, allow_inf_nan=False, strict=True)
    window_days: int = Field(default=30, ge=1, le=MAX_WINDOW_DAYS, strict=True)
    sli: Sli
    min_events: int = Field(
        default=20,
        ge=0,
        le=10**12,
        strict=True,
        description="Minimum-traffic guard: fewer events in a rule's long window never alert.",
    )
    description: str = Field(default="", max_length=2000, pattern=NO_NUL)


class SLOState(StrEnum):
    pending = "pending"
    """Never evaluated yet: nothing is known about its budget."""
    ok = "ok"
    ticket = "ticket"
    page = "page"


class SLORead(BaseModel):
    """An SLO with its latest evaluation (budget and burn rates); None before the first."""

    name: str
    service: str
    description: str
    objective_percent: float
    window_days: int
    min_events: int
    sli: dict[str, Any]
    sli_summary: str
    state: SLOState
    budget_remaining_percent: float | None
    budget_consumed_percent: float | None
    burn_rates: dict[str, float | None]
    current_burn_rate: float | None = Field(description="The burn rate over the last hour.")
    last_evaluated_at: datetime | None
    last_error: str | None


class SLOEvents(BaseModel):
    """Counts of good and bad events; ``timestamp`` (default now) picks the minute bucket."""

    model_config = ConfigDict(extra="forbid")
    good: int = Field(ge=0, le=MAX_EVENTS_PER_PUSH, strict=True)
    bad: int = Field(ge=0, le=MAX_EVENTS_PER_PUSH, strict=True)
    timestamp: UtcDatetime | None = None


class SLOEventsAccepted(BaseModel):
    slo: str
    bucket_start: datetime
    good: int
    bad: int


class EvaluationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    level: SLOState
    budget_remaining: float | None
    window_events: float
    burn_rates: dict[str, float | None]
    fired: list[str]
    error: str | None


class ImportFormat(StrEnum):
    auto = "auto"
    sloth = "sloth"
    openslo = "openslo"


class SLOImport(BaseModel):
    """Body of ``POST /api/v1/slos/import``: a Sloth or OpenSLO YAML file's text."""

    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=MAX_IMPORT_BYTES)
    format: ImportFormat = ImportFormat.auto
    prometheus_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Prometheus base URL for the imported SLOs (the files do not say).",
    )

    _url = field_validator("prometheus_url")(_http_url)


class ApplySummary(BaseModel):
    """What ``apply_slos`` (and an import) did, by SLO name."""

    format: str | None = None
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


class SlaKind(StrEnum):
    uptime = "uptime"
    latency = "latency"


class SlaTargetCreate(BaseModel):
    """A monthly target for a service, measured by one of its SLOs or by a probe.

    ``uptime``: the share of good events (an availability SLO, or a probe's passing checks).
    ``latency``: a percentile target, e.g. 99 (% of checks) under ``latency_threshold_ms``;
    measured by a probe (give the threshold) or by a latency SLO (its own threshold).
    """

    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    kind: SlaKind
    target_percent: float = Field(gt=0, le=100, allow_inf_nan=False, strict=True)
    slo: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME_PATTERN)
    probe: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME_PATTERN)
    latency_threshold_ms: int | None = Field(default=None, ge=1, le=600_000, strict=True)

    @model_validator(mode="after")
    def _source(self) -> SlaTargetCreate:
        if (self.slo is None) == (self.probe is None):
            raise ValueError("give exactly one source: slo or probe")
        if self.probe is not None and self.kind == SlaKind.latency:
            if self.latency_threshold_ms is None:
                raise field_error(
                    type(self).__name__,
                    ("latency_threshold_ms",),
                    "a latency target measured by a probe needs latency_threshold_ms",
                    None,
                )
        elif self.latency_threshold_ms is not None:
            raise field_error(
                type(self).__name__,
                ("latency_threshold_ms",),
                "latency_threshold_ms is only for a latency target from a probe",
                self.latency_threshold_ms,
            )
        return self


class SlaTargetRead(BaseModel):
    id: int
    service: str
    kind: SlaKind
    target_percent: float
    slo: str | None
    probe: str | None
    latency_threshold_ms: int | None


class SlaLine(BaseModel):
    """One target's month: achieved is None when the source saw no events."""

    kind: SlaKind
    source: str
    target_percent: float
    achieved_percent: float | None
    breached: bool
    events: float
    downtime_minutes_allowed: float
    downtime_minutes_used: float | None
    error: str | None = None


class SlaServiceReport(BaseModel):
    service: str
    breached: bool
    targets: list[SlaLine]


class SlaReport(BaseModel):
    month: str
    starts_at: datetime
    ends_at: datetime
    complete: bool = Field(description="False while the month is still running.")
    services: list[SlaServiceReport]
