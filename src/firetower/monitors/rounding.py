"""Achieved percentages rounded for showing, on the same side of their target as they are.

Rounded to the nearest, 99.8996 % against a 99.9 % target reads "99.900 %" beside "breached",
and 99.9995 % meeting a 99.9995 % target reads "99.999 %". A breach is rounded down and a
met target up whenever the nearest would cross the target, so what is shown never says
the opposite of ``breached``; otherwise the nearest is kept. Targets themselves are shown
as written (``percent_text``), whatever their number of digits.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal


def percent_text(value: float) -> str:
    """A percentage as it was written, every digit kept and no exponent: 99.99995 reads
    "99.99995", 100.0 "100", 0.00001 "0.00001". (``%g`` keeps six significant digits, and
    showed a 99.99995 % target as 100 %.)"""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent_shown(achieved: float, target: float, *, breached: bool, digits: int) -> float:
    """``achieved`` rounded to ``digits`` decimals: below ``target`` when ``breached``, at or
    above it when not. ``breached`` is the exact verdict (the counts against the target as
    written), which the float ``achieved`` may blur at its last digit, so it decides."""
    step = Decimal(1).scaleb(-digits)
    value, goal = Decimal(repr(float(achieved))), Decimal(repr(float(target)))
    shown = value.quantize(step, ROUND_HALF_EVEN)
    lowest_meeting = goal.quantize(step, ROUND_CEILING)  # the first shown value >= target
    if breached and shown >= goal:
        shown = min(value.quantize(step, ROUND_FLOOR), lowest_meeting - step)
    elif not breached and shown < goal:
        shown = max(value.quantize(step, ROUND_CEILING), lowest_meeting)
    return float(shown)
