"""The burn-rate math (pure functions): examples from the SRE workbook, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from firetower.monitors.burn import (
    LEVEL_RANK,
    RULES,
    WINDOWS_SECONDS,
    Counts,
    Level,
    budget_remaining,
    burn_rate,
    decide,
    error_budget,
)

objectives = st.sampled_from([90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99])
totals = st.integers(min_value=0, max_value=10**9)


@st.composite
def window_counts(draw: st.DrawFn) -> dict[str, Counts]:
    counts = {}
    for window in WINDOWS_SECONDS:
        total = draw(totals)
        bad = draw(st.integers(min_value=0, max_value=total))
        counts[window] = Counts(bad, total)
    return counts


def uniform(error_ratio: float, total: float = 10_000) -> dict[str, Counts]:
    """Every window burning at the same error ratio."""
    return {w: Counts(error_ratio * total, total) for w in WINDOWS_SECONDS}


# -- examples ----------------------------------------------------------------------------------
def test_the_budget_of_three_nines_is_one_in_a_thousand() -> None:
    assert error_budget(99.9) == pytest.approx(0.001)
    assert burn_rate(Counts(1, 1000), 99.9) == pytest.approx(1.0)
    assert burn_rate(Counts(0, 0), 99.9) is None
    assert budget_remaining(Counts(5, 10_000), 99.9) == pytest.approx(0.5)
    assert budget_remaining(Counts(20, 10_000), 99.9) == pytest.approx(-1.0)  # overspent


@pytest.mark.parametrize(
    ("error_ratio", "expected"),
    [
        (0.0, Level.ok),
        (0.0009, Level.ok),  # 0.9x: within budget
        (0.0011, Level.ticket),  # 1.1x everywhere: the 3d/6h rule
        (0.0031, Level.ticket),  # 3.1x: 1d/2h
        (0.0061, Level.page),  # 6.1x: 6h/30m
        (0.0145, Level.page),  # 14.5x: 1h/5m
    ],
)
def test_the_workbook_thresholds(error_ratio: float, expected: Level) -> None:
    assert decide(uniform(error_ratio), 99.9).level == expected


def test_a_page_needs_the_short_window_to_burn_too() -> None:
    counts = uniform(0.02)  # 20x everywhere ...
    counts["5m"] = Counts(0, 1000)  # ... but the last five minutes are clean
    counts["30m"] = Counts(0, 1000)
    decision = decide(counts, 99.9)
    assert decision.level == Level.ticket  # the slower rules still see it
    assert all(rule.level == Level.ticket for rule in decision.fired)


def test_the_minimum_traffic_guard_holds_back_a_small_sample() -> None:
    counts = {w: Counts(3, 5) for w in WINDOWS_SECONDS}  # 60 % errors, but five requests
    guarded = decide(counts, 99.9, min_events=100)
    assert guarded.level == Level.ok
    assert {r.level for r in guarded.guarded} == {Level.page, Level.ticket}
    assert decide(counts, 99.9, min_events=5).level == Level.page


@pytest.mark.parametrize("objective", [90.0, 99.9, 99.95, 99.25])
@pytest.mark.parametrize("total", [10**5, 10**6])
def test_a_budget_spent_exactly_is_spent_not_overspent(objective: float, total: int) -> None:
    """Exactly at a threshold no rule fires ("above"), whatever the objective. In floating
    point 1,000 bad of 1,000,000 at 99.9 % burned at 1.0000000000001x: a ticket for a budget
    spent exactly, shown as -0.00 % left, where the same share at 99.99 % burned at 0.999x."""
    budget_events = round((100 - objective) * total) // 100
    exactly = Counts(budget_events, total)
    assert burn_rate(exactly, objective) == 1.0
    assert budget_remaining(exactly, objective) == 0.0
    assert math.copysign(1, budget_remaining(exactly, objective) or 0.0) == 1  # not -0.0
    assert decide(dict.fromkeys(WINDOWS_SECONDS, exactly), objective).level == Level.ok
    # Exactly 6x everywhere fires the 3x and 1x tickets, not the 6x page.
    six = Counts(6 * budget_events, total)
    if six.bad <= total:
        decision = decide(dict.fromkeys(WINDOWS_SECONDS, six), objective)
        assert decision.level == Level.ticket, decision.fired


# -- properties --------------------------------------------------------------------------------
@given(window_counts(), objectives)
def test_a_decision_is_explained_by_the_rules_it_fired(
    counts: dict[str, Counts], objective: float
) -> None:
    decision = decide(counts, objective)
    for rule in decision.fired:
        long_rate = decision.burn_rates[rule.long_window]
        short_rate = decision.burn_rates[rule.short_window]
        assert long_rate is not None and long_rate > rule.burn_rate
        assert short_rate is not None and short_rate > rule.burn_rate
    expected = max((r.level for r in decision.fired), key=LEVEL_RANK.__getitem__, default=Level.ok)
    assert decision.level == expected
    unfired = [r for r in RULES if r not in decision.fired]
    for rule in unfired:
        rates = (decision.burn_rates[rule.long_window], decision.burn_rates[rule.short_window])
        assert None in rates or min(r for r in rates if r is not None) <= rule.burn_rate


@given(window_counts(), objectives)
def test_no_bad_events_never_alert(counts: dict[str, Counts], objective: float) -> None:
    clean = {w: Counts(0, c.total) for w, c in counts.items()}
    assert decide(clean, objective).level == Level.ok


@given(window_counts(), objectives, st.integers(min_value=0, max_value=10**9))
def test_the_guard_never_raises_the_level(
    counts: dict[str, Counts], objective: float, min_events: int
) -> None:
    guarded = decide(counts, objective, min_events=min_events)
    free = decide(counts, objective)
    assert LEVEL_RANK[guarded.level] <= LEVEL_RANK[free.level]
    for rule in guarded.fired:
        assert counts[rule.long_window].total >= min_events
    for rule in guarded.guarded:
        assert counts[rule.long_window].total < min_events
    assert set(guarded.fired) | set(guarded.guarded) == set(free.fired)


@given(
    window_counts(),
    objectives,
    st.sampled_from(list(WINDOWS_SECONDS)),
    st.integers(min_value=1, max_value=10**6),
)
def test_more_bad_events_never_lower_the_level(
    counts: dict[str, Counts], objective: float, window: str, extra: int
) -> None:
    """Turning good events bad (same traffic) can only make things louder."""
    before = decide(counts, objective, min_events=10)
    worse = dict(counts)
    current = counts[window]
    worse[window] = Counts(min(current.bad + extra, current.total), current.total)
    after = decide(worse, objective, min_events=10)
    assert LEVEL_RANK[after.level] >= LEVEL_RANK[before.level]


@given(window_counts(), objectives, st.integers(min_value=2, max_value=1000))
def test_the_level_depends_on_ratios_once_traffic_is_enough(
    counts: dict[str, Counts], objective: float, factor: int
) -> None:
    scaled = {w: Counts(c.bad * factor, c.total * factor) for w, c in counts.items()}
    assert decide(scaled, objective).level == decide(counts, objective).level


@given(
    st.integers(min_value=1, max_value=10**9),
    st.floats(min_value=0, max_value=1, allow_nan=False),
    objectives,
)
def test_budget_and_burn_rate_agree(total: int, ratio: float, objective: float) -> None:
    bad = ratio * total
    rate = burn_rate(Counts(bad, total), objective)
    remaining = budget_remaining(Counts(bad, total), objective)
    assert rate is not None and remaining is not None
    assert rate >= 0
    assert math.isclose(remaining, 1 - rate, rel_tol=1e-9, abs_tol=1e-9)


@given(st.floats(min_value=-1e6, max_value=-1e-9), st.floats(min_value=0, max_value=1e6))
def test_negative_counts_are_refused(negative: float, other: float) -> None:
    assume(negative < 0)
    with pytest.raises(ValueError, match="negative"):
        Counts(negative, other)
    with pytest.raises(ValueError, match="negative"):
        Counts(other, negative)
