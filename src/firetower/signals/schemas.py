"""Input and output shapes: the integration admin API and the payloads senders post.

The Alertmanager, Grafana and PagerDuty shapes follow those tools' documented formats;
unknown fields are ignored (senders add fields over time), wrong types are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from firetower import clock
from firetower.clock import UtcDatetime, in_utc
from firetower.incidents.lifecycle import Severity
from firetower.patterns import check_pattern
from firetower.text import NO_NUL, VISIBLE

NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"


class IntegrationKind(StrEnum):
    alertmanager = "alertmanager"
    pagerduty = "pagerduty"
    grafana = "grafana"
    generic = "generic"


EXPRESSION_TOO_DEEP = "the expression nests too deeply to be read"


def _expression(value: str | None) -> str | None:
    """A JMESPath expression, refused here (at creation) rather than at the first alert."""
    if value is None:
        return None
    try:
        parsed = jmespath.compile(value).parsed
    except JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression: {exc}") from None
    except RecursionError:  # its parser recurses once per level: (((a))), !!!a, [[[a]]]
        raise ValueError(EXPRESSION_TOO_DEEP) from None
    if (problem := _never_runs(parsed)) is not None:
        raise ValueError(problem)
    return value


_FUNCTIONS = Functions().FUNCTION_TABLE


def _never_runs(parsed: dict[str, Any]) -> str | None:
    """What makes a parsed expression fail on every document it is applied to, which the
    parser leaves to the search: an unknown function, a function given the wrong number of
    arguments, a slice whose step is 0. A loop: the tree is as deep as the expression."""
    pending = [parsed]
    while pending:
        node = pending.pop()
        children = node.get("children", [])
        kind = node.get("type")
        if kind == "slice":
            if len(children) == 3 and children[2] == 0:
                return "a slice's step must not be 0 (as in [::0])"
            continue
        if kind == "function_expression":
            name = node.get("value")
            found = _FUNCTIONS.get(name)
            if found is None:
                return f"no JMESPath function is called {name}()"
            signature = found["signature"]
            variadic = bool(signature) and bool(signature[-1].get("variadic"))
            if len(children) < len(signature) or (not variadic and len(children) > len(signature)):
                at_least = "at least " if variadic else ""
                return f"{name}() takes {at_least}{len(signature)} argument(s), not {len(children)}"
        pending.extend(child for child in children if isinstance(child, dict))
    return None


RESOLVED_VALUE_LENGTH = 100
"""The longest resolved value of a generic mapping: a status word, not a sentence. None may
be blank either (a status is read stripped, so it never matches), or hold what no database
stores alike (a NUL, half a surrogate pair: refused by the pattern)."""


class GenericMapping(BaseModel):
    """Where a generic webhook's JSON document keeps each part of an alert (JMESPath)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)
    severity: str | None = Field(default=None, min_length=1, max_length=1000, pattern=NO_NUL)
    dedup_key: str | None = Field(default=None, min_length=1, max_length=1000, pattern=NO_NUL)
    service: str | None = Field(default=None, min_length=1, max_length=1000, pattern=NO_NUL)
    status: str | None = Field(default=None, min_length=1, max_length=1000, pattern=NO_NUL)
    resolved_values: list[
        Annotated[str, Field(max_length=RESOLVED_VALUE_LENGTH, pattern=VISIBLE)]
    ] = Field(
        default_factory=lambda: ["resolved", "ok"],
        max_length=20,
        description="Values of `status` (compared case-insensitively) that mean resolved; "
        "any other value, or none, means firing.",
    )

    _compiles = field_validator("title", "severity", "dedup_key", "service", "status")(_expression)


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
    mapping: GenericMapping | None = Field(
        default=None,
        validate_default=True,  # so that a generic integration without one is named
        description="Required for, and only for, the generic kind.",
    )
    group_by: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field(
        default_factory=lambda: ["alertname", "service"],
        max_length=20,
        description="Label keys whose values put alerts in one group; [] puts all in one.",
    )
    flap_threshold: int = Field(
        default=5, ge=2, le=1000, description="State changes within the window that flap."
    )
    flap_window_seconds: int = Field(default=600, ge=1, le=7 * 24 * 3600)

    @field_validator("group_by")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("group_by must not repeat a key")
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping_for_generic(
        cls, value: GenericMapping | None, info: ValidationInfo
    ) -> GenericMapping | None:
        """Checked on the field, so that the refusal names ``mapping`` (the field to give or
        to leave out), not the whole body. A ``kind`` that failed is reported on its own."""
        kind = info.data.get("kind")
        if kind == IntegrationKind.generic and value is None:
            raise ValueError("a generic integration needs a mapping")
        if kind is not None and kind != IntegrationKind.generic and value is not None:
            raise ValueError(f"only a generic integration takes a mapping, not {kind.value}")
        return value


class IntegrationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    kind: IntegrationKind
    service_name: str | None
    key_prefix: str
    mapping: dict[str, Any] | None = None
    group_by: list[str]
    flap_threshold: int
    flap_window_seconds: int
    created_at: datetime
    revoked_at: datetime | None


class IntegrationWithKey(IntegrationRead):
    key: str = Field(description="The ingest key; shown this once, only its hash is stored.")


class RejectedPayloadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    integration_id: int | None
    """Kept for compatibility; ``integration`` names it as every other endpoint does."""
    integration: str | None
    """The integration's name; None when the payload came with no (or a deleted) one."""
    received_at: datetime
    reason: str
    body: str
    """The body as received (UTF-8, an invalid byte as U+FFFD), its first 64 KiB at most."""
    received_bytes: int
    """The size of the body as received."""
    truncated: bool
    """Whether ``body`` is only the start of it."""


def _no_zero_time(value: datetime | None) -> datetime | None:
    """Alertmanager sends ``0001-01-01T00:00:00Z`` for "no end yet". A time in year 9999
    is checked to fit once in UTC here, in the call every alert makes already."""
    if value is None or value.year <= 1:
        return None
    return in_utc(value) if value.year >= 9999 else value


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


class GrafanaAlert(AlertmanagerAlert):
    """Grafana adds URLs and values to Alertmanager's alert; they are kept as annotations."""

    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    valueString: str = ""


class GrafanaPayload(BaseModel):
    """Grafana unified alerting's webhook payload (version 1; Alertmanager's plus a title)."""

    version: str = "1"
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    title: str = ""
    message: str = ""
    alerts: list[GrafanaAlert] = Field(max_length=10_000)


class ReportCreate(BaseModel):
    """A person's report that something is broken."""

    model_config = ConfigDict(extra="forbid")
    what: str = Field(min_length=1, max_length=1000, pattern=NO_NUL, description="What is broken.")
    where: str = Field(
        default="",
        max_length=200,
        pattern=NO_NUL,
        description="A catalog service name, or free text.",
    )
    contact: str = Field(default="", max_length=200, pattern=NO_NUL)

    @field_validator("what")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class ReportRead(BaseModel):
    id: int
    fingerprint: str
    service_name: str | None
    incident: str | None = Field(description="The incident the report opened or joined.")
    opened: bool


class PagerDutySeverity(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


def _utc_when_naive(value: datetime) -> datetime:
    """An ISO 8601 time without an offset is UTC to PagerDuty: so it is here."""
    return in_utc(value.replace(tzinfo=UTC) if value.utcoffset() is None else value)


PagerDutyTime = Annotated[datetime, AfterValidator(_utc_when_naive)]
"""A ``payload.timestamp``: with an offset as given, without one as UTC (PagerDuty takes
``2026-11-30T10:00:00``); in UTC, and one UTC can hold (as ``UtcDatetime``)."""


class PagerDutyPayload(BaseModel):
    summary: str = Field(min_length=1, max_length=1024, pattern=VISIBLE)
    source: str = Field(min_length=1, max_length=255)
    severity: PagerDutySeverity
    timestamp: PagerDutyTime | None = None
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

    @model_validator(mode="before")
    @classmethod
    def _only_a_trigger_describes(cls, data: Any) -> Any:
        """PagerDuty reads the payload, links, images and client of a trigger only: an
        acknowledge or resolve that carries them (a partial payload, say) is not refused."""
        if isinstance(data, dict) and data.get("event_action") in ("acknowledge", "resolve"):
            return {name: value for name, value in data.items() if name not in _TRIGGER_ONLY}
        return data


_TRIGGER_ONLY = frozenset({"payload", "links", "images", "client", "client_url"})


class PagerDutyChangePayload(BaseModel):
    summary: str = Field(min_length=1, max_length=1024, pattern=VISIBLE)
    source: str = Field(default="", max_length=255)
    timestamp: PagerDutyTime | None = None
    custom_details: dict[str, Any] = Field(default_factory=dict)


class PagerDutyChangeEvent(BaseModel):
    routing_key: str
    payload: PagerDutyChangePayload
    links: list[dict[str, Any]] = Field(default_factory=list)


class ChangeEventRead(BaseModel):
    id: int
    integration: str
    service_name: str | None = Field(
        description="The integration's service, else the catalog service that "
        "custom_details.service or source names (any case); None when neither does."
    )
    summary: str
    source: str
    timestamp: datetime = Field(description="When the change happened (the sender's time).")
    received_at: datetime
    custom_details: dict[str, Any]
    links: list[dict[str, Any]]


# -- silences and maintenance windows -----------------------------------------------------------
class MatchOp(StrEnum):
    equal = "="
    not_equal = "!="
    regex = "=~"
    not_regex = "!~"


class Matcher(BaseModel):
    """One label condition. A missing label reads as "" (as in Alertmanager); regexes are
    RE2 syntax (as Alertmanager's), matched against the whole value (``=~ "api"`` is
    ``^(?:api)$``)."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    op: MatchOp
    value: str = Field(max_length=1000, pattern=NO_NUL)

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("op") in (MatchOp.regex, MatchOp.not_regex):
            check_pattern(value)
        return value


SILENCE_MAX_SECONDS = 366 * 24 * 3600
"""The longest silence given as a length: a year, as the one-click silence allows."""


class SilenceCreate(BaseModel):
    """Matchers, and an end given either as ``ends_at`` or as ``duration_seconds``: a length
    the server measures from ``starts_at`` or its own now, so a client whose clock is off
    still makes a silence of the length it meant."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(min_length=1, max_length=50)
    starts_at: UtcDatetime | None = Field(default=None, description="Now when left out.")
    ends_at: UtcDatetime | None = Field(
        default=None, description="Exactly one of ends_at and duration_seconds."
    )
    duration_seconds: int | None = Field(
        default=None,
        gt=0,
        le=SILENCE_MAX_SECONDS,
        description="How long from starts_at (or from the server's now when starts_at is "
        "left out); exactly one of ends_at and duration_seconds.",
    )
    comment: str = Field(default="", max_length=2000, pattern=NO_NUL)

    @model_validator(mode="after")
    def _one_end(self) -> SilenceCreate:
        if (self.ends_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ends_at and duration_seconds")
        return self


class SilenceState(StrEnum):
    """Where a silence is in its life; the default lists show the first two."""

    active = "active"
    pending = "pending"  # starts later
    expired = "expired"  # ended early by someone
    ended = "ended"

    @classmethod
    def at(
        cls, now: datetime, starts_at: datetime, ends_at: datetime, expired_at: datetime | None
    ) -> SilenceState:
        if expired_at is not None:
            return cls.expired
        if ends_at <= now:
            return cls.ended
        if starts_at > now:
            return cls.pending
        return cls.active


class SilenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> SilenceState:
        """As of the answer: a client need not compare times with its own clock."""
        return SilenceState.at(clock.now(), self.starts_at, self.ends_at, self.expired_at)


class AlertSilenceCreate(BaseModel):
    """Silence one alert in one click: ``=`` on each of its labels, from now."""

    model_config = ConfigDict(extra="forbid")
    duration_minutes: int = Field(gt=0, le=366 * 24 * 60)
    comment: str = Field(default="", max_length=2000, pattern=NO_NUL)


class MaintenanceWindowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    starts_at: UtcDatetime | None = Field(default=None, description="Now when left out.")
    ends_at: UtcDatetime
    comment: str = Field(default="", max_length=2000, pattern=NO_NUL)


class MaintenanceWindowRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    service_name: str
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str


# -- alerts and groups -------------------------------------------------------------------------
class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"
    acknowledged = "acknowledged"


class AlertRead(BaseModel):
    id: int
    integration: str
    fingerprint: str
    status: str
    title: str
    severity: str
    service_name: str | None
    labels: dict[str, Any]
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="As the sender gave them (summary, description, runbook_url, "
        "Alertmanager's and Grafana's generatorURL, Grafana's dashboardURL, panelURL, "
        "valueString...); values that are not text, as JSON.",
    )
    group_key: str
    count: int = Field(
        description="How many signals it received: the first, repeats, acknowledges and "
        "resolves alike."
    )
    starts_at: datetime | None = Field(
        default=None,
        description="When the sender says the alert began (Alertmanager's startsAt, a "
        "PagerDuty trigger's timestamp); None when it said nothing.",
    )
    ends_at: datetime | None = Field(
        default=None,
        description="When it ended: as its sender gave it (Alertmanager's endsAt), else "
        "the first resolve since it last fired (a repeated resolve keeps it); None when "
        "unknown.",
    )
    first_seen_at: datetime
    last_seen_at: datetime
    silenced: bool
    flapping: bool
    incident: str | None
    inhibited: bool = False
    inhibited_by: int | None = Field(default=None, description="The inhibiting alert's id.")
    inhibit_rule: str | None = Field(default=None, description="The inhibition rule that did.")
    routed_by: str | None = Field(
        default=None, description="The routing rule that decided its last routing (None: none)."
    )
    routing_action: str | None = Field(
        default=None, description="What its last routing did: open, attach, notify or drop."
    )
    status_by: str | None = Field(
        default=None,
        description="The person who acknowledged or resolved it by hand; None when its "
        "sender set its status.",
    )


class AlertGroupRead(BaseModel):
    group_key: str
    integration: str
    firing: int = Field(description="Alerts of the group not resolved (firing or acknowledged).")
    resolved: int
    last_seen_at: datetime
    incident: str | None = Field(description="The latest incident an alert of it opened or joined.")


# -- routing rules and inhibition rules ---------------------------------------------------------
INTEGRATION_LABEL = "@integration"
"""The pseudo-label matchers of routing and inhibition rules read the integration's name from
("@" is not allowed in Prometheus label names, so no real label takes it)."""


class RoutingAction(StrEnum):
    open = "open"
    attach = "attach"
    notify = "notify"
    drop = "drop"


class OnClear(StrEnum):
    note = "note"
    resolve = "resolve"


LabelValue = Annotated[str, Field(max_length=1000, pattern=NO_NUL)]
LabelKey = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]


class SeverityMap(BaseModel):
    """The severity from one label's value, e.g. ``severity``: critical → SEV1."""

    model_config = ConfigDict(extra="forbid")
    label: LabelKey
    values: dict[LabelValue, Severity] = Field(min_length=1, max_length=100)


class RoutingRuleIn(BaseModel):
    """A routing rule as written in firetower.yaml or sent to the API."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=NAME, max_length=100)
    matchers: list[Matcher] = Field(
        default_factory=list,
        max_length=50,
        description="All must hold; none matches every alert. The pseudo-label "
        "`@integration` is the integration's name.",
    )
    service: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="The catalog service to route to (else the alert's own).",
    )
    severity: Severity | None = Field(
        default=None, description="A fixed severity, or the fallback of `severity_map`."
    )
    severity_map: SeverityMap | None = Field(
        default=None,
        description="The severity from a label's value; unlisted values fall back to `severity`.",
    )
    action: RoutingAction = RoutingAction.open
    on_clear: OnClear = Field(
        default=OnClear.note,
        description="When every alert of its incident has resolved: note it or resolve it.",
    )
    continue_: bool = Field(
        default=False, alias="continue", description="Let later matching rules apply too."
    )
    description: str = Field(default="", max_length=2000, pattern=NO_NUL)

    @field_validator("on_clear")
    @classmethod
    def _clear_needs_an_incident(cls, value: OnClear, info: ValidationInfo) -> OnClear:
        action = info.data.get("action")
        if value == OnClear.resolve and action in (RoutingAction.notify, RoutingAction.drop):
            raise ValueError(f"on_clear resolve needs an open or attach rule, not {action}")
        return value

    @field_validator("continue_")
    @classmethod
    def _drop_is_final(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("action") == RoutingAction.drop:
            raise ValueError("a drop rule ends the walk: it cannot continue")
        return value


class RoutingRuleCreate(RoutingRuleIn):
    position: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Where in the order (0 is first); the end when left out. On a replace, "
        "left out keeps the rule where it is.",
    )


class RoutingRulesReplace(BaseModel):
    """The whole ordered list, replaced at once."""

    model_config = ConfigDict(extra="forbid")
    rules: list[RoutingRuleIn] = Field(max_length=1000)


class RoutingRuleRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str
    position: int
    matchers: list[Matcher]
    service: str | None
    severity: Severity | None
    severity_map: SeverityMap | None
    action: RoutingAction
    on_clear: OnClear
    continue_: bool = Field(alias="continue")
    description: str
    created_at: datetime
    updated_at: datetime


class RouteTest(BaseModel):
    """An example alert: which rules would it hit?"""

    model_config = ConfigDict(extra="forbid")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=100)
    integration: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="The integration it comes from (`@integration`); when it names one, its "
        "service is the alert's own as at intake.",
    )
    pagerduty: PagerDutyPayload | None = Field(
        default=None,
        description="An Events v2 trigger's `payload`, instead of `labels`: the alert's labels "
        "and severity are read from it as `/v2/enqueue` reads them.",
    )


class RouteTestResult(BaseModel):
    matched: list[str] = Field(description="The rules that match, in order, up to where it stops.")
    decided_by: str | None = Field(
        description="The rule whose action decides; None when no rule matched (default routing)."
    )
    action: RoutingAction
    notify: list[str] = Field(description="The rules that would enqueue a notification.")
    service: str | None
    severity: Severity
    on_clear: OnClear
    outcome: str = Field(
        description="What intake would do with the alert now, in words: which incident it "
        "joins or opens, or why it opens none (no known service, an attach with none to "
        "join). Silences, maintenance windows, inhibition and flapping are not applied."
    )


class InhibitRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, max_length=100)
    source_matchers: list[Matcher] = Field(min_length=1, max_length=50)
    target_matchers: list[Matcher] = Field(min_length=1, max_length=50)
    equal: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field(
        default_factory=list,
        max_length=20,
        description='Labels whose values must be the same on source and target (missing = "").',
    )
    description: str = Field(default="", max_length=2000, pattern=NO_NUL)

    @field_validator("equal")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("equal must not repeat a label")
        return value


class InhibitRulesReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[InhibitRuleIn] = Field(max_length=1000)


class InhibitRuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    source_matchers: list[Matcher]
    target_matchers: list[Matcher]
    equal: list[str]
    description: str
    created_at: datetime
    updated_at: datetime
