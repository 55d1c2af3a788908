"""Error budgets and multi-window, multi-burn-rate alerting, as pure functions.

The rules are the Google SRE workbook's (chapter "Alerting on SLOs"): an alert level fires
when the burn rate exceeds its threshold over a long window AND over a short one (the short
window makes the alert stop soon after the burn does). A long window with fewer than
``min_events`` events never fires (the minimum-traffic guard): three failures out of five
requests is not an outage worth a page.

A burn rate is how fast the budget goes: 1 spends exactly the budget over the SLO window,
14.4 spends 2 % of a 30-day budget in one hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction


class Level(StrEnum):
    """An SLO's alert level, from quiet to loud."""

    ok = "ok"
    ticket = "ticket"
    page = "page"


LEVEL_RANK = {Level.ok: 0, Level.ticket: 1, Level.page: 2}

WINDOWS_SECONDS: dict[str, int] = {
    "5m": 5 * 60,
    "30m": 30 * 60,
    "1h": 3600,
    "2h": 2 * 3600,
    "6h": 6 * 3600,
    "1d": 86400,
    "3d": 3 * 86400,
}
"""Every window the rules look at, by the label Prometheus would use for it."""


@dataclass(frozen=True)
class Rule:
    level: Level
    burn_rate: float
    long_window: str
    short_window: str

    @property
    def name(self) -> str:
        windows = f"{self.long_window} and {self.short_window}"
        return f"{self.level.value}: >{self.burn_rate:g}x over {windows}"


RULES: tuple[Rule, ...] = (
    Rule(Level.page, 14.4, "1h", "5m"),
    Rule(Level.page, 6.0, "6h", "30m"),
    Rule(Level.ticket, 3.0, "1d", "2h"),
    Rule(Level.ticket, 1.0, "3d", "6h"),
)


@dataclass(frozen=True)
class Counts:
    """Events seen in one window: ``bad`` of ``total`` failed the SLI."""

    bad: float
    total: float

    def __post_init__(self) -> None:
        if self.bad < 0 or self.total < 0:
            raise ValueError("event counts cannot be negative")


def _exact_budget(objective_percent: float) -> Fraction:
    """The error budget as written (99.9 → exactly 1/1000), not as floats round it: in
    floating point 1 - 0.999 is a hair over 0.001 and 1 - 0.9 a hair under 0.1, so a budget
    spent exactly came out a little over- or underspent, and a burn exactly at a threshold
    fired or not depending on the objective."""
    if not 0 < objective_percent < 100:
        raise ValueError("an objective is a percentage strictly between 0 and 100")
    return 1 - Fraction(repr(float(objective_percent))) / 100


def error_budget(objective_percent: float) -> float:
    """The fraction of events allowed to fail: 99.9 % → 0.001."""
    return float(_exact_budget(objective_percent))


def _exact_ratio(counts: Counts) -> Fraction | None:
    if counts.total <= 0:
        return None
    return min(Fraction(counts.bad) / Fraction(counts.total), Fraction(1))


def error_ratio(counts: Counts) -> float | None:
    """The failed fraction, None without events; more bad than total counts as all bad."""
    ratio = _exact_ratio(counts)
    return None if ratio is None else float(ratio)


def _exact_burn(counts: Counts, objective_percent: float) -> Fraction | None:
    ratio = _exact_ratio(counts)
    return None if ratio is None else ratio / _exact_budget(objective_percent)


def burn_rate(counts: Counts, objective_percent: float) -> float | None:
    """How many times faster than sustainable the budget burns; None without events."""
    rate = _exact_burn(counts, objective_percent)
    return None if rate is None else float(rate)


def budget_remaining(counts: Counts, objective_percent: float) -> float | None:
    """The fraction of the window's budget left (1 untouched, 0 spent, below 0 overspent)."""
    rate = _exact_burn(counts, objective_percent)
    return None if rate is None else float(1 - rate)


@dataclass(frozen=True)
class Decision:
    level: Level
    fired: tuple[Rule, ...]
    """The rules whose long and short windows both burn past their threshold."""
    guarded: tuple[Rule, ...]
    """Rules that would have fired but whose long window had too few events."""
    burn_rates: dict[str, float | None]


def decide(
    counts: Mapping[str, Counts], objective_percent: float, *, min_events: float = 0
) -> Decision:
    """The alert level for the counts of every window in ``WINDOWS_SECONDS``.

    A window missing from ``counts`` has no events. A rule fires when both of its windows
    burn strictly faster than its threshold and its long window saw at least ``min_events``.
    """
    exact = {
        window: _exact_burn(counts.get(window, Counts(0, 0)), objective_percent)
        for window in WINDOWS_SECONDS
    }
    fired: list[Rule] = []
    guarded: list[Rule] = []
    for rule in RULES:
        long_rate, short_rate = exact[rule.long_window], exact[rule.short_window]
        if long_rate is None or short_rate is None:
            continue
        threshold = Fraction(repr(rule.burn_rate))  # 14.4 as written, as the rates are exact
        if long_rate > threshold and short_rate > threshold:
            if counts[rule.long_window].total < min_events:
                guarded.append(rule)
            else:
                fired.append(rule)
    level = max((r.level for r in fired), key=LEVEL_RANK.__getitem__, default=Level.ok)
    rates = {w: None if rate is None else float(rate) for w, rate in exact.items()}
    return Decision(level, tuple(fired), tuple(guarded), rates)
