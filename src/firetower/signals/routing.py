"""Routing and inhibition rules as intake applies them: loaded and compiled once per request.

``Routing.decide`` walks the ordered routing rules for one alert and returns a ``Decision``
(pure: the test endpoint uses it too). ``Routing.inhibitor`` finds a firing source alert that
inhibits a target; the sources of one (rule, ``equal`` values) pair are read once per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from firetower.incidents.lifecycle import Severity
from firetower.patterns import Pattern, stored_pattern
from firetower.signals.intake_rows import AlertRow
from firetower.signals.models import Alert, InhibitRule, Integration, RoutingRule
from firetower.signals.schemas import INTEGRATION_LABEL, MatchOp, OnClear, RoutingAction


def label_value(labels: dict[str, Any], integration: str, name: str) -> str:
    """A label's value as matchers read it: missing is "", ``@integration`` the sender."""
    if name == INTEGRATION_LABEL:
        return integration
    raw = labels.get(name)
    return "" if raw is None else str(raw)


@dataclass(frozen=True)
class CompiledMatcher:
    label: str
    op: str
    value: str
    regex: bool
    pattern: Pattern | None

    @classmethod
    def of(cls, matcher: dict[str, str]) -> CompiledMatcher:
        op = matcher["op"]
        regex = op in (MatchOp.regex, MatchOp.not_regex)
        pattern = stored_pattern(matcher["value"]) if regex else None
        return cls(matcher["label"], op, matcher["value"], regex, pattern)

    def holds(self, labels: dict[str, Any], integration: str) -> bool:
        value = label_value(labels, integration, self.label)
        if not self.regex:
            return (value == self.value) == (self.op == MatchOp.equal)
        if self.pattern is None:  # stored before patterns were RE2: see stored_pattern
            return False
        return self.pattern.matches_whole(value) == (self.op == MatchOp.regex)


Matchers = tuple[CompiledMatcher, ...]


def compile_matchers(matchers: Sequence[dict[str, str]]) -> Matchers:
    return tuple(CompiledMatcher.of(m) for m in matchers)


def all_hold(matchers: Matchers, labels: dict[str, Any], integration: str) -> bool:
    return all(m.holds(labels, integration) for m in matchers)


def silence_holds(matchers: Matchers, labels: dict[str, Any]) -> bool:
    """A silence's matchers all hold. A silence compares the alert's own labels only, so
    ``@integration`` (refused in silences) reads as a missing label would: ``""``."""
    return all_hold(matchers, labels, "")


@dataclass(frozen=True)
class Rule:
    """A routing rule, compiled."""

    name: str
    matchers: Matchers
    service: str | None
    severity: Severity | None
    severity_label: str | None
    severity_values: dict[str, Severity]
    action: RoutingAction
    on_clear: OnClear
    continue_: bool

    @classmethod
    def of(cls, row: RoutingRule) -> Rule:
        mapping = row.severity_map or {}
        return cls(
            name=row.name,
            matchers=compile_matchers(row.matchers or []),
            service=row.service_name,
            severity=Severity(row.severity) if row.severity else None,
            severity_label=mapping.get("label"),
            severity_values={k: Severity(v) for k, v in (mapping.get("values") or {}).items()},
            action=RoutingAction(row.action),
            on_clear=OnClear(row.on_clear),
            continue_=row.continue_matching,
        )

    def severity_for(self, labels: dict[str, Any], integration: str) -> Severity | None:
        """The severity it sets for these labels, or None (it sets none for them)."""
        if self.severity_label is not None:
            found = self.severity_values.get(label_value(labels, integration, self.severity_label))
            if found is not None:
                return found
        return self.severity


@dataclass(frozen=True)
class Decision:
    """What routing does with one firing alert."""

    matched: tuple[str, ...]
    decided_by: str | None
    action: RoutingAction
    notify: tuple[str, ...]
    service: str | None
    severity: Severity
    on_clear: OnClear

    @property
    def joins(self) -> bool:
        """It opens or attaches: the alert joins an incident."""
        return self.action in JOINING


JOINING = frozenset({RoutingAction.open, RoutingAction.attach})


@lru_cache(maxsize=4096)
def _unmatched(service: str | None, severity: Severity) -> Decision:
    """No rule matched: open on the alert's own service (one shared value per pair)."""
    return Decision((), None, RoutingAction.open, (), service, severity, OnClear.note)


def decide(
    rules: Sequence[Rule],
    labels: dict[str, Any],
    integration: str,
    service: str | None,
    severity: Severity,
) -> Decision:
    """Walk the rules in order; stop after the first matching rule without ``continue``.

    The first matching open, attach or drop rule decides the incident (a drop also mutes the
    notify rules); every matching notify rule notifies. Service and severity come from the
    first matching rule that sets them, else the alert's own. No match: open on its service.
    """
    matched: list[Rule] = []
    decider: Rule | None = None
    notify: list[str] = []
    routed_service: str | None = None
    routed_severity: Severity | None = None
    for rule in rules:
        if not all_hold(rule.matchers, labels, integration):
            continue
        matched.append(rule)
        routed_service = routed_service or rule.service
        routed_severity = routed_severity or rule.severity_for(labels, integration)
        if rule.action == RoutingAction.notify:
            notify.append(rule.name)
        elif decider is None:
            decider = rule
        if not rule.continue_:
            break
    if not matched:
        return _unmatched(service, severity)
    if decider is None:  # only notify rules matched: notify, no incident
        decider = matched[-1]
    if decider.action == RoutingAction.drop:
        notify = []
    return Decision(
        matched=tuple(r.name for r in matched),
        decided_by=decider.name,
        action=decider.action,
        notify=tuple(notify),
        service=routed_service or service,
        severity=routed_severity or severity,
        on_clear=decider.on_clear
        if decider.action in (RoutingAction.open, RoutingAction.attach)
        else OnClear.note,
    )


@dataclass(frozen=True)
class Inhibit:
    """An inhibition rule, compiled."""

    name: str
    source: Matchers
    target: Matchers
    equal: tuple[str, ...]

    @classmethod
    def of(cls, row: InhibitRule) -> Inhibit:
        return cls(
            row.name,
            compile_matchers(row.source_matchers or []),
            compile_matchers(row.target_matchers or []),
            tuple(row.equal or []),
        )


@dataclass(frozen=True)
class Source:
    id: int
    labels: dict[str, Any]
    integration: str


@dataclass
class Routing:
    """The routing and inhibition rules, read once per transaction."""

    rules: list[Rule]
    inhibits: list[Inhibit]

    @classmethod
    def load(cls, session: Session) -> Routing:
        rules = session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id))
        inhibits = session.scalars(select(InhibitRule).order_by(InhibitRule.name))
        return cls([Rule.of(r) for r in rules], [Inhibit.of(r) for r in inhibits])

    def decide(
        self, labels: dict[str, Any], integration: str, service: str | None, severity: Severity
    ) -> Decision:
        return decide(self.rules, labels, integration, service, severity)

    def still_mutes(
        self,
        rule_name: str | None,
        target: dict[str, Any],
        target_integration: str,
        source: dict[str, Any],
        source_integration: str,
    ) -> bool:
        """Whether the rule of this name, as it is now, lets this source mute this target
        (``inhibitor``'s conditions on one pair); False when no rule has that name."""
        rule = next((r for r in self.inhibits if r.name == rule_name), None)
        if rule is None:
            return False
        if not all_hold(rule.target, target, target_integration):
            return False
        if not all_hold(rule.source, source, source_integration):
            return False
        if all_hold(rule.source, target, target_integration) and all_hold(
            rule.target, source, source_integration
        ):
            return False  # both match both sides: no inhibition
        return all(
            label_value(target, target_integration, k) == label_value(source, source_integration, k)
            for k in rule.equal
        )

    def inhibitor(
        self,
        session: Session,
        alert: AlertRow,
        integration: str,
        found: dict[Any, list[Source]],
    ) -> tuple[int, str] | None:
        """(source alert id, rule name) of a firing alert inhibiting this one, or None.

        Alertmanager's rules: every target matcher holds on the alert, every source matcher
        on a source that is not resolved, and each ``equal`` label has the same value on both
        (a missing label is ""). An alert never inhibits itself, and an alert matching both
        sides of a rule is not inhibited by a source that also matches both sides. ``found``
        keeps the sources one request looked up (its batch is written before it settles).
        """
        labels = alert.labels
        for rule in self.inhibits:
            if not all_hold(rule.target, labels, integration):
                continue
            both = all_hold(rule.source, labels, integration)
            values = tuple(label_value(labels, integration, k) for k in rule.equal)
            key = (rule.name, values)
            if key not in found:
                found[key] = _sources(session, rule, values)
            for source in found[key]:
                if source.id == alert.id:
                    continue
                if both and all_hold(rule.target, source.labels, source.integration):
                    continue
                return source.id, rule.name
        return None


def _sources(session: Session, rule: Inhibit, values: tuple[str, ...]) -> list[Source]:
    """The unresolved alerts the rule's source matchers hold on, with these equal values."""
    query = (
        select(Alert.id, Alert.labels, Integration.name)
        .join(Integration, Integration.id == Alert.integration_id)
        .where(Alert.status != "resolved")
        .order_by(Alert.id)
    )
    for name, value in zip(rule.equal, values, strict=True):
        query = query.where(func.coalesce(Alert.labels[name].as_string(), "") == value)
    return [
        Source(alert_id, labels or {}, integration)
        for alert_id, labels, integration in session.execute(query)
        if all_hold(rule.source, labels or {}, integration)
    ]
