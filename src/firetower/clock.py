"""The one source of "now": aware UTC datetimes, and a clock tests can move."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _now()


def ensure_utc(value: datetime, *, field: str = "datetime") -> datetime:
    """Refuse naive datetimes: a time without a zone is a bug waiting for a daylight change."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must carry a time zone (e.g. 2026-01-01T12:00:00Z)")
    return value.astimezone(UTC)


def in_utc(value: datetime) -> datetime:
    """``value`` as UTC; ValueError when UTC cannot hold it."""
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 once in UTC
        raise ValueError("must fall within the years 1 to 9999 once in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(in_utc)]
"""A time from outside, as UTC: with a zone, and one that UTC can hold (a time near year 1
or 9999 with an offset may not, and would fail when stored instead of when read)."""


class FrozenClock:
    """A clock for tests: ``with FrozenClock(t) as clock: clock.advance(seconds=5)``."""

    def __init__(self, start: datetime) -> None:
        self.current = ensure_utc(start)
        self._previous: Callable[[], datetime] | None = None

    def __enter__(self) -> FrozenClock:
        global _now
        self._previous = _now
        _now = lambda: self.current  # noqa: E731
        return self

    def __exit__(self, *exc: object) -> None:
        global _now
        assert self._previous is not None
        _now = self._previous

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current
