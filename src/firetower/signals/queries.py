"""Read-side views of signals for the console and the CLI, and the text form of matchers.

The console's alert list puts firing alerts first and says whether each one is muted *now*
(an alert's stored ``silenced`` flag only tells how its last firing was handled: a silence
made from the alert afterwards does not change it until it fires again). Nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.errors import InvalidInput
from firetower.problems import validation_message
from firetower.signals.models import Alert, Integration, MaintenanceWindow, Silence
from firetower.signals.routing import compile_matchers, silence_holds
from firetower.signals.schemas import AlertRead, AlertStatus, Matcher, MatchOp, SilenceState
from firetower.signals.service import (
    BUILTIN_INTEGRATIONS,
    LISTED_STATUSES,
    alert_read,
    from_integration,
    in_incident,
    kept_only_its_start,
    list_rejected,
    newest_alerts,
)

PREVIEW_CHARS = 2000
"""How much of a dead letter's body the console shows (the rest stays in the database)."""

_MATCHER = re.compile(r'^\s*([^=!~"\s]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)


# -- matchers as text -----------------------------------------------------------------------------
def parse_matcher(text: str) -> Matcher:
    """``label=value``, ``label!=value``, ``label=~regex`` or ``label!~regex``, as the CLI's
    ``--matcher`` and the console's silence form read them.

    The value may be wrapped in double quotes (``alertname="High latency"``), as Alertmanager
    writes matchers: they are removed, and must wrap the whole value. Inside them, as in
    Alertmanager, ``\\"`` is a double quote, ``\\\\`` a backslash and ``\\n`` a line break;
    any other backslash stays as written, so a regex's ``\\d`` needs no doubling. Unquoted,
    a value is read as written (no escapes), holds no double quote and cannot start with
    ``=``, ``!`` or ``~``, so that a mistyped operator (``a==x``) is refused rather than read
    as a value nothing has. A bad matcher, regex or label is an InvalidInput naming
    ``matchers``.
    """
    shown = repr(text.strip())

    def refused(reason: str) -> InvalidInput:
        return InvalidInput(f"matchers: {shown}{reason}", field="matchers")

    found = _MATCHER.match(text)
    if found is None:
        raise refused(" is not label=value, label!=value, label=~regex or label!~regex")
    label, op, value = found.groups()
    if value.startswith('"'):
        value = _unquoted(value[1:], refused)
    elif '"' in value:
        raise refused(": a double quote may only wrap the whole value")
    elif value[:1] in ("=", "!", "~"):
        raise refused(
            f": an unquoted value cannot start with {value[0]!r} (a mistyped operator?); "
            f'write {label}{op}"{value}" if it belongs to the value'
        )
    try:
        return Matcher(label=label, op=MatchOp(op), value=value)
    except ValidationError as exc:
        raise refused(f": {validation_message(exc.errors()[0])}") from None


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
"""What follows a backslash in a quoted value, and what the pair stands for."""


def _unquoted(rest: str, refused: Callable[[str], InvalidInput]) -> str:
    """The value a quoted matcher value holds; ``rest`` follows its opening quote."""
    value: list[str] = []
    at = 0
    while at < len(rest):
        char = rest[at]
        if char == "\\" and (escaped := _ESCAPES.get(rest[at + 1 : at + 2])) is not None:
            value.append(escaped)
            at += 2
            continue
        if char == '"':
            if at != len(rest) - 1:
                raise refused(': a double quote inside a quoted value is written \\"')
            return "".join(value)
        value.append(char)
        at += 1
    raise refused(": the value's opening double quote is never closed")


def format_matcher(matcher: Matcher | dict[str, str]) -> str:
    """The form ``parse_matcher`` reads back: ``alertname="HighLatency"``, on one line,
    with a double quote or a line break in the value escaped, and a backslash where it
    would be read as an escape."""
    if isinstance(matcher, Matcher):
        label, op, value = matcher.label, matcher.op.value, matcher.value
    else:
        label, op, value = matcher["label"], matcher["op"], matcher["value"]
    quoted = []
    for at, char in enumerate(value):
        if char == "\n":
            quoted.append("\\n")
            continue
        # Followed by what reads as an escape's second half (a line break is written \n).
        read_as_escape = char == "\\" and (value[at + 1 : at + 2] or '"') in '\\"n\n'
        quoted.append("\\" + char if char == '"' or read_as_escape else char)
    return f'{label}{op}"{"".join(quoted)}"'


# -- alerts ------------------------------------------------------------------------------------
@dataclass
class ListedAlert:
    """An alert as the console lists it, with what mutes it at this moment."""

    alert: AlertRead
    silenced_by: list[int] = field(default_factory=list)
    in_maintenance: bool = False

    @property
    def muted_now(self) -> bool:
        return bool(self.silenced_by) or self.in_maintenance

    @property
    def links(self) -> list[tuple[str, str]]:
        """(key, URL) of its annotations that are http(s) URLs, the runbook first."""
        annotations = self.alert.annotations
        keys = [k for k in LINK_ORDER if k in annotations]
        keys += sorted(k for k in annotations if k not in LINK_ORDER)
        return [(k, annotations[k]) for k in keys if is_web_url(annotations[k])]

    @property
    def texts(self) -> list[tuple[str, str]]:
        """(key, text) of its description, and its summary unless that is its title."""
        annotations = self.alert.annotations
        return [
            (key, text)
            for key in ("summary", "description")
            if (text := annotations.get(key, "").strip()) and text != self.alert.title
        ]


LINK_ORDER = ("runbook_url", "dashboardURL", "panelURL", "generatorURL", "silenceURL")
"""Annotation links in the order a responder wants them; other URL-valued keys follow."""


def web_links(links: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(text, URL) of PagerDuty-style ``links`` (``{"href", "text"}``) that are http(s)."""
    return [
        (str(link.get("text") or href), href)
        for link in links
        if isinstance(href := link.get("href"), str) and is_web_url(href)
    ]


def is_web_url(value: str) -> bool:
    """An absolute http(s) URL: the only kind the console turns into a link (never
    ``javascript:`` or ``data:``, which would run in the console's origin)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


@dataclass
class AlertCounts:
    firing: int = 0
    acknowledged: int = 0
    resolved: int = 0

    @property
    def total(self) -> int:
        return self.firing + self.acknowledged + self.resolved


def integration_names(session: Session) -> list[str]:
    """Every integration that alerts can come from, by name: the built-in ones too, even
    before their first signal, as the lists' filters take them."""
    names = set(session.scalars(select(Integration.name))) | BUILTIN_INTEGRATIONS
    return sorted(names)


def active_silences(session: Session, now: datetime | None = None) -> list[Silence]:
    at = now or clock.now()
    return list(
        session.scalars(
            select(Silence)
            .where(Silence.expired_at.is_(None))
            .where(Silence.starts_at <= at)
            .where(Silence.ends_at > at)
            .order_by(Silence.id)
        )
    )


def services_in_maintenance(session: Session, now: datetime | None = None) -> set[str]:
    at = now or clock.now()
    return set(
        session.scalars(
            select(MaintenanceWindow.service_name)
            .where(MaintenanceWindow.starts_at <= at)
            .where(MaintenanceWindow.ends_at > at)
        )
    )


def alert_rows(
    session: Session,
    *,
    status: AlertStatus | None = None,
    integration: str | None = None,
    group_key: str | None = None,
    incident: str | None = None,
    limit: int = 200,
) -> list[ListedAlert]:
    """Firing first, then acknowledged, then resolved; each by last seen, newest first."""
    query = select(Alert, Integration.name).join(
        Integration, Integration.id == Alert.integration_id
    )
    if integration:
        query = query.where(from_integration(session, Alert.integration_id, integration))
    if group_key is not None:
        query = query.where(Alert.group_key == group_key)
    sorted_statuses: frozenset[str] = frozenset()
    if incident:
        of_incident = in_incident(session, incident)
        query, sorted_statuses = query.where(of_incident.condition), of_incident.sorted_statuses
    listed: list[Any] = []
    for shown in [status.value] if status is not None else LISTED_STATUSES:
        left = limit - len(listed)
        listed += newest_alerts(session, query, shown, left, sort=shown in sorted_statuses)
        if len(listed) >= limit:
            break
    silences = [(s.id, compile_matchers(s.matchers)) for s in active_silences(session)]
    maintenance = services_in_maintenance(session)
    rows = []
    for alert, name in listed:
        if alert.status == AlertStatus.resolved.value:  # silences and windows mute firing ones
            rows.append(ListedAlert(alert=alert_read(alert, name)))
            continue
        labels = alert.labels or {}
        rows.append(
            ListedAlert(
                alert=alert_read(alert, name),
                silenced_by=[
                    number for number, matchers in silences if silence_holds(matchers, labels)
                ],
                in_maintenance=alert.service_name in maintenance,
            )
        )
    return rows


def alert_counts(
    session: Session,
    *,
    integration: str | None = None,
    group_key: str | None = None,
    incident: str | None = None,
) -> AlertCounts:
    """How many alerts of each status the list (as filtered, but for its status) holds."""
    query = select(Alert.status, func.count()).group_by(Alert.status)
    if integration:
        query = query.where(from_integration(session, Alert.integration_id, integration))
    if group_key is not None:
        query = query.where(Alert.group_key == group_key)
    if incident:
        query = query.where(in_incident(session, incident).condition)
    counts = AlertCounts()
    for status, number in session.execute(query):
        if status in ("firing", "acknowledged", "resolved"):
            setattr(counts, status, int(number))
    return counts


# -- silences and dead letters ------------------------------------------------------------------
def silence_state(silence: Silence, now: datetime | None = None) -> SilenceState:
    """active, pending (starts later), expired (ended early by someone) or ended."""
    at = now or clock.now()
    return SilenceState.at(at, silence.starts_at, silence.ends_at, silence.expired_at)


@dataclass
class DeadLetter:
    """A refused intake request as the console shows it: why, and the start of its body."""

    id: int
    integration: str | None
    received_at: datetime
    reason: str
    size_bytes: int
    """As received."""
    kept_bytes: int
    """What was kept of it (the first 64 KiB at most; a hidden routing key makes it less)."""
    cut: bool
    """Whether what was kept is only the start of what came."""
    preview: str
    truncated: bool
    """Whether ``preview`` is only the start of what was received."""


def dead_letters(session: Session, limit: int = 100) -> list[DeadLetter]:
    letters = []
    for row, name in list_rejected(session, limit):
        text = row.body.decode("utf-8", errors="replace")
        cut = kept_only_its_start(row)
        letters.append(
            DeadLetter(
                id=row.id,
                integration=name,
                received_at=row.received_at,
                reason=row.reason,
                size_bytes=row.received_bytes,
                kept_bytes=len(row.body),
                cut=cut,
                preview=text[:PREVIEW_CHARS],
                truncated=len(text) > PREVIEW_CHARS or cut,
            )
        )
    return letters
