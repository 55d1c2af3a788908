"""Signal operations: integrations and their keys, alert intake with dedup, minimal routing.

Every adapter (Alertmanager, Grafana, PagerDuty, the generic webhook, user reports) turns
what it got into ``Signal`` values and hands them to ``receive``, then calls ``finish``.

Routing (for now): a firing alert whose service is in the catalog opens an incident for it,
unless that service already has an active incident, which the alert then joins. Every intake
request is one transaction; a refused one stores nothing but its raw body (``reject``).

Silences and maintenance windows mute intake: a firing alert they cover is stored and
deduplicated as usual, marked ``silenced``, and opens or attaches nothing. So does a
``flapping`` one: it changed between firing and resolved ``flap_threshold`` times within
``flap_window_seconds`` (settings of its integration), until a whole window passes unchanged.

Alerts are grouped by the values of their integration's ``group_by`` label keys
(``group_key``); ``list_groups`` sums each group up.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    bindparam,
    case,
    delete,
    false,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from firetower import clock, jobs
from firetower.auth.schemas import Role
from firetower.auth.service import Actor, digest_secret
from firetower.catalog import service as catalog
from firetower.catalog.models import Service
from firetower.db import MAX_ID
from firetower.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from firetower.incidents import service as incidents
from firetower.incidents.lifecycle import ACTIVE, Severity, Source, Status, format_ref
from firetower.incidents.models import Incident, TimelineEvent, incident_services
from firetower.incidents.schemas import IncidentCreate
from firetower.problems import validation_message
from firetower.settings import SeverityPolicy
from firetower.signals import intake_cache, intake_rows
from firetower.signals.intake_cache import IncidentsView, RoutingView, ServiceRef
from firetower.signals.intake_rows import AlertRow
from firetower.signals.models import (
    Alert,
    ChangeEvent,
    InhibitRule,
    Integration,
    MaintenanceWindow,
    RejectedPayload,
    RoutingRule,
    Silence,
)
from firetower.signals.routing import (
    Decision,
    Matchers,
    Routing,
    Rule,
    silence_holds,
)
from firetower.signals.routing import Source as InhibitSource
from firetower.signals.schemas import (
    INTEGRATION_LABEL,
    AlertGroupRead,
    AlertmanagerAlert,
    AlertmanagerPayload,
    AlertRead,
    AlertSilenceCreate,
    AlertStatus,
    ChangeEventRead,
    GenericMapping,
    GrafanaPayload,
    InhibitRuleIn,
    IntegrationCreate,
    IntegrationKind,
    MaintenanceWindowCreate,
    Matcher,
    MatchOp,
    OnClear,
    PagerDutyChangeEvent,
    PagerDutyEvent,
    PagerDutyPayload,
    ReportCreate,
    RouteTest,
    RouteTestResult,
    RoutingAction,
    RoutingRuleCreate,
    RoutingRuleIn,
    RoutingRuleRead,
    SilenceCreate,
)
from firetower.text import with_article

KEY_LENGTH = 32
"""Ingest keys are 32 hex characters, like PagerDuty's: its client libraries expect that."""
KEY_PREFIX_LENGTH = 8
GROUP_KEY_LENGTH = 1024
_GROUP_KEY_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\="})
"""What ``group_key_of`` escapes in label names and values: the characters that build a key."""
_SHORTENED_TAIL = re.compile(r"#[0-9a-f]{32}\Z")
"""The end of a group key cut to ``GROUP_KEY_LENGTH``."""
DEAD_LETTER_KEEP = 1000
DEAD_LETTER_BODY_BYTES = 64 * 1024
REDACTED_KEY = b"[routing key]"
"""What a dead letter holds in place of the integration key its body carried."""
SEVERITIES = {
    "critical": Severity.SEV1,
    "error": Severity.SEV2,
    "warning": Severity.SEV3,
    "info": Severity.SEV4,
}
DEFAULT_SEVERITY = Severity.SEV3
ACTION_VALUES = {action: action.value for action in RoutingAction}
ON_CLEAR_VALUES = {on_clear: on_clear.value for on_clear in OnClear}
SEVERITY_VALUES = {severity: severity.value for severity in Severity}
"""Enum values read once: an enum's ``.value`` costs a descriptor call, per alert."""
ATTACH = RoutingAction.attach.value
JOINING_ACTIONS = frozenset({RoutingAction.open.value, ATTACH})
"""The routing actions that join an incident: a firing alert so routed that joined none
(an attach with no incident to join, an alert with no known service) routes again on
each repeat, so that it joins one once there is one to join."""
NOTIFY_KIND = "signals.notify"
"""The job a notify routing rule enqueues: ``{"alert_id", "rule", "status", "fired_at"}``,
the last two the alert's status and the time it was recorded when the rule fired on it."""
ATTACHED_KIND = "signals.attached"
"""The job that sums up a minute's attachments to an incident: ``{"incident_id", "since",
"until"}``, run at ``until``; it notes the incident's ``AttachTally`` rows."""
RETENTION_KIND = "signals.retention"
"""The job that deletes resolved alerts past the retention (``{"keep_days"}``): hourly, and
at once again while a run leaves more (``delete_expired_alerts``)."""
SETTLE_HELD_KIND = "signals.settle_held"
"""The minutely job that settles the alerts flapping or a mute held once it is over, with no
signal (``settle_flapping``, ``settle_unmuted``)."""
RETENTION_CHUNK_ALERTS = 2_000
"""The most alerts one retention transaction deletes: on SQLite it holds the write turn that
intake waits for (``bench.console_lists`` times one)."""
ATTACH_NOTE_WINDOW = timedelta(minutes=1)
"""An incident gets at most two attach notes a minute however many alerts join it: one
at once for the first request of the minute, one summing up the rest when it ends."""
SHOWN_TITLES = 10
"""The alert titles an attach note names at most."""
UNRESOLVED_STATUSES = tuple(s.value for s in AlertStatus if s is not AlertStatus.resolved)
"""The alert statuses that keep an incident's alerts from having all cleared."""
LISTED_STATUSES = (*UNRESOLVED_STATUSES, AlertStatus.resolved.value)
"""Every status, in the console's alert list's order: firing, acknowledged, resolved."""
REPORT_KIND = "user-report"
BUILTIN_PREFIX = "@"
REPORT_INTEGRATION = "@user-reports"
"""User reports are filed under one built-in integration; "@" keeps its name out of reach
of the names admins may give (``NAME``), and its kind out of every intake endpoint."""
PROBE_INTEGRATION = "@probes"
SLO_INTEGRATION = "@slos"
BUILTIN_INTEGRATIONS = frozenset({REPORT_INTEGRATION, PROBE_INTEGRATION, SLO_INTEGRATION})
"""Made on first use (``builtin_integration``), yet named by filters and the route test
before that: a team writes rules for reports before the first one arrives."""
BUILTIN_SOURCES = {
    REPORT_INTEGRATION: Source.user_report,
    PROBE_INTEGRATION: Source.probe,
    SLO_INTEGRATION: Source.slo,
}
"""The source of an incident a built-in integration's alert opens, whoever routes it: its
monitor (``raise_internal``) or the job that routes it once a mute is over."""

OwnSeverity = Callable[[Session, Mapping[str, str]], Severity]
"""How a built-in source sets the severity of the alert it raises, told from its labels."""
_BUILTIN_SEVERITIES: dict[str, OwnSeverity] = {
    REPORT_INTEGRATION: lambda session, labels: DEFAULT_SEVERITY,  # a report gives none
}


def own_severity_from(integration: str, reader: OwnSeverity) -> None:
    """Tell the route test how a built-in source (probes, SLOs) sets its alerts' severity:
    it is the source's own setting, not a label, and signals may not ask the domains above it.
    The sources call this when a runtime is assembled (``build_runtime``), never at import,
    so no entry point depends on what it happened to import first."""
    _BUILTIN_SEVERITIES[integration] = reader


# -- integrations ------------------------------------------------------------------------------
def _new_key(session: Session, integration: Integration) -> str:
    """A fresh key for ``integration``, drawn again while another integration (a revoked one
    too) holds its prefix: a key is found by its prefix, which the table stores once, so a
    taken one would make the change fail as a conflict the admin cannot act on."""
    while True:
        key = secrets.token_hex(KEY_LENGTH // 2)
        prefix = key[:KEY_PREFIX_LENGTH]
        holder = session.scalar(select(Integration.id).where(Integration.key_prefix == prefix))
        if holder is None or holder == integration.id:
            break
    integration.key_prefix = prefix
    integration.key_hash = digest_secret(key)
    return key


def create_integration(
    session: Session, actor: Actor, data: IntegrationCreate
) -> tuple[Integration, str]:
    """Make an integration; its key is returned once and only its hash is stored."""
    actor.require(Role.admin)
    taken = session.scalar(select(Integration).where(Integration.name == data.name))
    if taken is not None:
        revoked = ", revoked: its alerts keep the name; choose another" if taken.revoked_at else ""
        raise Conflict(f"an integration named {data.name} already exists{revoked}", field="name")
    _check_services(session, [(data.service_name, "service_name")])
    integration = Integration(
        name=data.name,
        kind=data.kind.value,
        service_name=data.service_name,
        mapping=data.mapping.model_dump() if data.mapping is not None else None,
        group_by=list(data.group_by),
        flap_threshold=data.flap_threshold,
        flap_window_seconds=data.flap_window_seconds,
        created_at=clock.now(),
    )
    key = _new_key(session, integration)
    session.add(integration)
    session.flush()
    return integration, key


def _not_builtin() -> Any:
    """Built-in integrations (user reports, probes, SLOs) are not for admins to manage."""
    return ~Integration.name.startswith(BUILTIN_PREFIX)


def get_integration(session: Session, name: str) -> Integration:
    integration = session.scalar(
        select(Integration).where(Integration.name == name).where(_not_builtin())
    )
    if integration is None:
        raise NotFound(f"no integration named {name!r}", field="name")
    return integration


def from_integration(session: Session, column: Any, name: str) -> ColumnElement[bool]:
    """The condition that ``column`` (an integration id) is the integration called ``name``,
    for the lists' ``integration`` filter. A built-in one not made yet has sent nothing, so
    nothing matches; any other unknown name is a 404 naming that parameter."""
    found = session.scalar(select(Integration.id).where(Integration.name == name))
    if found is not None:
        return column == found
    if name in BUILTIN_INTEGRATIONS:
        return false()
    raise NotFound(f"no integration named {name!r}", field="integration")


SORTED_AT_MOST = 10_000
"""An incident with at most this many alerts of a status has them read by incident and
sorted; with more, the list walks that status's newest alerts instead (``newest_alerts``)."""


@dataclass(frozen=True)
class IncidentFilter:
    """The lists' ``incident`` filter: the alerts whose incident (the one they opened or
    last joined) is this one, and how to read each status of them quickly."""

    condition: ColumnElement[bool]
    sorted_statuses: frozenset[str] = frozenset()
    """On SQLite, the statuses it has at most ``SORTED_AT_MOST`` alerts of. Asked for an
    incident's newest alerts of a status, SQLite, which keeps no statistics, walks every
    alert of that status newest first (one index has status and last-seen time): for a
    small incident in a storm, every stored alert (86 ms over 200,000). Its own alerts,
    sorted, are fewer. PostgreSQL's planner weighs the two by its statistics itself."""


def in_incident(session: Session, ref: str) -> IncidentFilter:
    """The filter for incident ``ref`` (``INC-7``). A reference that is malformed (422) or
    names no incident (404) is refused, naming the parameter, rather than listing nothing."""
    incident_id = incidents.get_incident(session, ref, field="incident").id
    condition = Alert.incident_id == incident_id
    if session.get_bind().dialect.name != "sqlite":
        return IncidentFilter(condition)
    counts = session.execute(  # from the incident's entries of ix_alerts_incident_status
        select(Alert.status, func.count()).where(condition).group_by(Alert.status)
    )
    few = frozenset(status for status, number in counts if number <= SORTED_AT_MOST)
    return IncidentFilter(condition, few)


def list_integrations(session: Session) -> list[Integration]:
    return list(
        session.scalars(select(Integration).where(_not_builtin()).order_by(Integration.name))
    )


def rotate_key(session: Session, actor: Actor, name: str) -> tuple[Integration, str]:
    """A new key; the old one stops working when this commits."""
    actor.require(Role.admin)
    integration = get_integration(session, name)
    if integration.revoked_at is not None:
        raise Conflict(f"integration {name} is revoked", field="name")
    return integration, _new_key(session, integration)


def revoke(session: Session, actor: Actor, name: str) -> Integration:
    actor.require(Role.admin)
    integration = get_integration(session, name)
    if integration.revoked_at is None:
        integration.revoked_at = clock.now()
    return integration


def find_by_key(session: Session, key: str) -> Integration | None:
    """The live integration this key belongs to, or None (unknown, malformed or revoked).

    Asked once per key and transaction: requests committed together share the answer.
    """
    if len(key) != KEY_LENGTH:
        return None
    integration = Shared.of(session).live_integration(key[:KEY_PREFIX_LENGTH])
    if integration is None:
        return None
    if not hmac.compare_digest(integration.key_hash, digest_secret(key)):
        return None
    return integration


def authenticate(session: Session, key: str, kind: str | None = None) -> Integration:
    integration = find_by_key(session, key)
    if integration is None:
        raise Unauthenticated("unknown or revoked integration key")
    if kind is not None and integration.kind != kind:
        raise Unauthenticated(
            f"this key belongs to {with_article(integration.kind)} integration, "
            f"not {with_article(str(kind))} one: send its {_sent_to(integration.kind)}"
        )
    return integration


_SENT_TO: dict[str, str] = {
    IntegrationKind.alertmanager.value: "alerts to /ingest/alertmanager/<key>",
    IntegrationKind.grafana.value: "alerts to /ingest/grafana/<key>",
    IntegrationKind.generic.value: "documents to /ingest/generic/<key>",
    IntegrationKind.pagerduty.value: "events to /v2/enqueue",
}
"""Where a key of each kind is sent, for a key sent to another kind's endpoint. Every
``IntegrationKind`` has its entry (a test goes through each); ``_sent_to`` answers even so
for a kind without one."""


def _sent_to(kind: str) -> str:
    """Where a key of ``kind`` is sent: its entry in ``_SENT_TO`` or, for a kind without one,
    its own kind's endpoint, named by the kind (not a failure of the request)."""
    return _SENT_TO.get(kind, f"signals to the endpoint for {with_article(kind)} integration")


def actor_for(integration: Integration) -> Actor:
    return Actor.system(f"integration:{integration.name}")


# -- dead letters ------------------------------------------------------------------------------
def reject(
    session: Session,
    integration: Integration | None,
    reason: str,
    body: bytes,
    *,
    secret: str | None = None,
    keep: int = DEAD_LETTER_KEEP,
) -> RejectedPayload:
    """Keep the raw body of a refused request (truncated), and at most ``keep`` of them.

    ``secret`` is a key the body carries (PagerDuty's ``routing_key``): keys are shown once
    and only their hash is kept, so every copy of it is stored as ``[routing key]``, however
    JSON spells it (``secret_spellings``). The raw bytes are kept otherwise as sent, since
    the body may not be JSON at all.
    """
    received_bytes = len(body)
    if secret:
        body = secret_spellings(secret).sub(REDACTED_KEY, body)
    row = RejectedPayload(
        integration_id=integration.id if integration else None,
        received_at=clock.now(),
        reason=reason[:2000],
        body=body[:DEAD_LETTER_BODY_BYTES],
        received_bytes=received_bytes,
    )
    session.add(row)
    session.flush()
    oldest_kept = session.scalar(
        select(RejectedPayload.id).order_by(RejectedPayload.id.desc()).offset(keep - 1).limit(1)
    )
    if oldest_kept is not None:
        session.execute(delete(RejectedPayload).where(RejectedPayload.id < oldest_kept))
    return row


def kept_only_its_start(row: RejectedPayload) -> bool:
    """Whether a dead letter's body is only the first ``DEAD_LETTER_BODY_BYTES`` of what came.

    Not ``len(body) < received_bytes``: a body kept with its routing key hidden is shorter
    than the one received, and whole. A redacted body of exactly the size kept, cut from a
    longer one, cannot be told from one that was cut: it reads as cut. A row stored before
    schema 0024 has the size kept as its size received, and reads as whole."""
    return len(row.body) >= DEAD_LETTER_BODY_BYTES and row.received_bytes > len(row.body)


_SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f"}
_SHORT_ESCAPES |= {"\n": b"\\n", "\r": b"\\r", "\t": b"\\t"}


def _unicode_escape(code: int) -> bytes:
    """A pattern of ``\\uXXXX`` for a UTF-16 code unit, its hex digits in either case."""
    digits = (f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{code:04x}")
    return b"\\\\u" + "".join(digits).encode()


def secret_spellings(secret: str) -> re.Pattern[bytes]:
    """A pattern of ``secret`` as a JSON string may spell it: each character as itself (in
    UTF-8), as a ``\\u`` escape (a surrogate pair beyond U+FFFF), or by its short escape
    (``\\/``, ``\\"``...). A client may escape any character (``"\\u0061bc..."``), and
    a byte replacement of the plain key left such a key readable in a dead letter."""
    parts: list[bytes] = []
    for char in secret:
        code = ord(char)
        if code > 0xFFFF:
            high, low = divmod(code - 0x10000, 0x400)
            escape = _unicode_escape(0xD800 + high) + _unicode_escape(0xDC00 + low)
        else:
            escape = _unicode_escape(code)
        spellings = [escape]
        if char in _SHORT_ESCAPES:
            spellings.append(re.escape(_SHORT_ESCAPES[char]))
        spellings.append(re.escape(char.encode("utf-8", "surrogatepass")))
        parts.append(b"(?:" + b"|".join(spellings) + b")")
    return re.compile(b"".join(parts))


def list_rejected(session: Session, limit: int = 100) -> list[tuple[RejectedPayload, str | None]]:
    """The latest dead letters, newest first, each with its integration's name (or None)."""
    query = (
        select(RejectedPayload, Integration.name)
        .outerjoin(Integration, Integration.id == RejectedPayload.integration_id)
        .order_by(RejectedPayload.id.desc())
        .limit(limit)
    )
    return [(row, name) for row, name in session.execute(query)]


MAX_JSON_DEPTH = 200
"""How deeply an intake body may nest arrays and objects. About where pydantic's reader
stops (201): Python's reader and writer recurse, and a deeper document made a 500 there
(RecursionError), or later in the response that lists what it stored."""

TOO_DEEP = f"the body nests arrays and objects more than {MAX_JSON_DEPTH} deep"


def parse_json(body: bytes) -> Any:
    """The body as JSON; ValueError (with a reason) when it is not, or holds what no
    database stores alike (``json_problem``). ``NaN`` and ``Infinity``, which Python's
    reader takes, are not JSON, and PostgreSQL's JSON columns refuse them."""
    try:
        data = json.loads(body, parse_constant=_not_a_json_number)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    if (problem := json_problem(data)) is not None:
        raise ValueError(problem)
    return data


def nests_too_deep(body: bytes) -> bool:
    """Whether a JSON body nests arrays and objects more than MAX_JSON_DEPTH deep, for a
    route whose body FastAPI reads: its reader recurses, and answers a generic 400 for a
    document deeper than Python's limit. A body with no more brackets than the limit is not
    read; one that is not JSON is left to the reader, which says so."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    try:
        level = [json.loads(body)]
    except RecursionError:
        return True
    except ValueError:  # not JSON, or not UTF-8
        return False
    depth = 0
    while level:
        inner: list[Any] = []
        for value in level:
            kind = type(value)  # exact types: the reader makes no others
            if kind is dict or kind is list:
                if depth >= MAX_JSON_DEPTH:
                    return True
                inner.extend(value.values() if kind is dict else value)
        level, depth = inner, depth + 1
    return False


def _not_a_json_number(name: str) -> Any:
    raise ValueError(f"the body is not valid JSON: {name} is not a JSON number")


HALF_SURROGATE = (
    "text must be valid Unicode, not half of a surrogate pair (\\ud800 to \\udfff alone)"
)


def json_problem(value: Any) -> str | None:
    """What is wrong with a parsed JSON document, and where (as ``alerts.0.labels.team``), or
    None: a text with a NUL or half of a surrogate pair, a number the reader made infinite
    (``1e400``: SQLite would hold ``Infinity``, which is not JSON, and PostgreSQL refuses
    it), or nesting deeper than MAX_JSON_DEPTH. A loop, not recursion: the depth is the
    sender's to choose. ``free_json_fits`` is its quick form for the PagerDuty fast path."""
    if (problem := _value_problem(value)) is not None:
        return problem
    pending: list[tuple[str, Any, int]] = [("", value, 0)]  # last in, first checked
    while pending:
        where, value, depth = pending.pop()
        kind = type(value)  # exact types: Python's reader makes no others
        if kind is not dict and kind is not list:
            continue
        if depth >= MAX_JSON_DEPTH:
            return TOO_DEEP
        nested: list[tuple[str, Any, int]] = []
        for key, item in value.items() if kind is dict else enumerate(value):
            if kind is dict and (problem := _value_problem(key)) is not None:
                return f"a key in {where}: {problem}" if where else f"a key: {problem}"
            inner = type(item)
            if inner is dict or inner is list:
                nested.append((f"{where}.{key}" if where else str(key), item, depth + 1))
            elif (problem := _value_problem(item)) is not None:
                return f"{where}.{key}: {problem}" if where else f"{key}: {problem}"
        pending.extend(reversed(nested))  # the first is checked first
    return None


def _value_problem(value: Any) -> str | None:
    """What no database stores alike in one text or number, or None."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            return "text must not contain NUL characters"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return HALF_SURROGATE
    elif kind is float and not math.isfinite(value):  # not NaN and Infinity: refused before
        return "number out of range (beyond ±1.8e308)"
    return None


def free_json_fits(event: PagerDutyEvent | PagerDutyChangeEvent) -> bool:
    """Whether the parts of an event that take any JSON (``custom_details``, ``links``,
    ``images``) hold no infinite number and nest no deeper than MAX_JSON_DEPTH in the body.
    For pydantic's reader, which takes NaN, Infinity and ``1e400`` there, and nests 201
    deep; its texts need no check (it refuses half surrogate pairs, and the route sends a
    NUL the slow way). Level by level and without places, since it runs for every event:
    ``json_problem`` then says what and where."""
    parts: list[Any] = [event.links]
    if isinstance(event, PagerDutyEvent):
        parts.append(event.images)
    details: list[Any] = [event.payload.custom_details] if event.payload is not None else []
    for level, depth in ((parts, 1), (details, 2)):  # held by the event; by it and its payload
        while level:
            inner: list[Any] = []
            for value in level:
                kind = type(value)  # exact types: the reader makes no others (and is faster)
                if kind is dict or kind is list:
                    if depth >= MAX_JSON_DEPTH:
                        return False
                    inner.extend(value.values() if kind is dict else value)
                elif kind is float and not math.isfinite(value):
                    return False
            level, depth = inner, depth + 1
    return True


# -- alerts and routing ------------------------------------------------------------------------
class Settling(Protocol):
    """What ``settle`` asks of its context: ``Shared`` in the transaction, ``Ahead`` before."""

    def rules(self) -> Routing: ...
    def muting(self) -> Mutes: ...
    def service(self, name: str | None) -> ServiceRef | None: ...
    def active_incident(self, service: ServiceRef) -> int | None: ...
    def still_active(self, incident_id: int) -> bool: ...
    def inhibitor(
        self, alert: AlertRow, integration: str, found: dict[Any, list[InhibitSource]]
    ) -> tuple[int, str] | None: ...
    def open_incident(self, intake: Intake, alert: AlertRow, service: ServiceRef) -> int: ...


class Shared:
    """What every intake operation of one transaction reads alike, read once for all of them.

    Concurrent intake requests are committed together (group commit), so the integrations,
    rules, silences, services and active incidents are looked up once per transaction
    rather than once per request, and most of them not even that: they come from the
    process's views (``intake_cache``), read again only when a trigger says they changed.
    It lives in ``session.info`` and is tied to the transaction: a later transaction of the
    same session starts afresh.
    """

    def __init__(self, transaction: object, session: Session) -> None:
        self.transaction = transaction
        self.session = session
        self.locks_services = session.get_bind().dialect.name != "sqlite"
        """PostgreSQL locks a routed service's row; SQLite's writers are serialized anyway."""
        self.cache = intake_cache.of(session)
        self.view, self.incidents = self.cache.views(
            session, with_incidents=not self.locks_services
        )
        self.mutes: Mutes | None = None
        self.services: dict[str, ServiceRef | None] = {}
        """Services read and locked in this transaction, by name (PostgreSQL)."""
        self.active: dict[int, int | None] = {}
        """Each service's active incident id as this transaction knows it (None: none)."""
        self.ended: set[int] = set()
        """Incidents an operation of this transaction resolved: no longer anyone's active one."""
        self.locked_incidents: set[int] = set()
        """Incidents whose services this transaction locked (``lock_services_of``)."""
        self.windows: set[tuple[int, datetime]] = set()
        """(incident id, minute) whose attach-note job this transaction already queued."""

    @classmethod
    def of(cls, session: Session) -> Shared:
        if session.get_transaction() is None:
            session.connection()  # begin now: what is read belongs to this transaction
        transaction = session.get_transaction()
        shared = session.info.get(SHARED_INFO)
        if shared is None or shared.transaction is not transaction:
            shared = session.info[SHARED_INFO] = cls(transaction, session)
        return shared

    def live_integration(self, prefix: str) -> Integration | None:
        """The live integration whose key starts with ``prefix``: shared by the process's
        threads and in no session, so read it and never change it."""
        return self.view.integrations.get(prefix)

    def known_service(self, name: str | None) -> bool:
        """Whether the catalog has this service (asked without locking it)."""
        return name is not None and name in self.view.services

    def catalog_name(self, name: str) -> str | None:
        """The catalog's spelling of the service ``name`` names in any case; None if none."""
        if name in self.view.services:
            return name
        folded = name.casefold()
        return next((n for n in self.view.services if n.casefold() == folded), None)

    def service(self, name: str | None) -> ServiceRef | None:
        """The service an alert routes to; on PostgreSQL read and locked once per transaction."""
        if not name:
            return None
        if not self.locks_services:
            return self.view.services.get(name)
        self.lock_services([name])
        return self.services[name]

    def lock_services(self, names: Sequence[str | None]) -> None:
        """Read and lock these services at once, in name order, and their active incidents
        (PostgreSQL): two statements for all of them. A group of events over many routing
        keys locked its services one statement at a time."""
        if not self.locks_services:
            return
        wanted = sorted({name for name in names if name and name not in self.services})
        if not wanted:
            return
        locked = self.session.execute(SERVICES_LOCKED, {"names": wanted}).all()
        self.services.update(dict.fromkeys(wanted))
        self.services.update((name, ServiceRef(service_id, name)) for service_id, name in locked)
        ids = [service_id for service_id, _ in locked if service_id not in self.active]
        if not ids:
            return
        self.active.update(dict.fromkeys(ids))
        self.active.update(self._read_active_incidents(ids))

    def lock_services_of(self, incident_ids: Collection[int]) -> None:
        """Lock the services of these incidents (PostgreSQL), before their alerts are checked
        for having cleared: routing reads a service's active incident under the same lock,
        so no alert joins an incident that resolving on clear ends at the same moment."""
        if not self.locks_services:
            return
        wanted = [i for i in incident_ids if i not in self.locked_incidents]
        if not wanted:
            return
        self.locked_incidents.update(wanted)
        self.lock_services(list(self.session.scalars(SERVICES_OF, {"incident_ids": wanted})))

    def _read_active_incidents(self, service_ids: list[int]) -> dict[int, int]:
        """The oldest active incident of each of these services that has one."""
        found = self.session.execute(ACTIVE_INCIDENTS, {"service_ids": service_ids})
        return {service_id: incident_id for service_id, incident_id in found}

    def active_incident(self, service: ServiceRef) -> int | None:
        """The id of the service's active incident: from the view on SQLite, read under the
        service's lock on PostgreSQL (an id only: loading the incident cost more than
        routing a hundred alerts to it)."""
        if service.id in self.active:
            incident_id = self.active[service.id]
        elif self.incidents is not None:
            incident_id = self.incidents.active.get(service.id)
        else:
            incident_id = _UNKNOWN
        if incident_id is _UNKNOWN or incident_id in self.ended:
            # Not known yet, or resolved by an earlier request of this transaction: the
            # service may have another active incident, else the next alert opens one.
            incident_id = self._read_active_incidents([service.id]).get(service.id)
        self.active[service.id] = incident_id
        return incident_id

    def rules(self) -> Routing:
        return self.view.routing

    def muting(self) -> Mutes:
        """The silences and maintenance windows active when this transaction first asked."""
        if self.mutes is None:
            self.mutes = Mutes.at(self.view, clock.now())
        return self.mutes

    def still_active(self, incident_id: int) -> bool:
        """Whether the incident an alert joined before is active still; on PostgreSQL asked
        under its services' locks, as for any incident an alert joins."""
        self.lock_services_of([incident_id])
        current = self.session.get(Incident, incident_id)
        return current is not None and current.status in ACTIVE

    def inhibitor(
        self, alert: AlertRow, integration: str, found: dict[Any, list[InhibitSource]]
    ) -> tuple[int, str] | None:
        return self.view.routing.inhibitor(self.session, alert, integration, found)

    def open_incident(self, intake: Intake, alert: AlertRow, service: ServiceRef) -> int:
        """Declare the incident a firing alert opens for its service; its id."""
        now = intake.now
        incident = incidents.declare(
            self.session,
            intake.acting(),
            IncidentCreate(
                title=alert.title[:300],
                severity=Severity(alert.severity),
                services=[service.name],
                source=intake.source,
                impact_started_at=alert.starts_at
                if alert.starts_at and alert.starts_at <= now
                else None,
                summary=intake.summary
                or f"Opened by alert {alert.fingerprint} from {intake.integration.name}.",
            ),
            intake.policy,
            services_locked=True,  # ``service`` locked it (PostgreSQL)
        )
        intake.opened.append(incident)
        self.active[service.id] = incident.id
        return incident.id


_UNKNOWN: Any = object()


SHARED_INFO = "firetower.signals.shared"
SERVICES_LOCKED = (
    select(Service.id, Service.name)
    .where(Service.name.in_(bindparam("names", expanding=True)))
    .order_by(Service.name)
    .with_for_update(key_share=True)
)
"""Built once: building a statement per request costs more than running it. Locking a
service serializes routing to it on PostgreSQL: two concurrent storms never both open an
incident. ``FOR NO KEY UPDATE``: it keeps out another intake, a merge and a person's
declaration (``incidents`` locks the same way) and the service's delete, but not a record
being made that names the service (``catalog.hold_services``, ``FOR KEY SHARE``), which
``FOR UPDATE`` made wait for every request of a storm. PostgreSQL locks the rows in the
order it returns them, so two such statements never deadlock each other. A transaction may
lock more afterwards (a later request of its group, resolving on clear in ``_finish_one``)
and then can deadlock with another (or with a merge): PostgreSQL ends one, and its group
runs again one request at a time, or a person's merge runs once more (docs/group-commit.md)."""
ACTIVE_INCIDENTS = (
    select(incident_services.c.service_id, func.min(Incident.id))
    .join(Incident, Incident.id == incident_services.c.incident_id)
    .where(incident_services.c.service_id.in_(bindparam("service_ids", expanding=True)))
    .where(Incident.status.in_([s.value for s in ACTIVE]))
    .group_by(incident_services.c.service_id)
)
"""The oldest active incident of each of several services."""
SERVICES_OF = (
    select(Service.name)
    .join(incident_services, incident_services.c.service_id == Service.id)
    .where(incident_services.c.incident_id.in_(bindparam("incident_ids", expanding=True)))
)
"""The names of the services of several incidents."""


@dataclass
class Intake:
    """What one intake request did, and the notes it owes each incident (one per incident)."""

    integration: Integration
    policy: SeverityPolicy
    opened: list[Incident] = field(default_factory=list)
    attached: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    resolved_incidents: set[int] = field(default_factory=set)
    source: Source = Source.alert
    actor: Actor | None = None
    """Who acts on incidents for this request; the integration's system actor by default."""
    summary: str = ""
    """The summary of an incident this request opens; by default it names the alert."""
    known: dict[str, AlertRow] = field(default_factory=dict)
    """This integration's alerts by fingerprint, read in one query for a whole batch."""
    prefetched: set[str] = field(default_factory=set)
    """Fingerprints already looked up: one not in ``known`` is new."""
    joined: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    """The alerts (fingerprints) that joined each incident in this request, the opener too."""
    inhibitors: dict[Any, list[InhibitSource]] = field(default_factory=dict)
    """Inhibition sources found in this request, by rule and ``equal`` values."""
    notify: list[tuple[AlertRow, str, str]] = field(default_factory=list)
    """(alert, rule, status) notifications owed, queued once the alerts have ids; the
    status is the alert's when the rule fired (a later signal may change it)."""
    encoder: intake_rows.Encoder | None = None
    """Encodes the rows for the database; one made before the transaction may already hold
    the signals' values (``Encoder.prepare``), so that less work waits for the write lock."""
    drafts: Drafts | None = None
    """The batch's rows made before the transaction, used if its alerts are all new."""

    now: datetime = field(default_factory=clock.now)
    """The time this request's alerts are recorded at (one value for a whole batch)."""
    integration_id: int = field(init=False)
    integration_name: str = field(init=False)
    group_by: tuple[str, ...] = field(init=False)
    """The integration's ``group_by`` keys, sorted and unique."""

    def __post_init__(self) -> None:
        # Plain values read once: the ORM's attribute access costs per alert otherwise.
        self.integration_id = self.integration.id
        self.integration_name = self.integration.name
        self.group_by = _group_by(self.integration)

    def acting(self) -> Actor:
        return self.actor or actor_for(self.integration)


@dataclass(slots=True)
class Signal:
    """One alert as any adapter reports it."""

    fingerprint: str
    status: str  # firing | resolved | acknowledged
    title: str = ""
    severity: Severity = DEFAULT_SEVERITY
    service_name: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reroute_when_incident_over: bool = False
    """A firing repeat of an alert whose incident is over (ended by a person while the alert
    still fired) routes again, as a new firing would: it joins the service's active
    incident or opens the next one. Without it such a repeat stays with the incident that is
    over, as a source's repeats of what it said already do. For signals repeated only while
    their problem persists and nobody is on it (an SLO still burning at page level)."""


def _route(
    shared: Settling,
    intake: Intake,
    alert: AlertRow,
    decision: Decision,
    *,
    notify: bool = True,
) -> None:
    """Apply a routing decision to a firing alert that is not muted.

    ``open`` joins the service's active incident or opens one; ``attach`` only joins (the
    alert waits, unrouted, when there is none: linked to no incident, so that each repeat
    tries again, as it does for an alert of no known service); ``notify`` and ``drop``
    join no incident. A routing that joins none takes the alert off the active incident it
    joined before, where it would still count as firing; an incident that is over keeps
    it, as its history. Each notify rule owes a
    ``signals.notify`` job, queued in this transaction.
    """
    alert.routed_by = decision.decided_by
    alert.routing_action = ACTION_VALUES[decision.action]
    alert.on_clear = ON_CLEAR_VALUES[decision.on_clear]
    alert.dirty = True
    for rule in decision.notify if notify else ():
        intake.notify.append((alert, rule, alert.status))
    if not decision.joins:
        if alert.incident_id is not None and shared.still_active(alert.incident_id):
            alert.incident_id = alert.attached_at = None
        return
    now = intake.now
    if alert.incident_id is not None and shared.still_active(alert.incident_id):
        intake.attached[alert.incident_id].append(f"{alert.title} (firing again)")
        alert.attached_at = now
        intake.joined[alert.incident_id].add(alert.fingerprint)
        return
    service = shared.service(alert.service_name)
    if service is None:
        return  # no service to route to: the alert is kept, no incident opened
    incident_id = shared.active_incident(service)
    if incident_id is None:
        if decision.action == RoutingAction.attach:
            alert.incident_id = alert.attached_at = None  # attach never opens: it waits
            return
        incident_id = shared.open_incident(intake, alert, service)
    else:
        intake.attached[incident_id].append(alert.title)
    alert.incident_id = incident_id
    alert.attached_at = now
    intake.joined[incident_id].add(alert.fingerprint)


@dataclass(slots=True)
class Received:
    """One signal recorded, with what its alert was before it (settled afterwards)."""

    alert: AlertRow
    signal: Signal
    was: str | None
    held: bool
    """The alert was muted before (silenced, inhibited or flapping): a repeat may route."""
    was_flapping: bool = False
    """The alert was flapping before: a resolve that lifts the mark may clear its incident."""


def record(intake: Intake, signal: Signal) -> Received:
    """Take one signal in: a new alert, or a repeat that updates the known one."""
    integration = intake.integration
    now = intake.now
    alert = intake.known.get(signal.fingerprint)
    was = alert.status if alert is not None else None
    was_flapping = alert is not None and alert.flapping
    held = alert is not None and (alert.silenced or was_flapping or alert.inhibited)
    if alert is None:
        alert = _new_row(intake.integration_id, intake.group_by, signal, now)
        intake.known[signal.fingerprint] = alert
    else:
        alert.dirty = True
        alert.count += 1
        alert.last_seen_at = now
        alert.status = status_after(was, signal.status)
        if alert.status_by is not None and alert.status != was:
            alert.status_by = None  # its sender set the status: no longer the person's
        if signal.title:
            alert.title = signal.title[:1024]
        if signal.labels:
            alert.labels = signal.labels
            alert.group_key = group_key_of(intake.group_by, signal.labels)
        if signal.annotations:
            alert.annotations = signal.annotations
        alert.ends_at = signal.ends_at
        if signal.starts_at is not None:
            alert.starts_at = signal.starts_at
    _track_flapping(integration, alert, was, alert.status, now)
    return Received(alert, signal, was, held, was_flapping)


def status_after(was: str | None, status: str) -> str:
    """The status a signal leaves an alert in: a firing one keeps an acknowledged alert
    acknowledged (PagerDuty folds a repeated trigger into it); only a resolve ends that."""
    return "acknowledged" if status == "firing" and was == "acknowledged" else status


def _new_row(
    integration_id: int, group_by: tuple[str, ...], signal: Signal, now: datetime
) -> AlertRow:
    # Positional, in AlertRow's order: keywords took two fifths of making the row (timed
    # apart: 2.0 against 1.2 µs), for every alert of a storm.
    return AlertRow(
        integration_id,
        signal.fingerprint,
        signal.status,
        signal.title[:1024] or signal.fingerprint,
        SEVERITY_VALUES[signal.severity],
        signal.service_name,
        signal.labels,
        signal.annotations,
        signal.starts_at,
        signal.ends_at,
        now,  # first seen
        now,  # last seen
        group_key=group_key_of(group_by, signal.labels),
    )


@dataclass(slots=True)
class Drafts:
    """A batch's alert rows made before its transaction, on the guess that every alert of
    it is new (as in a storm): the transaction takes them, instead of making them while
    it holds the write lock, when the guess held (``receive_all``).

    On SQLite the rows are also settled ahead where that can be done from this process's
    views (``settled``), and encoded for the INSERT.

    Taken once: a transaction changes them, and an operation that runs again (its group
    failed) makes its rows afresh.
    """

    integration_id: int
    group_by: tuple[str, ...]
    now: datetime
    rows: list[AlertRow] | None
    settled: Settled | None = None


class SettleInTransaction(Exception):
    """Settling ahead met what only the transaction may do: open an incident."""


@dataclass(eq=False)
class Ahead:
    """Settles new alerts before their transaction, from the views this process read last.

    It answers what ``settle`` asks of ``Shared`` (rules, mutes, services, their active
    incidents) from those views and remembers each active incident it gave; it refuses to
    open an incident. The transaction takes what it settled only if it reads the very same
    views and no operation before it in the group changed those incidents
    (``Settled.holds``): then settling there would have given the same rows.
    """

    view: RoutingView
    incidents: IncidentsView
    mutes: Mutes
    seen: dict[int, int | None] = field(default_factory=dict)
    """The active incident given for each service asked about (None: none), by service id."""

    def rules(self) -> Routing:
        return self.view.routing

    def muting(self) -> Mutes:
        return self.mutes

    def service(self, name: str | None) -> ServiceRef | None:
        return self.view.services.get(name) if name else None

    def active_incident(self, service: ServiceRef) -> int | None:
        incident_id = self.seen[service.id] = self.incidents.active.get(service.id)
        return incident_id

    def still_active(self, incident_id: int) -> bool:
        raise SettleInTransaction  # only a known alert has an incident, and it is new

    def inhibitor(
        self, alert: AlertRow, integration: str, found: dict[Any, list[InhibitSource]]
    ) -> tuple[int, str] | None:
        raise SettleInTransaction  # inhibition reads other alerts

    def open_incident(self, intake: Intake, alert: AlertRow, service: ServiceRef) -> int:
        raise SettleInTransaction


@dataclass(slots=True)
class Settled:
    """A batch's new alerts routed ahead: what settling them owes, and their INSERTs."""

    ahead: Ahead
    owed: Intake
    """A scratch ``Intake`` holding the notes and notifications the batch owes."""
    inserts: intake_rows.SqliteInserts

    def holds(self, shared: Shared) -> bool:
        """The transaction would settle the batch as it was settled ahead."""
        ahead = self.ahead
        return (
            shared.view is ahead.view
            and shared.incidents is ahead.incidents
            and all(
                shared.active.get(service_id, seen) == seen and seen not in shared.ended
                for service_id, seen in ahead.seen.items()
            )
        )


def draft_new_alerts(
    engine: Engine,
    key: str,
    signals: Sequence[Signal],
    policy: SeverityPolicy,
    encoder: intake_rows.Encoder,
) -> Drafts | None:
    """Rows for a batch of alerts, if all of them turn out new; None where the guess cannot
    hold (a fingerprint twice in the batch, a key this process has not seen)."""
    cache = intake_cache.of_engine(engine)
    view = cache.last_routing()
    integration = None if view is None else view.integrations.get(key[:KEY_PREFIX_LENGTH])
    if integration is None or len({signal.fingerprint for signal in signals}) != len(signals):
        return None
    assert view is not None
    integration_id, group_by, now = integration.id, _group_by(integration), clock.now()
    rows = [_new_row(integration_id, group_by, signal, now) for signal in signals]
    incidents_view = cache.last_incidents()
    if incidents_view is None or view.routing.inhibits:
        # PostgreSQL reads active incidents under a lock in the transaction; inhibition
        # reads other alerts there.
        return Drafts(integration_id, group_by, now, rows)
    ahead = Ahead(view, incidents_view, Mutes.at(view, now))
    owed = Intake(integration, policy, now=now)
    try:
        for row, signal in zip(rows, _catalog_services(view, integration, signals), strict=True):
            row.service_name = signal.service_name  # the catalog's, as ``_settled`` sets it
            settle(ahead, owed, Received(row, signal, None, False))
    except SettleInTransaction:  # the rows are half settled: draft them afresh
        rows = [_new_row(integration_id, group_by, signal, now) for signal in signals]
        return Drafts(integration_id, group_by, now, rows)
    inserts = intake_rows.sqlite_inserts(rows, encoder)
    return Drafts(integration_id, group_by, now, rows, Settled(ahead, owed, inserts))


def _catalog_service(
    services: Container[str], default_service: str | None, named: str | None
) -> str | None:
    """The service an alert of an Alertmanager batch routes to: the one it names if the
    catalog has it, else (or if it names none) its integration's own."""
    if named is None or (named != default_service and named not in services):
        return default_service
    return named


def _catalog_services(
    view: RoutingView, integration: Integration, signals: Sequence[Signal]
) -> list[Signal]:
    """The signals as ``ingest_alertmanager`` leaves them, copied where it changes one."""
    default_service = integration.service_name
    return [
        signal
        if (named := _catalog_service(view.services, default_service, signal.service_name))
        == signal.service_name
        else replace(signal, service_name=named)
        for signal in signals
    ]


def _drafted(
    shared: Shared, intake: Intake, signals: Sequence[Signal]
) -> tuple[list[AlertRow], Settled | None] | None:
    """The batch's rows from its drafts, in the signals' order, when they were made for this
    integration as it is now and none of the batch's alerts is known as far as the
    transaction has read (the whole batch; for one settled ahead, its first alert only);
    with what was settled ahead, when that still holds. Taken once."""
    drafts = intake.drafts
    if (
        drafts is None
        or (rows := drafts.rows) is None
        or drafts.integration_id != intake.integration_id
        or drafts.group_by != intake.group_by
        or len(rows) != len(signals)
        or any(signal.fingerprint in intake.known for signal in signals)
    ):
        return None
    settled = drafts.settled
    if settled is not None and not settled.holds(shared):
        return None  # the rows were settled by views that are no longer current
    drafts.rows = None
    intake.now = drafts.now
    return rows, settled


def settle(shared: Settling, intake: Intake, received: Received) -> None:
    """Mute or route a recorded signal; note a resolved one for ``finish``.

    A firing alert gets its service and severity from the routing rules, then is checked
    against silences and maintenance windows, then inhibition rules; one nothing mutes
    routes if it newly fires, or if it was held before (the mute or flapping has ended); a
    repeat routes again when it joined none, or when its incident is over and its signal
    asks for that (``Signal.reroute_when_incident_over``).
    A flapping alert's resolve is held like its firing: it does not clear its incident
    until the mark is lifted (then a resolve, even a repeated one, does).
    """
    alert, signal, was = received.alert, received.signal, received.was
    if status_after(was, signal.status) != alert.status:
        return  # a later signal of the same request changed it again: that one settles it
    if signal.status == "firing":
        name = intake.integration_name
        routing = shared.rules()
        # The signal's own service (every adapter sets one for a firing signal), never the
        # alert's: that is the service its last routing gave it, perhaps by a rule since
        # changed, and the test endpoint knows only the signal's.
        decision = routing.decide(alert.labels, name, signal.service_name, signal.severity)
        alert.service_name = decision.service
        alert.severity = SEVERITY_VALUES[decision.severity]
        alert.silenced = shared.muting().cover(alert)
        inhibitor = (
            None
            if alert.silenced or not routing.inhibits
            else shared.inhibitor(alert, name, intake.inhibitors)
        )
        alert.inhibited = inhibitor is not None
        alert.inhibited_by, alert.inhibit_rule = inhibitor or (None, None)
        alert.dirty = True
        if alert.silenced or alert.inhibited or alert.flapping:
            return
        if received.held or was not in ("firing", "acknowledged"):
            _route(shared, intake, alert, decision)
        elif _off_an_active_incident(
            alert.incident_id,
            alert.routing_action,
            shared.still_active if signal.reroute_when_incident_over else None,
        ):
            # A repeat tries to join again, without notifying twice.
            _route(shared, intake, alert, decision, notify=False)
    elif (
        signal.status == "resolved"
        and alert.incident_id is not None
        and not alert.flapping
        and (was != "resolved" or received.was_flapping)
    ):
        intake.resolved_incidents.add(alert.incident_id)


def _off_an_active_incident(
    incident_id: int | None,
    routing_action: str | None,
    still_active: Callable[[int], bool] | None,
) -> bool:
    """Whether a firing alert's repeat routes again (``settle``): its routing joins an
    incident but found none to join (an attach rule with none open, no known service), or
    ``still_active`` is given (the signal sets ``reroute_when_incident_over``) and says the
    incident it joined is over. Without it the incident is never looked up: the others
    never pay for the look."""
    if incident_id is None:
        return routing_action in JOINING_ACTIONS
    return still_active is not None and not still_active(incident_id)


def unattended(session: Session, integration_name: str, fingerprint: str) -> bool:
    """Whether a monitor's alert, asked while the monitor still fails, is on no active
    incident where its repeat, with ``reroute_when_incident_over``, fires and routes again:
    a person resolved the alert by hand, or ended the incident it joined, or its routing
    found none to join (an attach rule with none open, no known service). A monitor's cue
    to say it again, so that a failing monitor ends up on an active incident. Read without
    a lock, as a monitor's own check; the repeat's routing decides again under the locks.

    Not while a mute or flapping holds the firing alert (silenced, in a maintenance window,
    inhibited, flapping): its repeat would only write it again, held still, at every run of
    the monitor. The minutely job that settles held alerts (``find_held``, ``settle_held``)
    routes it once nothing holds it (flapping settles once a whole window passes with no
    change), as it does any alert: it joins the service's active incident or opens one. A
    resolved one is said again even so: that job settles only an unresolved alert, and the
    repeat finds whether a mute still holds it."""
    integration_id = session.scalar(
        select(Integration.id).where(Integration.name == integration_name)
    )
    if integration_id is None:
        return False
    rows = intake_rows.load(session, integration_id, [fingerprint])
    if not rows:
        return False
    if rows[0].status == AlertStatus.resolved.value:
        return True  # the monitor resolves its own only once it passes: a person did
    if rows[0].silenced or rows[0].inhibited or rows[0].flapping:
        return False

    def still_active(incident_id: int) -> bool:
        status = session.scalar(select(Incident.status).where(Incident.id == incident_id))
        return status in ACTIVE

    return _off_an_active_incident(rows[0].incident_id, rows[0].routing_action, still_active)


def receive(session: Session, intake: Intake, signal: Signal) -> Alert:
    """Record one alert (a repeat updates the existing row) and route it."""
    row = receive_all(session, intake, [signal])[0]
    if row.id is None:
        intake_rows.read_ids(session, intake.integration.id, [row])
    alert = session.get(Alert, row.id, populate_existing=True)
    assert alert is not None
    return alert


def prefetch_many(session: Session, batches: Sequence[tuple[Intake, Sequence[str]]]) -> None:
    """Read the known alerts of batches of one or several integrations (one intake each) in
    one read (``intake_rows.load_many``), not one per alert; a fingerprint an intake looked
    up already is not read again."""
    by_integration = {intake.integration_id: intake for intake, _ in batches}
    if len(by_integration) != len(batches):
        raise ValueError("prefetch_many takes one intake per integration")
    wanted: dict[int, list[str]] = {}
    for intake, fingerprints in batches:
        fresh = [f for f in dict.fromkeys(fingerprints) if f not in intake.prefetched]
        intake.prefetched.update(fresh)
        wanted[intake.integration_id] = fresh
    if any(wanted.values()):
        for row in intake_rows.load_many(session, wanted):
            by_integration[row.integration_id].known[row.fingerprint] = row


def receive_all(session: Session, intake: Intake, signals: Sequence[Signal]) -> list[AlertRow]:
    """Record every signal of a batch first, then settle each, then write the batch.

    A batch costs a few statements, not a few per alert: its known alerts are read at once,
    its new ones inserted by one statement and its changed ones updated by another. With
    inhibition rules the recorded batch is written before it settles, so that a source in
    the batch counts with its new state wherever it sits in the batch. A batch of new
    alerts settled ahead (``Drafts``) is only inserted here.
    """
    shared = Shared.of(session)
    inserted = _inserted_as_settled(session, shared, intake, signals)
    if inserted is not None:
        return inserted
    alerts, rows = _settled(session, shared, intake, signals)
    intake_rows.write(session, rows, intake.encoder)
    _queue_notifications(session, intake)
    return alerts


def _settled(
    session: Session, shared: Shared, intake: Intake, signals: Sequence[Signal]
) -> tuple[list[AlertRow], list[AlertRow]]:
    """``receive_all`` but the last write: the batch's alerts in its signals' order, and its
    rows to write (each once). With inhibition rules the rows are written here too, before
    they settle."""
    prefetch_many(session, [(intake, [signal.fingerprint for signal in signals])])
    drafted = _drafted(shared, intake, signals)
    if drafted is None:
        intake.now = clock.now()
        received = [record(intake, signal) for signal in signals]
    else:
        drafted_rows, settled = drafted
        received = []
        for row, signal in zip(drafted_rows, signals, strict=True):
            if settled is None:
                row.service_name = signal.service_name  # settled here (the catalog's)
            intake.known[signal.fingerprint] = row
            received.append(Received(row, signal, None, False))
    rows = list({id(item.alert): item.alert for item in received}.values())
    if shared.rules().inhibits:
        intake_rows.write(session, rows, intake.encoder)
        intake_rows.read_ids(session, intake.integration.id, rows)
    for item in received:
        settle(shared, intake, item)
    return [item.alert for item in received], rows


def _inserted_as_settled(
    session: Session, shared: Shared, intake: Intake, signals: Sequence[Signal]
) -> list[AlertRow] | None:
    """A batch settled ahead (``Drafts.settled``), inserted without first reading which of
    its alerts are stored: the key tables refuse a stored one, and the batch then goes the
    usual way (None). Reading them took a fifth of the write turn. The first alert is
    looked up alone, so that a batch of repeats (a storm's, Alertmanager's repeat interval)
    does not pay for an insert it undoes; a batch whose new alerts come first still may."""
    drafts = intake.drafts
    if drafts is None or drafts.settled is None or not signals:
        return None
    if intake_rows.is_stored(session, intake.integration_id, signals[0].fingerprint):
        return None
    drafted = _drafted(shared, intake, signals)
    if drafted is None:
        return None
    rows, settled = drafted
    assert settled is not None  # _drafted takes settled rows only where the settling holds
    if not intake_rows.insert_encoded_if_new(session, rows, settled.inserts):
        return None  # the drafts are taken: the batch's stored rows are read instead
    owed = settled.owed
    for incident_id, titles in owed.attached.items():
        intake.attached[incident_id].extend(titles)
    for incident_id, fingerprints in owed.joined.items():
        intake.joined[incident_id].update(fingerprints)
    intake.notify.extend(owed.notify)
    _queue_notifications(session, intake)
    return rows


def _queue_notifications(session: Session, intake: Intake) -> None:
    """Queue the ``signals.notify`` jobs the batch's notify rules owe (its rows are written)."""
    if not intake.notify:
        return
    intake_rows.read_ids(session, intake.integration.id, [row for row, *_ in intake.notify])
    fired_at = intake.now.isoformat()
    for row, rule, status in intake.notify:
        payload = {"alert_id": row.id, "rule": rule, "status": status, "fired_at": fired_at}
        jobs.enqueue(session, NOTIFY_KIND, payload)
    intake.notify.clear()


def _group_by(integration: Integration) -> tuple[str, ...]:
    """The integration's ``group_by`` keys, sorted and unique, as ``group_key_of`` takes them."""
    return tuple(sorted(set(integration.group_by)))


def group_key_of(keys: tuple[str, ...], labels: dict[str, Any]) -> str:
    """The ``label=value`` pairs of the ``group_by`` keys the labels carry, joined by ``,``;
    ``keys`` come sorted and unique (``Intake.group_by``).

    A backslash escapes ``\\``, ``,`` and ``=`` in names and values, so {a: "x,b=y"} and
    {a: "x", b: "y"} get two keys, while a key of ordinary labels reads as it always did
    (stored groups keep their keys). A key over ``GROUP_KEY_LENGTH`` is cut and ends in
    ``#`` and a digest of the whole; a key that merely looks like that is cut too.
    """
    parts = [f"{k}={v}" for k in keys if (v := labels.get(k)) is not None and v != ""]
    pairs = ",".join(parts)
    if parts and (
        "\\" in pairs or pairs.count("=") != len(parts) or pairs.count(",") != len(parts) - 1
    ):
        # A name or value holds a character to escape. Most keys have none: asking the whole
        # key once cost a third of the instructions of asking each name and value.
        pairs = ",".join(
            [
                f"{_escape_group_text(k)}={_escape_group_text(str(v))}"
                for k in keys
                if (v := labels.get(k)) is not None and v != ""
            ]
        )
    if len(pairs) < GROUP_KEY_LENGTH or (
        len(pairs) == GROUP_KEY_LENGTH and not _SHORTENED_TAIL.search(pairs)
    ):
        return pairs
    digest = hashlib.sha256(pairs.encode()).hexdigest()[:32]
    return pairs[: GROUP_KEY_LENGTH - 33] + "#" + digest  # long keys stay distinct


def _escape_group_text(text: str) -> str:
    if "\\" in text or "," in text or "=" in text:
        return text.translate(_GROUP_KEY_ESCAPES)
    return text  # most labels: nothing to escape


def _track_flapping(
    integration: Integration, alert: AlertRow, was: str | None, status: str, now: datetime
) -> None:
    """Count firing<->resolved changes within the window; mark or un-mark ``flapping``.

    Acknowledging is not a change (it is still a problem). Flapping is marked at the
    ``flap_threshold``-th change within ``flap_window_seconds`` and lifted once no change has
    happened for a whole window.
    """
    if was is None:
        return  # a new alert: no change yet, nothing to lift
    recent = _changes_within(alert.state_changes, integration, now)
    if not recent:
        alert.flapping = False  # stable for a whole window before this signal
    if (was == "resolved") != (status == "resolved"):
        recent.append(now.isoformat())
    recent = recent[-integration.flap_threshold :]
    if recent != alert.state_changes:
        alert.state_changes = recent
    if len(recent) >= integration.flap_threshold:
        alert.flapping = True


def update_status(session: Session, intake: Intake, fingerprint: str, status: str) -> None:
    """Acknowledge or resolve a known alert. As PagerDuty does, an unknown alert is ignored,
    and so is an acknowledge of a resolved one: it is not counted, and it does not bring the
    alert back unresolved (which would keep its incident open)."""
    prefetch_many(session, [(intake, [fingerprint])])
    known = intake.known.get(fingerprint)
    if known is None or (status == "acknowledged" and known.status == "resolved"):
        return
    signal = Signal(
        fingerprint=fingerprint,
        status=status,
        ends_at=_resolved_at(known) if status == "resolved" else known.ends_at,
    )
    receive_all(session, intake, [signal])


def set_alert_status(
    session: Session, actor: Actor, alert_id: int, status: AlertStatus, policy: SeverityPolicy
) -> tuple[Alert, bool]:
    """A person acknowledges or resolves an alert by hand; the alert, and whether it changed.

    For an alert whose sender never resolves it (a user report, a client that only
    triggers), or one a person knows is over. The alert records who did it
    (``status_by``), and a note on its incident says so. A resolve takes the path a
    sender's resolve takes (``settle``, then ``finish``): the incident's alerts may have all
    cleared, and its rules' ``on_clear`` then resolves it or notes it, as the person (user
    reports never count towards that: an incident of reports alone has nothing that clears).
    It is not a signal: ``count`` and ``last_seen_at`` stay the sender's.

    Asking for the status the alert has already changes nothing (a second click, a retry,
    two responders at once all get what they asked for). Acknowledging a resolved alert is
    a Conflict: it would bring the alert back unresolved and keep its incident open. A
    later signal from the sender acts as ever: a firing one fires a resolved alert again
    (it routes anew), and keeps an acknowledged one acknowledged, as PagerDuty does.
    """
    actor.require(Role.responder)
    found = session.get(Alert, alert_id) if 0 < alert_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"no alert {alert_id}", field="id")
    intake = Intake(found.integration, policy, actor=actor)
    prefetch_many(session, [(intake, [found.fingerprint])])  # read again, locked (PostgreSQL)
    row = intake.known.get(found.fingerprint)
    if row is None:  # retention deleted it meanwhile
        raise NotFound(f"no alert {alert_id}", field="id")
    wanted = status.value
    if row.status == wanted:
        return found, False
    if wanted == AlertStatus.acknowledged.value and row.status == AlertStatus.resolved.value:
        raise Conflict(
            f"alert {alert_id} is resolved; only an unresolved alert can be acknowledged",
            field="id",
        )
    shared = Shared.of(session)
    if row.incident_id is not None:
        # Its services first, then the incident, as intake locks them (PostgreSQL).
        shared.lock_services_of([row.incident_id])
        incident = session.get(Incident, row.incident_id)
        assert incident is not None  # the foreign key nulls it when the incident goes
        verb = "acknowledged" if wanted == AlertStatus.acknowledged.value else "resolved"
        incidents.add_note(
            session,
            actor,
            incident,
            f"Alert {alert_id} from {intake.integration_name} {verb} by hand: {row.title}",
        )
    received = _set_by_hand(intake, row, wanted, actor.label)
    settle(shared, intake, received)
    intake_rows.write(session, [row], intake.encoder)
    _queue_notifications(session, intake)
    finish(session, intake)
    alert = session.get(Alert, alert_id, populate_existing=True)
    assert alert is not None
    return alert, True


def _set_by_hand(intake: Intake, alert: AlertRow, status: str, by: str) -> Received:
    """``record`` for a person's acknowledge or resolve: the status, who set it, and for a
    resolve its end, counted as a change as a sender's would be (``_track_flapping``)."""
    was = alert.status
    was_flapping = alert.flapping
    held = alert.silenced or was_flapping or alert.inhibited
    alert.dirty = True
    alert.status = status
    alert.status_by = by
    if status == AlertStatus.resolved.value:
        alert.ends_at = intake.now
    _track_flapping(intake.integration, alert, was, status, intake.now)
    signal = Signal(fingerprint=alert.fingerprint, status=status, ends_at=alert.ends_at)
    return Received(alert, signal, was, held, was_flapping)


def _resolved_at(known: AlertRow | None) -> datetime:
    """When a resolve that carries no time of its own (Events v2, a generic document) ends
    ``known``: now, unless the alert has resolved already. A repeated resolve (a client
    retrying one that timed out, a checker posting each run) is counted, but the alert
    resolved at the first one; after it fired again, a resolve is a new end."""
    if known is not None and known.status == "resolved" and known.ends_at is not None:
        return known.ends_at
    return clock.now()


def attach_window(now: datetime) -> tuple[datetime, datetime]:
    """The minute ``now`` falls in: attach notes of one incident are coalesced per window."""
    since = now.replace(second=0, microsecond=0)
    return since, since + ATTACH_NOTE_WINDOW


_TALLY = (
    "INSERT INTO attach_tallies (incident_id, minute, alerts, latest) VALUES ({0}, {0}, {0}, {1}) "
    "ON CONFLICT (incident_id, minute) DO UPDATE SET "
    "alerts = attach_tallies.alerts + excluded.alerts, latest = excluded.latest"
)
_TALLIES = {"sqlite": _TALLY.format("?", "?"), "postgresql": _TALLY.format("%s", "%s::jsonb")}
"""Run at the driver: intake adds to a tally for nearly every request of a storm, inside the
write turn, and through the ORM the statement took three times as long (45 against 14 µs)."""


def _tally(
    encoder: intake_rows.Encoder, incident_id: int, minute: datetime, titles: list[str]
) -> tuple[Any, ...]:
    """A request's attachments as ``_TALLIES`` adds them to the incident's tally of the
    minute: the count, and its titles as the latest (newest first; a request's alerts are
    in the order they came)."""
    latest = json.dumps(titles[::-1][:SHOWN_TITLES])
    at = encoder.time(minute)  # as the column type stores it
    return (incident_id, at, len(titles), latest)


def finish(session: Session, intake: Intake) -> None:
    """Write the notes this request owes: one per incident, however many alerts it carried.

    In a storm, only the first request of a minute notes its attachments at once; it queues
    a job for the minute's end, and each later request of the minute adds its attachments
    to the minute's tally (``AttachTally``), which that job sums up: a storm adds two notes
    a minute to an incident's timeline, not one per request.
    """
    finish_all(session, [intake])


def finish_all(session: Session, intakes: Sequence[Intake]) -> None:
    """``finish`` for the requests of several integrations, their tallies in one statement."""
    dialect = session.get_bind().dialect.name
    encoder = intake_rows.Encoder(dialect)
    tallies: list[tuple[Any, ...]] = []
    for intake in intakes:
        _finish_one(session, intake, encoder, tallies)
    if tallies:
        session.connection().exec_driver_sql(_TALLIES[dialect], tallies)


def _finish_one(
    session: Session,
    intake: Intake,
    encoder: intake_rows.Encoder,
    tallies: list[tuple[Any, ...]],
) -> None:
    """``finish`` for one request, but its tallies are left in ``tallies`` to be added."""
    actor = intake.acting()
    # The batch's own time: its alerts' attached_at, so note and summary job agree on the minute.
    since, until = attach_window(intake.now)
    shared = Shared.of(session)
    queued = shared.windows
    for incident_id, titles in intake.attached.items():
        if (incident_id, since) in queued or (incident_id, since) in shared.cache.attach_jobs:
            # This transaction or a committed one queued the minute's job: it sums these up.
            tallies.append(_tally(encoder, incident_id, since, titles))
            continue
        queued.add((incident_id, since))
        first_of_window = jobs.enqueue(
            session,
            ATTACHED_KIND,
            {"incident_id": incident_id, "since": since.isoformat(), "until": until.isoformat()},
            idempotency_key=f"{ATTACHED_KIND}:{incident_id}:{since.isoformat()}",
            run_at=until,
        )
        if first_of_window is None:
            # Committed before this transaction began: later ones of the minute go straight
            # to the tally.
            shared.cache.attach_job_queued(incident_id, since)
            tallies.append(_tally(encoder, incident_id, since, titles))
            continue
        shown = "; ".join(titles[:SHOWN_TITLES]) + (
            f"; and {len(titles) - SHOWN_TITLES} more" if len(titles) > SHOWN_TITLES else ""
        )
        noun = "alert" if len(titles) == 1 else "alerts"
        incident = session.get(Incident, incident_id)
        assert incident is not None  # an id this transaction just read or made
        incidents.add_note(
            session,
            actor,
            incident,
            f"{len(titles)} {noun} from {intake.integration.name} attached: {shown}",
        )
    shared.lock_services_of(intake.resolved_incidents)
    for incident_id in sorted(intake.resolved_incidents):
        resolved = session.get(Incident, incident_id)
        if resolved is None or _has_unresolved_alert(session, incident_id):
            continue
        # Its status as committed, under its lock (after the alert and service locks, the
        # order ``incidents._lock_for_change`` documents): a person may have resolved it
        # while this request waited, and resolving it again would be refused.
        incidents.lock(session, resolved)
        total, keep_open = session.execute(
            select(
                func.count(),
                func.sum(case((Alert.on_clear == OnClear.resolve.value, 0), else_=1)),
            ).where(Alert.incident_id == incident_id, NOT_A_REPORT)
        ).one()
        if total == 0:
            # Only user reports, which never count (NOT_A_REPORT): nothing has cleared.
            continue
        cleared = all_resolved_text(total)
        if resolved.status not in ACTIVE:
            # Resolved (or closed, merged) by hand: the note says once that its alerts have
            # cleared since; alerts that go on changing under it do not repeat the news.
            if not _noted_since_status_change(session, incident_id, cleared):
                incidents.add_note(session, actor, resolved, cleared)
            continue
        if keep_open:
            incidents.add_note(session, actor, resolved, cleared)
            continue
        if resolved.created_by_id is not None:
            # Alerts that joined a person's incident tell them; they do not end it for them
            # (whatever source the person gave it: a person may declare from an alert).
            incidents.add_note(session, actor, resolved, f"{cleared} {DECLARED_STAYS_OPEN}")
            continue
        rules = sorted(
            name
            for name in session.scalars(
                select(Alert.routed_by).where(Alert.incident_id == incident_id).distinct()
            )
            if name
        )
        noun = "rule" if len(rules) == 1 else "rules"
        shared.ended.add(incident_id)
        incidents.transition(
            session,
            actor,
            resolved,
            Status.resolved,
            note=f"Resolved by routing {noun} {', '.join(rules)} (on_clear: resolve): "
            + cleared[0].lower()
            + cleared[1:],
        )


@dataclass
class HeldAlerts:
    """Alerts that flapping or a mute held and that may be free now, by integration id: the
    fingerprints ``find_held`` found, for ``settle_held`` to settle."""

    flapping: dict[int, list[str]] = field(default_factory=dict)
    """Flapping, and unchanged for a whole window."""
    unmuted: dict[int, list[str]] = field(default_factory=dict)
    """Unresolved and muted, but no silence or maintenance window covers them any more, or
    the alert that inhibited them has resolved."""

    def __bool__(self) -> bool:
        return bool(self.flapping or self.unmuted)


class MuteWatch:
    """When one worker process last found no silenced alert that its mutes no longer cover,
    and at which generation of the routing view: until a mute of that view ends, or the
    view changes (a silence made, expired or deleted, a window deleted), the silenced
    alerts need no new look. A storm under a maintenance window leaves every alert
    silenced: reading and matching 50,000 of them took 0.9 s of CPU, every minute; with
    the watch, 24-34 ms after the first look."""

    def __init__(self) -> None:
        self.generation: int | None = None
        self.looked_at: datetime | None = None

    def may_have_lifted(self, view: RoutingView, now: datetime) -> bool:
        if self.looked_at is None or view.generation is None:
            return True
        if view.generation != self.generation:
            return True
        looked_at = self.looked_at
        return any(looked_at < mute.ends_at <= now for mute in (*view.silences, *view.windows))

    def found_none(self, view: RoutingView, now: datetime) -> None:
        self.generation, self.looked_at = view.generation, now


def find_held(session: Session, watch: MuteWatch) -> HeldAlerts:
    """The alerts that flapping or a mute held and that may be free now: read only, by the
    minutely job's ``prepare`` step outside its transaction (on SQLite a transaction holds
    the write turn that intake waits for). ``settle_held`` checks each again under its lock.

    Otherwise only an alert's next signal lets it go, and it may never come. Alertmanager
    sends a resolve once, and repeats a firing alert only every ``repeat_interval`` (4 hours
    by default); a PagerDuty client may never repeat. So an incident whose last alert
    flapped and settled resolved stayed open for good, and a firing alert that flapped or
    was muted routed hours late: a maintenance window could end with the database still
    down and nobody paged. Each kind is read through its partial index (``ix_alerts_flapping``,
    ``ix_alerts_muted``); an inhibited alert whose source still fires under a rule that
    still holds, or a silenced one a mute still covers, is left out.
    """
    now = clock.now()
    held = HeldAlerts()
    flapping = session.execute(
        select(Alert.integration_id, Alert.fingerprint, Alert.state_changes).where(
            Alert.flapping == true()
        )
    ).all()
    integrations = _integrations(session, {row[0] for row in flapping})
    for integration_id, fingerprint, changes in flapping:
        if not _changes_within(changes, integrations[integration_id], now):
            held.flapping.setdefault(integration_id, []).append(fingerprint)
    source = aliased(Alert)
    freed_sources = session.execute(
        select(Alert.integration_id, Alert.fingerprint)
        .outerjoin(source, source.id == Alert.inhibited_by)
        .where(MUTED, Alert.status.in_(UNRESOLVED_STATUSES), Alert.inhibited == true())
        .where(or_(source.id.is_(None), source.status == AlertStatus.resolved.value))
    )
    for integration_id, fingerprint in freed_sources:
        held.unmuted.setdefault(integration_id, []).append(fingerprint)
    view = Shared.of(session).view
    if not watch.may_have_lifted(view, now):
        return held
    found = _rule_let_go(session, view.routing, held)
    mutes = Mutes.at(view, now)
    silenced = session.execute(
        select(Alert.integration_id, Alert.fingerprint, Alert.service_name, Alert.labels)
        .where(MUTED, Alert.status.in_(UNRESOLVED_STATUSES), Alert.silenced == true())
        .execution_options(yield_per=2_000)
    )
    for integration_id, fingerprint, service_name, labels in silenced:
        if not mutes.cover(_Muted(service_name, labels or {})):
            held.unmuted.setdefault(integration_id, []).append(fingerprint)
            found = True
    if not found:  # with some found, look again next time: settling them may fail
        watch.found_none(view, now)
    return held


def _rule_let_go(session: Session, routing: Routing, held: HeldAlerts) -> bool:
    """Add to ``held`` the inhibited alerts whose source still fires but whose rule, as it
    is now, no longer lets it mute them (the rule was deleted, or edited so that it does not
    hold on the pair); whether there were any. Asked only once the routing view changed
    (``MuteWatch``): otherwise a target muted by a rule an admin removed waited for its
    next repeat, which a PagerDuty client may never send."""
    source = aliased(Alert)
    target_integration = aliased(Integration)
    source_integration = aliased(Integration)
    inhibited = session.execute(
        select(
            Alert.integration_id,
            Alert.fingerprint,
            Alert.inhibit_rule,
            Alert.labels,
            target_integration.name,
            source.labels,
            source_integration.name,
        )
        .join(target_integration, target_integration.id == Alert.integration_id)
        .join(source, source.id == Alert.inhibited_by)
        .join(source_integration, source_integration.id == source.integration_id)
        .where(MUTED, Alert.status.in_(UNRESOLVED_STATUSES), Alert.inhibited == true())
        .where(source.status != AlertStatus.resolved.value)  # a resolved one: found above
        .execution_options(yield_per=2_000)
    )
    found = False
    for integration_id, fingerprint, rule, labels, name, source_labels, source_name in inhibited:
        if not routing.still_mutes(rule, labels or {}, name, source_labels or {}, source_name):
            held.unmuted.setdefault(integration_id, []).append(fingerprint)
            found = True
    return found


def settle_held(session: Session, policy: SeverityPolicy, held: HeldAlerts) -> tuple[int, int]:
    """Settle the alerts ``find_held`` found, each as a repeat of its state would settle it
    (``_settle_held``): a flapping one whose mark is lifted, a muted one that nothing mutes
    any more. (Flapping marks lifted, alerts set free.)"""
    now = clock.now()
    integrations = _integrations(session, {*held.flapping, *held.unmuted})

    def lift(row: AlertRow, integration: Integration) -> bool:
        if not row.flapping or _changes_within(row.state_changes, integration, now):
            return False
        row.flapping = False
        return True

    def muted(row: AlertRow, integration: Integration) -> bool:
        return row.status != AlertStatus.resolved.value and (row.silenced or row.inhibited)

    lifted = _settle_held(session, policy, integrations, held.flapping, lift, was_flapping=True)
    freed = _settle_held(session, policy, integrations, held.unmuted, muted, was_flapping=False)
    return len(lifted), sum(not (row.silenced or row.inhibited) for row in freed)


MUTED = or_(Alert.silenced == true(), Alert.inhibited == true())
"""The predicate of ``ix_alerts_muted``, spelled as the index's is for SQLite to use it."""


class _Muted(NamedTuple):
    """What ``Mutes.cover`` reads of an alert."""

    service_name: str | None
    labels: dict[str, Any]


def _integrations(session: Session, ids: Collection[int]) -> dict[int, Integration]:
    return {i.id: i for i in session.scalars(select(Integration).where(Integration.id.in_(ids)))}


def _settle_held(
    session: Session,
    policy: SeverityPolicy,
    integrations: Mapping[int, Integration],
    wanted: Mapping[int, list[str]],
    release: Callable[[AlertRow, Integration], bool],
    *,
    was_flapping: bool,
) -> list[AlertRow]:
    """Settle the ``wanted`` alerts (fingerprints by integration id) that ``release`` lets go
    as a repeat of their state would settle them (``settle``), with no signal: a firing one
    routes by the service and severity its last routing gave it, through the rules as they
    are now; a resolved one lets its incident clear. ``release`` is asked of each alert as
    read under its lock (PostgreSQL; in id order, before any service, as intake locks them):
    a signal may have come since it was picked. The alerts settled."""
    if not wanted:
        return []
    now = clock.now()
    intakes = [_held_intake(integrations[integration_id], policy, now) for integration_id in wanted]
    prefetch_many(session, [(intake, wanted[intake.integration_id]) for intake in intakes])
    shared = Shared.of(session)
    settled: list[AlertRow] = []
    for intake in intakes:
        rows = [row for row in intake.known.values() if release(row, intake.integration)]
        for row in rows:
            row.dirty = True
            status = "resolved" if row.status == AlertStatus.resolved.value else "firing"
            signal = Signal(
                row.fingerprint,
                status,
                row.title,
                Severity(row.severity),
                row.service_name,
                row.labels,
                row.annotations,
                row.starts_at,
                row.ends_at,
            )
            received = Received(row, signal, row.status, held=True, was_flapping=was_flapping)
            settle(shared, intake, received)
        intake_rows.write(session, rows, intake.encoder)
        _queue_notifications(session, intake)
        settled.extend(rows)
    finish_all(session, intakes)
    return settled


def _held_intake(integration: Integration, policy: SeverityPolicy, now: datetime) -> Intake:
    """The intake that settles an integration's held alerts: a built-in one's acts and
    opens incidents as its own source does (``raise_internal``), so that an incident a
    probe's alert opens once its silence is over says ``probe``, not ``alert``."""
    if integration.name not in BUILTIN_SOURCES:
        return Intake(integration, policy, now=now)
    return _builtin_intake(integration, policy, now=now)


def _builtin_intake(integration: Integration, policy: SeverityPolicy, **fields: Any) -> Intake:
    """An intake of a built-in integration: its incidents say its source (``BUILTIN_SOURCES``)
    and it acts as firetower's part of that name (``probes``, ``slos``)."""
    name = integration.name
    return Intake(
        integration,
        policy,
        source=BUILTIN_SOURCES[name],
        actor=Actor.system(name.lstrip("@")),
        **fields,
    )


def _changes_within(changes: list[str], integration: Integration, now: datetime) -> list[str]:
    """The state changes (ISO times) within the integration's flap window before ``now``."""
    window = timedelta(seconds=integration.flap_window_seconds)
    return [change for change in changes if now - datetime.fromisoformat(change) < window]


REPORTS = select(Integration.id).where(Integration.name == REPORT_INTEGRATION)
NOT_A_REPORT = Alert.integration_id.not_in(REPORTS)
"""User reports never send a resolve: they do not count towards whether an incident's alerts
have cleared, and count as resolved once it ends (``resolve_reports_of``)."""


def resolve_reports_of(session: Session, incident_id: int) -> int:
    """Mark the user reports of an incident that has ended resolved; how many.

    A report is a person saying something is broken: it has no sender to resolve it, and
    would otherwise stay firing in the alert lists, and out of retention's reach, for good.
    Reads the incident's unresolved alerts through ``ix_alerts_incident_status``: once per
    incident that ends, however many alerts a storm attached to it.
    """
    ended = session.execute(
        update(Alert)
        .where(
            Alert.incident_id == incident_id,
            Alert.status.in_(UNRESOLVED_STATUSES),
            Alert.integration_id.in_(REPORTS),
        )
        .values(status=AlertStatus.resolved.value, ends_at=clock.now(), status_by=None)
        .execution_options(synchronize_session=False)
    )
    return int(ended.rowcount)  # type: ignore[attr-defined]


def lock_alerts_of(session: Session, incident_id: int) -> None:
    """Lock the alerts of an incident about to be merged, in id order as intake does, before
    the incident itself (``incidents.lock_first_on_merge``): ``move_alerts_to_survivor``
    then changes rows its transaction holds already."""
    session.execute(
        select(Alert.id)
        .where(Alert.incident_id == incident_id)
        .order_by(Alert.id)
        .with_for_update()
    ).all()


def move_alerts_to_survivor(session: Session, merged_id: int, survivor_id: int) -> int:
    """Move every alert of a merged incident to the incident it was merged into; how many.

    A merged incident is over, so its alerts must follow: their repeats then join, and
    their resolves clear, the incident people still work on, and open user reports stay
    open with it rather than being resolved with the merged one.
    """
    moved = session.execute(
        update(Alert)
        .where(Alert.incident_id == merged_id)
        .values(incident_id=survivor_id)
        .execution_options(synchronize_session=False)
    )
    return int(moved.rowcount)  # type: ignore[attr-defined]


def _has_unresolved_alert(session: Session, incident_id: int) -> bool:
    """Whether an alert of the incident has not resolved, or has but flaps (its resolve is
    held); user reports aside (``NOT_A_REPORT``). A seek of ``ix_alerts_incident_status`` per
    status other than resolved, and one for resolved and flapping, however many alerts have
    resolved (``status != 'resolved'`` would read them all)."""
    of_incident = Alert.incident_id == incident_id
    unresolved = select(literal(1)).where(
        of_incident, Alert.status.in_(UNRESOLVED_STATUSES), NOT_A_REPORT
    )
    held = select(literal(1)).where(
        of_incident, Alert.status == AlertStatus.resolved.value, Alert.flapping == true()
    )
    return bool(session.scalar(select(or_(unresolved.exists(), held.exists()))))


DECLARED_STAYS_OPEN = "It stays open: a person declared it, so a person resolves it."


def all_resolved_text(total: int) -> str:
    """The note that every alert of an incident has resolved."""
    if total == 1:
        return "The 1 alert attached to this incident has resolved."
    return f"All {total} alerts attached to this incident have resolved."


def _noted_since_status_change(session: Session, incident_id: int, text: str) -> bool:
    """Whether the incident's timeline has the note ``text`` after its last status change."""
    of_incident = TimelineEvent.incident_id == incident_id
    changed = (
        select(func.coalesce(func.max(TimelineEvent.id), 0))
        .where(of_incident, TimelineEvent.kind == "status_changed")
        .scalar_subquery()
    )
    noted = select(TimelineEvent.id).where(
        of_incident,
        TimelineEvent.kind == "note",
        TimelineEvent.text == text,
        TimelineEvent.id > changed,
    )
    return session.scalar(noted.limit(1)) is not None


# -- silences and maintenance windows -----------------------------------------------------------
@dataclass
class Mutes:
    """What mutes intake at one moment: the active silences' matchers and the services in
    maintenance."""

    silences: list[Matchers]
    services: set[str]

    @classmethod
    def at(cls, view: RoutingView, now: datetime) -> Mutes:
        """What the view's silences and maintenance windows mute at ``now``."""
        return cls(
            [silence.what for silence in view.silences if silence.applies(now)],
            {window.what for window in view.windows if window.applies(now)},
        )

    def cover(self, alert: AlertRow | _Muted) -> bool:
        if alert.service_name is not None and alert.service_name in self.services:
            return True
        # No silence: no generator made, for every alert of a storm.
        return bool(self.silences) and any(
            silence_holds(matchers, alert.labels) for matchers in self.silences
        )


def _window(starts_at: datetime | None, ends_at: datetime) -> tuple[datetime, datetime]:
    """Start (now by default) and end, refused unless the end is after both start and now."""
    now = clock.now()
    start = clock.ensure_utc(starts_at, field="starts_at") if starts_at is not None else now
    end = clock.ensure_utc(ends_at, field="ends_at")
    if end <= start:
        raise InvalidInput("ends_at must be after starts_at", field="ends_at")
    if end <= now:
        raise InvalidInput("ends_at must be in the future", field="ends_at")
    return start, end


def _add_silence(
    session: Session,
    actor: Actor,
    matchers: list[Matcher],
    start: datetime,
    end: datetime,
    comment: str,
) -> Silence:
    silence = Silence(
        matchers=[m.model_dump(mode="json") for m in matchers],
        starts_at=start,
        ends_at=end,
        created_by=actor.label,
        comment=comment,
        created_at=clock.now(),
        expired_at=None,
    )
    session.add(silence)
    session.flush()
    return silence


def create_silence(session: Session, actor: Actor, data: SilenceCreate) -> Silence:
    """A silence of alerts' labels. Routing's ``@integration`` pseudo-label is refused: a
    silence compares alerts' own labels, none of which is it, so ``@integration=x`` would
    silence nothing and ``@integration!=x`` everything."""
    actor.require(Role.responder)
    for at, matcher in enumerate(data.matchers):
        if matcher.label == INTEGRATION_LABEL:
            raise InvalidInput(
                f"matchers.{at}.label: a silence matches alerts' own labels; "
                f"{INTEGRATION_LABEL} is a label of routing and inhibition rules only",
                field=f"matchers.{at}.label",
            )
    if data.duration_seconds is None:
        assert data.ends_at is not None  # SilenceCreate holds exactly one of the two
        start, end = _window(data.starts_at, data.ends_at)
    else:
        start, end = _lasting(data.starts_at, data.duration_seconds)
    return _add_silence(session, actor, data.matchers, start, end, data.comment)


def _lasting(starts_at: datetime | None, duration_seconds: int) -> tuple[datetime, datetime]:
    """Start (the server's now by default) and start plus the duration, refused unless the
    end is in the future and one the database can store."""
    now = clock.now()
    start = clock.ensure_utc(starts_at, field="starts_at") if starts_at is not None else now
    try:
        end = start + timedelta(seconds=duration_seconds)
    except OverflowError:
        raise InvalidInput(
            "starts_at plus duration_seconds is past the year 9999", field="duration_seconds"
        ) from None
    if end <= now:
        raise InvalidInput(
            "starts_at plus duration_seconds is in the past: the silence would be over already",
            field="duration_seconds",
        )
    return start, end


def silence_alert(
    session: Session, actor: Actor, alert_id: int, data: AlertSilenceCreate
) -> Silence:
    """One click: ``=`` on each of the alert's labels, from now for ``duration_minutes``."""
    actor.require(Role.responder)
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}", field="id")
    if not alert.labels:
        raise InvalidInput(f"alert {alert_id} has no labels to match", field="id")
    matchers = [
        _label_matcher(alert_id, str(k), str(v))
        for k, v in sorted(alert.labels.items())
        if v is not None
    ]
    now = clock.now()
    end = now + timedelta(minutes=data.duration_minutes)
    return _add_silence(session, actor, matchers, now, end, data.comment)


def _label_matcher(alert_id: int, label: str, value: str) -> Matcher:
    """``label = value``; a label no matcher can hold (intake keeps labels of any length, a
    matcher 100 characters of name and 1,000 of value) is an InvalidInput naming it."""
    try:
        return Matcher(label=label, op=MatchOp.equal, value=value)
    except ValidationError as exc:
        shown = label if len(label) <= 10 else label[:10] + "…"
        reason = validation_message(exc.errors()[0])
        raise InvalidInput(
            f"alert {alert_id}'s label {shown!r} cannot be a matcher: {reason.lower()}; "
            "silence it with matchers on its other labels",
            field="id",
        ) from None


def list_silences(session: Session, *, include_inactive: bool = False) -> list[Silence]:
    """The silences that are active or pending (oldest first), or every one (newest first).

    A pending one is listed with the active: whoever scheduled it must be able to see it.
    """
    if not include_inactive:
        return list(
            session.scalars(
                select(Silence)
                .where(Silence.expired_at.is_(None))
                .where(Silence.ends_at > clock.now())
                .order_by(Silence.id)
            )
        )
    return list(session.scalars(select(Silence).order_by(Silence.id.desc())))


def expire_silence(session: Session, actor: Actor, silence_id: int) -> Silence:
    """End a silence now; one already expired, or already ended, is a 409 saying when."""
    actor.require(Role.responder)
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"no silence {silence_id}", field="id")
    now = clock.now()
    if silence.expired_at is not None:
        raise Conflict(
            f"silence {silence_id} was already expired at {silence.expired_at.isoformat()}",
            field="id",
            expired_at=silence.expired_at.isoformat(),
        )
    if silence.ends_at <= now:
        raise Conflict(
            f"silence {silence_id} already ended at {silence.ends_at.isoformat()}",
            field="id",
            ends_at=silence.ends_at.isoformat(),
        )
    silence.expired_at = now
    return silence


def create_maintenance_window(
    session: Session, actor: Actor, data: MaintenanceWindowCreate
) -> MaintenanceWindow:
    actor.require(Role.responder)
    _check_services(session, [(data.service_name, "service_name")])
    start, end = _window(data.starts_at, data.ends_at)
    window = MaintenanceWindow(
        service_name=data.service_name,
        starts_at=start,
        ends_at=end,
        comment=data.comment,
        created_by=actor.label,
    )
    session.add(window)
    session.flush()
    return window


def list_maintenance_windows(session: Session) -> list[MaintenanceWindow]:
    """Windows not yet over (current and planned), soonest first."""
    return list(
        session.scalars(
            select(MaintenanceWindow)
            .where(MaintenanceWindow.ends_at > clock.now())
            .order_by(MaintenanceWindow.starts_at, MaintenanceWindow.id)
        )
    )


def delete_maintenance_window(session: Session, actor: Actor, window_id: int) -> None:
    actor.require(Role.responder)
    window = session.get(MaintenanceWindow, window_id)
    if window is None:
        raise NotFound(f"no maintenance window {window_id}", field="id")
    session.delete(window)
    session.flush()


def _severity(value: str | None) -> Severity:
    if value in SEVERITIES:  # as senders mostly spell it: at once
        return SEVERITIES[value]
    return SEVERITIES.get((value or "").strip().lower(), DEFAULT_SEVERITY)


def _fingerprint_of(labels: dict[str, str]) -> str:
    canonical = json.dumps(labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


EXTRA_FIELDS = ("generatorURL", "silenceURL", "dashboardURL", "panelURL", "valueString")
"""Per-alert URLs and values a sender puts beside the annotations, kept with them."""


@functools.cache
def _extra_fields(model: type[AlertmanagerAlert]) -> tuple[str, ...]:
    """Those of ``EXTRA_FIELDS`` the model has: asking a pydantic model for a field it lacks
    raises and catches an AttributeError, which took more time than the rest of a batch's
    preparation."""
    return tuple(name for name in EXTRA_FIELDS if name in model.model_fields)


def alertmanager_signals(payload: AlertmanagerPayload | GrafanaPayload) -> list[Signal]:
    """The signals of an Alertmanager v4 (or Grafana) batch, built before any transaction.

    A signal names the service its ``service`` label gives, unchecked: ``ingest_alertmanager``
    checks it against the catalog in the transaction. The per-alert URLs and values beside
    the annotations (Alertmanager's ``generatorURL``, Grafana's URLs and values too) are
    kept with them when present.
    """
    common_labels, common_annotations = payload.commonLabels, payload.commonAnnotations
    extra_fields = _extra_fields(type(payload.alerts[0])) if payload.alerts else ()
    signals: list[Signal] = []
    for item in payload.alerts:
        labels = {**common_labels, **item.labels}
        extras = {name: value for name in extra_fields if (value := getattr(item, name))}
        annotations = {**extras, **common_annotations, **item.annotations}
        # Positional, in Signal's order: keywords took a third of making the signal.
        signals.append(
            Signal(
                item.fingerprint or _fingerprint_of(item.labels),
                item.status,
                annotations.get("summary") or labels.get("alertname", ""),
                _severity(labels.get("severity")),
                labels.get("service") or None,
                labels,
                annotations,
                item.startsAt,
                item.endsAt,
            )
        )
    return signals


def ingest_alertmanager(session: Session, intake: Intake, signals: Sequence[Signal]) -> int:
    """Record the signals of an Alertmanager or Grafana batch (``alertmanager_signals``); a
    service the catalog lacks, or none, becomes the integration's own. Returns their count."""
    default_service = intake.integration.service_name
    services = Shared.of(session).view.services
    for signal in signals:
        signal.service_name = _catalog_service(services, default_service, signal.service_name)
    receive_all(session, intake, signals)
    finish(session, intake)
    return len(signals)


# -- generic webhook ---------------------------------------------------------------------------
class MappingMiss(ValueError):
    """The integration's mapping could not read what it needs from a document."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("an object", not Python's "a dict")."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"


def _text(mapping: GenericMapping, name: str, data: Any, limit: int | None = None) -> str | None:
    """The text the mapping's expression for ``name`` finds, stripped; None when it finds
    nothing. Longer than ``limit`` is refused (a dedup key: cut, two alerts would merge)."""
    expression = getattr(mapping, name)
    if expression is None:
        return None
    try:
        value = jmespath.search(expression, data)
    except (JMESPathError, TypeError) as exc:
        # Only compiled when the integration was made: a function fails on a value of the
        # wrong kind (join() on a number); TypeError when it compares 1 > "a" as Python does.
        reason = str(exc) if len(str(exc)) <= 300 else f"{str(exc)[:300]}…"  # it quotes values
        raise MappingMiss(name, f"{expression!r} failed on this document: {reason}") from None
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MappingMiss(name, f"{expression!r} gave {_json_kind(value)}, not text")
    try:
        text = str(value).strip()
    except ValueError:  # str() refuses an integer of over 4,300 digits (sum() of long ones)
        raise MappingMiss(name, f"{expression!r} gave a number too long to write") from None
    if limit is not None and len(text) > limit:
        raise MappingMiss(name, f"{expression!r} gave more than {limit} characters")
    return text or None


def generic_signal(session: Session, integration: Integration, data: Any) -> Signal:
    """Read one alert out of a document with the integration's mapping; MappingMiss if not."""
    if not isinstance(data, dict):  # the mapping reads fields: nothing to read elsewhere
        raise MappingMiss("body", f"must be a JSON object, not {_json_kind(data)}")
    try:
        mapping = GenericMapping.model_validate(integration.mapping or {})
    except ValidationError as exc:  # stored before creation checked all that it checks now
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "body"
        reason = f"the integration's mapping is not valid: {validation_message(error)}"
        raise MappingMiss(name, reason) from None
    # Any length, as for an Alertmanager alert: a long title is cut when stored, and a long
    # severity, service or status is one firetower does not know (SEV3, the integration's
    # service, firing); the labels keep them as sent.
    title = _text(mapping, "title", data)
    if title is None:
        raise MappingMiss("title", f"{mapping.title!r} found nothing in the document")
    severity_text = _text(mapping, "severity", data)
    named = _text(mapping, "service", data)
    service = named or integration.service_name
    if service != integration.service_name and not Shared.of(session).known_service(service):
        service = integration.service_name  # routes to the integration's; the label keeps named
    dedup_key = _text(mapping, "dedup_key", data, 255)
    status_text = _text(mapping, "status", data)
    resolved = {v.strip().lower() for v in mapping.resolved_values}
    status = "resolved" if status_text and status_text.lower() in resolved else "firing"
    labels = {
        k: v
        for k, v in {
            "severity": severity_text,
            "service": named or service,
            "status": status_text,
        }.items()
        if v is not None
    }
    return Signal(
        fingerprint=dedup_key or _fingerprint_of({"title": title, "service": service or ""}),
        status=status,
        title=title,
        severity=_generic_severity(severity_text),
        service_name=service,
        labels=labels,
        ends_at=clock.now() if status == "resolved" else None,
    )


def _generic_severity(value: str | None) -> Severity:
    """Senders' words (critical, error, ...) as elsewhere, and firetower's own SEV1..SEV4."""
    upper = (value or "").strip().upper()
    if upper in {s.value for s in Severity}:
        return Severity(upper)
    return _severity(value)


def ingest_generic(session: Session, intake: Intake, signal: Signal) -> AlertRow:
    """One generic webhook document; the alert as recorded (no ORM reload: the answer
    needs only its fingerprint)."""
    if signal.status == "resolved":
        prefetch_many(session, [(intake, [signal.fingerprint])])
        signal.ends_at = _resolved_at(intake.known.get(signal.fingerprint))
    (alert,) = receive_all(session, intake, [signal])
    finish(session, intake)
    return alert


# -- built-in sources: user reports, probes, SLOs ---------------------------------------------
def builtin_integration(session: Session, name: str, kind: str) -> Integration:
    """A built-in integration (user reports, probes, SLOs), made on first use.

    Its name starts with "@", out of reach of the names admins may give (``NAME``), and its
    kind is taken by no intake endpoint, so its key (never shown) opens nothing.
    """
    query = select(Integration).where(Integration.name == name)
    integration = session.scalar(query)
    if integration is not None:
        return integration
    integration = Integration(name=name, kind=kind, service_name=None, created_at=clock.now())
    _new_key(session, integration)
    try:
        with session.begin_nested():
            session.add(integration)
    except IntegrityError:  # a concurrent first use made it
        found = session.scalar(query)
        assert found is not None
        return found
    return integration


def raise_internal(
    session: Session,
    policy: SeverityPolicy,
    *,
    integration_name: str,
    kind: str,
    signal: Signal,
    summary: str = "",
) -> tuple[Alert, Intake]:
    """A signal firetower makes itself (a failing probe, an SLO burning its budget).

    It goes through the same intake as any alert: dedup by fingerprint, silences,
    maintenance windows, flapping, routing. Send ``status="resolved"`` when it clears.
    """
    integration = builtin_integration(session, integration_name, kind)
    intake = _builtin_intake(integration, policy, summary=summary)
    alert = receive(session, intake, signal)
    finish(session, intake)
    return alert, intake


def submit_report(
    session: Session, actor: Actor, data: ReportCreate, policy: SeverityPolicy
) -> tuple[Alert, Intake]:
    """A person's report becomes a signal: it joins or opens its service's incident.

    ``where`` names a service in any case; the signal carries the catalog's spelling as its
    ``service`` label, so routing rules match a report as they match an alert.
    """
    actor.require(Role.viewer)
    integration = builtin_integration(session, REPORT_INTEGRATION, REPORT_KIND)
    where = data.where.strip()
    service_name = Shared.of(session).catalog_name(where) if where else None
    labels = {"where": where, "reporter": actor.label}
    if service_name is not None:
        labels["service"] = service_name
    what = data.what.strip()
    contact = data.contact.strip()
    intake = Intake(
        integration,
        policy,
        source=Source.user_report,
        actor=Actor.system(f"user-report:{actor.label}"),
        summary=f"Reported by {actor.label}"
        + (f" (contact: {contact})" if contact else "")
        + f": {what}",
    )
    alert = receive(
        session,
        intake,
        Signal(
            fingerprint=uuid.uuid4().hex,  # every report is its own signal
            status="firing",
            title=what,
            service_name=service_name,
            labels=labels,
            annotations={"contact": contact},
        ),
    )
    finish(session, intake)
    return alert, intake


def ingest_pagerduty(session: Session, intake: Intake, event: PagerDutyEvent) -> str:
    """Record an Events v2 alert event; returns its dedup key (made up on a trigger without)."""
    return ingest_pagerduty_events(session, intake, [event])[0]


def ingest_pagerduty_batches(
    session: Session, batches: Sequence[tuple[Intake, Sequence[PagerDutyEvent]]]
) -> list[list[str]]:
    """Record the Events v2 alert events of several integrations (an intake each); each
    one's dedup keys.

    Their known alerts are read at once. When every event is a trigger, the integrations'
    alerts are all settled, then written together, then their notes are made, the tallies
    in one statement: a group over many routing keys took a few statements per integration,
    twice the work per event over 24 keys as over one. (With inhibition rules, ``_settled``
    writes each batch before it settles, so a source earlier in the group still counts.)
    An acknowledge or resolve reads what the events before it wrote, so a group with one
    goes integration by integration.
    """
    prefetch_many(
        session,
        [(intake, [e.dedup_key for e in events if e.dedup_key]) for intake, events in batches],
    )
    shared = Shared.of(session)
    shared.lock_services([intake.integration.service_name for intake, _ in batches])
    if any(e.event_action != "trigger" for _, events in batches for e in events):
        return [ingest_pagerduty_events(session, intake, events) for intake, events in batches]
    dedup_keys: list[list[str]] = []
    rows: list[AlertRow] = []
    for intake, events in batches:
        keys = [_dedup_key(intake, event) for event in events]
        signals = [_trigger_signal(intake, e, key) for e, key in zip(events, keys, strict=True)]
        rows.extend(_settled(session, shared, intake, signals)[1])
        dedup_keys.append(keys)
    intake_rows.write(session, rows)
    for intake, _ in batches:
        _queue_notifications(session, intake)
    finish_all(session, [intake for intake, _ in batches])
    return dedup_keys


def _dedup_key(intake: Intake, event: PagerDutyEvent) -> str:
    """A trigger's dedup key; for one without, a new key, marked as looked up already: no
    alert can have it, so reading the known alerts for it was a wasted read (the only read
    of a group whose triggers all come without keys)."""
    if event.dedup_key:
        return event.dedup_key
    made = uuid.uuid4().hex
    intake.prefetched.add(made)
    return made


def ingest_pagerduty_events(
    session: Session, intake: Intake, events: Sequence[PagerDutyEvent]
) -> list[str]:
    """Record Events v2 alert events of one integration, in order; their dedup keys.

    Triggers in a row are recorded as one batch (a few statements for all of them, as an
    Alertmanager batch is); an acknowledge or resolve records the triggers before it first.
    """
    dedup_keys: list[str] = []
    triggers: list[Signal] = []
    for event in events:
        if event.event_action == "trigger":
            dedup_keys.append(_dedup_key(intake, event))
            triggers.append(_trigger_signal(intake, event, dedup_keys[-1]))
            continue
        if triggers:
            receive_all(session, intake, triggers)
            triggers = []
        assert event.dedup_key is not None
        dedup_keys.append(event.dedup_key)
        status = "acknowledged" if event.event_action == "acknowledge" else "resolved"
        update_status(session, intake, event.dedup_key, status)
    if triggers:
        receive_all(session, intake, triggers)
    finish(session, intake)
    return dedup_keys


def pagerduty_labels(payload: PagerDutyPayload) -> dict[str, str]:
    """The labels of the alert an Events v2 trigger's payload raises, which routing rules,
    silences and inhibition rules match: at ``/v2/enqueue`` and in the route test alike."""
    return {
        k: v
        for k, v in {
            "source": payload.source,
            "severity": payload.severity.value,
            "component": payload.component,
            "group": payload.group,
            "class": payload.class_,
        }.items()
        if v is not None
    }


def _trigger_signal(intake: Intake, event: PagerDutyEvent, dedup_key: str) -> Signal:
    assert event.payload is not None  # a trigger without one was refused (pagerduty_errors)
    details = event.payload.custom_details
    return Signal(
        fingerprint=dedup_key,
        status="firing",
        title=event.payload.summary,
        severity=SEVERITIES[event.payload.severity.value],
        service_name=intake.integration.service_name,
        labels=pagerduty_labels(event.payload),
        annotations={
            key: value
            for key, value in {
                "custom_details": details
                if isinstance(details, dict) or _empty(details)
                else {"details": details},
                "links": event.links,
                "images": event.images,
                "client": event.client,
                "client_url": event.client_url,
            }.items()
            if not _empty(value)
        },
        starts_at=event.payload.timestamp,
    )


def _empty(value: Any) -> bool:
    """An annotation that says nothing (null, or an empty text, array or object): left out,
    so it does not replace the last ones sent either."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def pagerduty_errors(event: PagerDutyEvent) -> list[str]:
    """What PagerDuty would refuse beyond the shape: a trigger needs a payload, others a key."""
    if event.event_action == "trigger" and event.payload is None:
        return ["'payload' is missing or invalid"]
    if event.event_action != "trigger" and not event.dedup_key:
        return [f"'dedup_key' is required for event_action '{event.event_action}'"]
    return []


def store_change(
    session: Session, integration: Integration, event: PagerDutyChangeEvent
) -> ChangeEvent:
    now = clock.now()
    change = ChangeEvent(
        integration_id=integration.id,
        service_name=_changed_service(session, integration, event),
        summary=event.payload.summary,
        source=event.payload.source,
        timestamp=event.payload.timestamp or now,
        received_at=now,
        custom_details=event.payload.custom_details,
        links=event.links,
    )
    session.add(change)
    session.flush()
    return change


def _changed_service(
    session: Session, integration: Integration, event: PagerDutyChangeEvent
) -> str | None:
    """The integration's service; for a key shared by many services (one CI system), the
    catalog service that ``custom_details.service`` or else ``source`` names, in any case."""
    if integration.service_name is not None:
        return integration.service_name
    shared = Shared.of(session)
    named = event.payload.custom_details.get("service")
    for name in (named if isinstance(named, str) else "", event.payload.source):
        if name.strip() and (found := shared.catalog_name(name.strip())) is not None:
            return found
    return None


def list_changes(
    session: Session,
    *,
    integration: str | None = None,
    service_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[ChangeEventRead]:
    """Change events, newest first by when they happened, for "what changed before this?".

    ``since`` and ``until`` bound the change's own time (inclusive); an unknown
    integration or service is a 404 naming the parameter, a window ending before it
    starts a 422.
    """
    if since is not None and until is not None and until < since:
        raise InvalidInput(
            f"until ({until.isoformat()}) is before since ({since.isoformat()})", field="until"
        )
    query = select(ChangeEvent, Integration.name).join(
        Integration, Integration.id == ChangeEvent.integration_id
    )
    if integration is not None:
        query = query.where(from_integration(session, ChangeEvent.integration_id, integration))
    if service_name is not None:
        # In any case, as a change names its service on arrival (catalog names are lower).
        found = session.scalar(select(Service.name).where(Service.name == service_name.lower()))
        if found is None:
            raise NotFound(f"no service named {service_name!r}", field="service")
        query = query.where(ChangeEvent.service_name == found)
    if since is not None:
        query = query.where(ChangeEvent.timestamp >= since)
    if until is not None:
        query = query.where(ChangeEvent.timestamp <= until)
    query = query.order_by(ChangeEvent.timestamp.desc(), ChangeEvent.id.desc()).limit(limit)
    return [
        ChangeEventRead(
            id=change.id,
            integration=name,
            service_name=change.service_name,
            summary=change.summary,
            source=change.source,
            timestamp=change.timestamp,
            received_at=change.received_at,
            custom_details=change.custom_details,
            links=change.links,
        )
        for change, name in session.execute(query)
    ]


# -- routing rules -----------------------------------------------------------------------------
def _dump_matchers(matchers: Sequence[Matcher]) -> list[dict[str, str]]:
    return [m.model_dump(mode="json") for m in matchers]


def _check_services(session: Session, named: Sequence[tuple[str | None, str]]) -> None:
    """Refuse the first (service name, field) whose service the catalog lacks; hold the
    others until this transaction ends, so that none is deleted before what names it
    commits (``catalog.hold_services``)."""
    found = catalog.hold_services(session, [name for name, _ in named])
    for name, place in named:
        if name is not None and name not in found:
            raise InvalidInput(f"no service named {name!r}", field=place)


def _fill_rule(rule: RoutingRule, data: RoutingRuleIn, now: datetime) -> None:
    rule.name = data.name
    rule.matchers = _dump_matchers(data.matchers)
    rule.service_name = data.service
    rule.severity = data.severity.value if data.severity is not None else None
    rule.severity_map = (
        data.severity_map.model_dump(mode="json") if data.severity_map is not None else None
    )
    rule.action = data.action.value
    rule.on_clear = data.on_clear.value
    rule.continue_matching = data.continue_
    rule.description = data.description
    rule.updated_at = now


def routing_rule_read(rule: RoutingRule) -> RoutingRuleRead:
    return RoutingRuleRead.model_validate(
        {
            "name": rule.name,
            "position": rule.position,
            "matchers": rule.matchers,
            "service": rule.service_name,
            "severity": rule.severity,
            "severity_map": rule.severity_map,
            "action": rule.action,
            "on_clear": rule.on_clear,
            "continue": rule.continue_matching,
            "description": rule.description,
            "created_at": rule.created_at,
            "updated_at": rule.updated_at,
        }
    )


def list_routing_rules(session: Session) -> list[RoutingRule]:
    return list(session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id)))


def get_routing_rule(session: Session, name: str) -> RoutingRule:
    rule = session.scalar(select(RoutingRule).where(RoutingRule.name == name))
    if rule is None:
        raise NotFound(f"no routing rule named {name!r}", field="name")
    return rule


def _place(rules: list[RoutingRule], rule: RoutingRule, position: int | None) -> None:
    """Put ``rule`` at ``position`` (the end when None or past it) and renumber 0..n-1."""
    rest = [r for r in rules if r is not rule]
    at = len(rest) if position is None else min(position, len(rest))
    rest.insert(at, rule)
    for index, each in enumerate(rest):
        if each.position != index:
            each.position = index


def create_routing_rule(session: Session, actor: Actor, data: RoutingRuleCreate) -> RoutingRule:
    """Add a rule at ``position`` (the end by default); later rules move down one."""
    actor.require(Role.admin)
    rules = list_routing_rules(session)
    if any(r.name == data.name for r in rules):
        raise Conflict(f"a routing rule named {data.name} already exists", field="name")
    _check_services(session, [(data.service, "service")])
    now = clock.now()
    rule = RoutingRule(created_at=now, position=len(rules))
    _fill_rule(rule, data, now)
    _place(rules, rule, data.position)
    session.add(rule)
    session.flush()
    return rule


def replace_routing_rule(
    session: Session, actor: Actor, name: str, data: RoutingRuleCreate
) -> RoutingRule:
    """Replace one rule (it may be renamed); ``position`` moves it, left out keeps its place."""
    actor.require(Role.admin)
    rule = get_routing_rule(session, name)
    rules = list_routing_rules(session)
    if data.name != name and any(r.name == data.name for r in rules):
        raise Conflict(f"a routing rule named {data.name} already exists", field="name")
    _check_services(session, [(data.service, "service")])
    _fill_rule(rule, data, clock.now())
    if data.position is not None:
        _place(rules, rule, data.position)
    session.flush()
    return rule


def delete_routing_rule(session: Session, actor: Actor, name: str) -> None:
    actor.require(Role.admin)
    rule = get_routing_rule(session, name)
    rules = list_routing_rules(session)
    session.delete(rule)
    for index, each in enumerate(r for r in rules if r is not rule):
        if each.position != index:
            each.position = index
    session.flush()


def replace_routing_rules(
    session: Session,
    actor: Actor,
    rules: Sequence[RoutingRuleIn],
    *,
    field: Callable[[int, str], str] = lambda i, name: f"rules.{i}.{name}",
) -> list[RoutingRule]:
    """Replace the whole ordered list at once (the API's PUT, and firetower.yaml's
    ``routing:``). Rules keep their row (and ``created_at``) by name; every check runs first.
    """
    actor.require(Role.admin)
    seen = _names_once(rules, "routing rule", field)
    _check_services(session, [(data.service, field(i, "service")) for i, data in enumerate(rules)])
    existing = {r.name: r for r in list_routing_rules(session)}
    for name, gone in existing.items():
        if name not in seen:
            session.delete(gone)
    session.flush()  # names freed before rows are renamed or added
    now = clock.now()
    kept: list[RoutingRule] = []
    for index, data in enumerate(rules):
        rule = existing.get(data.name)
        if rule is None:
            rule = RoutingRule(created_at=now, position=index)
            session.add(rule)
        elif _same_rule(rule, data, index):
            kept.append(rule)
            continue
        _fill_rule(rule, data, now)
        rule.position = index
        kept.append(rule)
    session.flush()
    return kept


def _names_once(
    rules: Sequence[RoutingRuleIn | InhibitRuleIn],
    noun: str,
    field: Callable[[int, str], str],
) -> set[str]:
    """The rules' names; a name given twice is refused, naming the second place."""
    seen: set[str] = set()
    for index, data in enumerate(rules):
        if data.name in seen:
            raise Conflict(f"the {noun} name {data.name} appears twice", field=field(index, "name"))
        seen.add(data.name)
    return seen


def _same_columns(rule: object, probe: object, columns: Sequence[str]) -> bool:
    """An unchanged rule keeps its ``updated_at`` (applying the same file twice changes
    nothing): ``probe`` is the rule filled from the new data."""
    return all(getattr(rule, c) == getattr(probe, c) for c in columns)


def _same_rule(rule: RoutingRule, data: RoutingRuleIn, position: int) -> bool:
    probe = RoutingRule()
    _fill_rule(probe, data, rule.updated_at)
    return rule.position == position and _same_columns(rule, probe, ROUTING_RULE_COLUMNS)


ROUTING_RULE_COLUMNS = (
    "matchers",
    "service_name",
    "severity",
    "severity_map",
    "action",
    "on_clear",
    "continue_matching",
    "description",
)
INHIBIT_RULE_COLUMNS = ("source_matchers", "target_matchers", "equal", "description")


def explain_route(session: Session, data: RouteTest) -> RouteTestResult:
    """Which rules an example alert would hit, and what routing would do; stores nothing.

    An integration the body names must exist (built-in ones too): 422 naming ``integration``,
    as for an unknown service, so that a typo is not answered with an empty match.
    """
    integration = None
    if data.integration is not None:
        integration = session.scalar(
            select(Integration).where(Integration.name == data.integration)
        )
        if integration is None and data.integration not in BUILTIN_INTEGRATIONS:
            raise InvalidInput(f"no integration named {data.integration!r}", field="integration")
    default_service = integration.service_name if integration is not None else None
    labels: dict[str, str] = dict(data.labels)
    if data.pagerduty is not None:
        if labels:
            raise InvalidInput("give labels or a pagerduty payload, not both", field="pagerduty")
        if integration is not None and integration.kind != IntegrationKind.pagerduty:
            raise InvalidInput(
                f"integration {integration.name} is {integration.kind}, not pagerduty: it "
                "takes no Events v2 payload",
                field="pagerduty",
            )
        labels = pagerduty_labels(data.pagerduty)
    unknown: str | None = None
    if integration is not None and integration.kind == IntegrationKind.pagerduty:
        service = default_service  # an event's alert is always its integration's service's
    else:
        service = labels.get("service") or default_service
        if service != default_service and not Shared.of(session).known_service(service):
            unknown = service  # intake routes to the integration's service instead
            service = default_service
    rules = [Rule.of(r) for r in list_routing_rules(session)]
    decision = Routing(rules, []).decide(
        labels,
        data.integration or "",
        service,
        _own_severity(session, data.integration, integration, labels),
    )
    return RouteTestResult(
        matched=list(decision.matched),
        decided_by=decision.decided_by,
        action=decision.action,
        notify=list(decision.notify),
        service=decision.service,
        severity=decision.severity,
        on_clear=decision.on_clear,
        outcome=_outcome(session, decision, unknown),
    )


def _outcome(session: Session, decision: Decision, unknown_service: str | None) -> str:
    """What routing ``decision`` does to a firing alert now, as ``route`` would: ``open``
    alone does not tell an alert that joins an incident from one that opens nothing.
    ``unknown_service``: the example's ``service`` label, which the catalog lacks."""
    if decision.action == RoutingAction.drop:
        return "dropped: the alert is stored and counted, and nothing else happens"
    if not decision.joins:
        return "notified only: the alert joins no incident"
    service = Shared.of(session).view.services.get(decision.service or "")
    if service is None:
        named = f" (service {unknown_service!r} is not in the catalog)" if unknown_service else ""
        return (
            f"opens nothing: no known service{named}; a rule that sets a service, or a "
            "service label the catalog knows, routes it"
        )
    found = session.execute(ACTIVE_INCIDENTS, {"service_ids": [service.id]}).first()
    if found is not None:
        active = found[1]
        return f"joins {format_ref(active)}, the active incident of {decision.service}"
    if decision.action == RoutingAction.attach:
        return (
            f"waits: {decision.service} has no active incident to join (attach never opens "
            "one); each repeat tries again"
        )
    return f"opens an incident on {decision.service}"


def _own_severity(
    session: Session, name: str | None, integration: Integration | None, labels: Mapping[str, str]
) -> Severity:
    """An example alert's own severity, as its integration's intake would give it (routing
    rules may change it): a generic mapping's may be SEV1..SEV4, a built-in source sets its
    own; Alertmanager's reading when no integration is named."""
    reader = _BUILTIN_SEVERITIES.get(name or "")
    if reader is not None:
        return reader(session, labels)
    if integration is not None and integration.kind == IntegrationKind.generic:
        return _generic_severity(labels.get("severity"))
    return _severity(labels.get("severity"))  # Alertmanager, Grafana, PagerDuty alike


# -- inhibition rules --------------------------------------------------------------------------
def list_inhibit_rules(session: Session) -> list[InhibitRule]:
    return list(session.scalars(select(InhibitRule).order_by(InhibitRule.name)))


def get_inhibit_rule(session: Session, name: str) -> InhibitRule:
    rule = session.scalar(select(InhibitRule).where(InhibitRule.name == name))
    if rule is None:
        raise NotFound(f"no inhibition rule named {name!r}", field="name")
    return rule


def _fill_inhibit(rule: InhibitRule, data: InhibitRuleIn, now: datetime) -> None:
    rule.name = data.name
    rule.source_matchers = _dump_matchers(data.source_matchers)
    rule.target_matchers = _dump_matchers(data.target_matchers)
    rule.equal = list(data.equal)
    rule.description = data.description
    rule.updated_at = now


def create_inhibit_rule(session: Session, actor: Actor, data: InhibitRuleIn) -> InhibitRule:
    actor.require(Role.admin)
    if session.scalar(select(InhibitRule.id).where(InhibitRule.name == data.name)) is not None:
        raise Conflict(f"an inhibition rule named {data.name} already exists", field="name")
    now = clock.now()
    rule = InhibitRule(created_at=now)
    _fill_inhibit(rule, data, now)
    session.add(rule)
    session.flush()
    return rule


def replace_inhibit_rule(
    session: Session, actor: Actor, name: str, data: InhibitRuleIn
) -> InhibitRule:
    actor.require(Role.admin)
    rule = get_inhibit_rule(session, name)
    if data.name != name and (
        session.scalar(select(InhibitRule.id).where(InhibitRule.name == data.name)) is not None
    ):
        raise Conflict(f"an inhibition rule named {data.name} already exists", field="name")
    _fill_inhibit(rule, data, clock.now())
    session.flush()
    return rule


def delete_inhibit_rule(session: Session, actor: Actor, name: str) -> None:
    actor.require(Role.admin)
    session.delete(get_inhibit_rule(session, name))
    session.flush()


def replace_inhibit_rules(
    session: Session,
    actor: Actor,
    rules: Sequence[InhibitRuleIn],
    *,
    field: Callable[[int, str], str] = lambda i, name: f"rules.{i}.{name}",
) -> list[InhibitRule]:
    """Replace every inhibition rule at once (PUT, and firetower.yaml's ``inhibit_rules:``)."""
    actor.require(Role.admin)
    seen = _names_once(rules, "inhibition rule", field)
    existing = {r.name: r for r in list_inhibit_rules(session)}
    for name, gone in existing.items():
        if name not in seen:
            session.delete(gone)
    now = clock.now()
    result: list[InhibitRule] = []
    for data in rules:
        rule = existing.get(data.name)
        if rule is None:
            rule = InhibitRule(created_at=now)
            session.add(rule)
            _fill_inhibit(rule, data, now)
        else:
            probe = InhibitRule()
            _fill_inhibit(probe, data, rule.updated_at)
            if not _same_columns(rule, probe, INHIBIT_RULE_COLUMNS):
                _fill_inhibit(rule, data, now)
        result.append(rule)
    session.flush()
    return sorted(result, key=lambda r: r.name)


# -- alert and group lists ---------------------------------------------------------------------
def _ref(incident_id: int | None) -> str | None:
    return format_ref(incident_id) if incident_id is not None else None


def list_alerts(
    session: Session,
    *,
    status: str | None = None,
    integration: str | None = None,
    silenced: bool | None = None,
    flapping: bool | None = None,
    inhibited: bool | None = None,
    group_key: str | None = None,
    incident: str | None = None,
    limit: int = 100,
) -> list[AlertRead]:
    """Alerts last seen first, filtered; an unknown integration name or incident is a 404. A
    group key is matched exactly ("" is the group of an integration that groups by no label)."""
    query = select(Alert, Integration.name).join(
        Integration, Integration.id == Alert.integration_id
    )
    if integration is not None:
        query = query.where(from_integration(session, Alert.integration_id, integration))
    if group_key is not None:
        query = query.where(Alert.group_key == group_key)
    sorted_statuses: frozenset[str] = frozenset()
    if incident is not None:
        of_incident = in_incident(session, incident)
        query, sorted_statuses = query.where(of_incident.condition), of_incident.sorted_statuses
    if silenced is not None:
        query = query.where(Alert.silenced.is_(silenced))
    if flapping is not None:
        query = query.where(Alert.flapping.is_(flapping))
    if inhibited is not None:
        query = query.where(Alert.inhibited.is_(inhibited))
    statuses = [status] if status is not None else LISTED_STATUSES
    listed = [
        row
        for s in statuses
        for row in newest_alerts(session, query, s, limit, sort=s in sorted_statuses)
    ]
    listed.sort(key=lambda row: (row[0].last_seen_at, row[0].id), reverse=True)
    return [alert_read(alert, name) for alert, name in listed[:limit]]


def newest_alerts(
    session: Session, query: Select[Alert, str], status: str, limit: int, *, sort: bool = False
) -> list[Any]:
    """The rows of ``query`` (alerts first) with this status, last seen first, at most
    ``limit``: a walk back from the end of the status's range of
    ``ix_alerts_status_last_seen``. Asked for every status at once, the database sorted every
    stored alert instead (1.3 s over a million on SQLite), so the lists ask status by status.

    ``sort``: ``query`` selects few alerts by another index (``IncidentFilter``); the status
    is then tested as an expression (``status || ''``), which no index serves, so that the
    database reads those few and sorts them rather than walk the status's range."""
    newest = query.where((Alert.status + "" if sort else Alert.status) == status)
    newest = newest.order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(limit)
    return list(session.execute(newest))


def annotation_texts(annotations: dict[str, Any] | None) -> dict[str, str]:
    """Annotations as text: strings as sent, other values (PagerDuty's ``custom_details``,
    ``links``) as compact JSON; empty ones left out (null, an empty array or object, and
    ``{"details": null}``, stored for no custom_details before they were left out there)."""
    return {
        key: value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        for key, value in (annotations or {}).items()
        if value is not None and value not in ([], {}, {"details": None})
    }


def alert_read(alert: Alert, integration: str) -> AlertRead:
    return AlertRead(
        id=alert.id,
        integration=integration,
        fingerprint=alert.fingerprint,
        status=alert.status,
        title=alert.title,
        severity=alert.severity,
        service_name=alert.service_name,
        labels=alert.labels or {},
        annotations=annotation_texts(alert.annotations),
        group_key=alert.group_key,
        count=alert.count,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        first_seen_at=alert.first_seen_at,
        last_seen_at=alert.last_seen_at,
        silenced=alert.silenced,
        flapping=alert.flapping,
        incident=_ref(alert.incident_id),
        inhibited=alert.inhibited,
        inhibited_by=alert.inhibited_by,
        inhibit_rule=alert.inhibit_rule,
        routed_by=alert.routed_by,
        routing_action=alert.routing_action,
        status_by=alert.status_by,
    )


def delete_expired_alerts(
    session: Session, *, last_seen_before: datetime, limit: int = RETENTION_CHUNK_ALERTS
) -> int:
    """Delete at most ``limit`` resolved alerts last seen before ``last_seen_before``, the
    oldest first, and return how many. Their keys go with them (the alerts' delete
    triggers): the same fingerprint firing later is a new alert. Firing and acknowledged
    alerts stay however old, since they still stand for a live problem.

    On PostgreSQL the rows are locked in id order first, as intake locks the alerts it
    reads, so the two never wait for each other crosswise; and the DELETE tests the status
    and time again on each row as it is once locked: an alert that fired again meanwhile is
    kept. On SQLite, whose writers take turns, neither is needed, and the second test made
    SQLite walk every expired alert's index entry for each chunk instead of finding the
    chunk's rows by id."""
    expired = (Alert.status == AlertStatus.resolved.value, Alert.last_seen_at < last_seen_before)
    chunk = select(Alert.id).where(*expired).order_by(Alert.last_seen_at, Alert.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        in_id_order = (
            select(Alert.id)
            .where(Alert.id.in_(chunk.scalar_subquery()))
            .order_by(Alert.id)
            .with_for_update()
        )
        deleting = delete(Alert).where(Alert.id.in_(in_id_order.scalar_subquery()), *expired)
    else:
        deleting = delete(Alert).where(Alert.id.in_(chunk.scalar_subquery()))
    deleted = session.execute(deleting, execution_options={"synchronize_session": False})
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def list_groups(
    session: Session, *, integration: str | None = None, limit: int = 100
) -> list[AlertGroupRead]:
    """One row per (integration, group key): firing and resolved counts, most recent first.

    Summed before the integrations' names are joined: a million alerts took a quarter less
    on SQLite than when each row was joined first."""
    resolved = Alert.status == "resolved"
    summed = select(
        Alert.integration_id,
        Alert.group_key,
        func.sum(case((resolved, 0), else_=1)).label("firing"),
        func.sum(case((resolved, 1), else_=0)).label("resolved"),
        func.max(Alert.last_seen_at).label("last_seen_at"),
        func.max(Alert.incident_id).label("incident_id"),
    ).group_by(Alert.integration_id, Alert.group_key)
    if integration is not None:
        summed = summed.where(from_integration(session, Alert.integration_id, integration))
    groups = summed.subquery()
    query = (
        select(
            groups.c.group_key,
            Integration.name,
            groups.c.firing,
            groups.c.resolved,
            groups.c.last_seen_at,
            groups.c.incident_id,
        )
        .join(Integration, Integration.id == groups.c.integration_id)
        .order_by(groups.c.last_seen_at.desc(), groups.c.group_key)
        .limit(limit)
    )
    return [
        AlertGroupRead(
            group_key=key,
            integration=name,
            firing=int(firing or 0),
            resolved=int(done or 0),
            last_seen_at=last_seen,
            incident=_ref(incident_id),
        )
        for key, name, firing, done, last_seen, incident_id in session.execute(query)
    ]


# -- what names a catalog service ----------------------------------------------------------------
def service_references(session: Session, service: Service) -> list[str]:
    """What of signals still names ``service``, so the catalog refuses to delete it: the
    integrations bound to it (not revoked), the routing rules that route to it and its
    maintenance windows not over yet. Alerts and change events keep the name as history."""
    integrations = session.scalars(
        select(Integration.name)
        .where(Integration.service_name == service.name, Integration.revoked_at.is_(None))
        .order_by(Integration.name)
    )
    rules = session.scalars(
        select(RoutingRule.name)
        .where(RoutingRule.service_name == service.name)
        .order_by(RoutingRule.position)
    )
    windows = session.scalars(
        select(MaintenanceWindow.id)
        .where(MaintenanceWindow.service_name == service.name)
        .where(MaintenanceWindow.ends_at > clock.now())
        .order_by(MaintenanceWindow.id)
    )
    return [
        *(f"integration {name!r}" for name in integrations),
        *(f"routing rule {name!r}" for name in rules),
        *(f"maintenance window {window_id}" for window_id in windows),
    ]
