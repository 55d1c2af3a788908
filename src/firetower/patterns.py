"""Regular expressions that users write, matched in linear time.

Silence, routing and inhibition matchers and probe body conditions come from responders.
Python's ``re`` backtracks: ``(a+)+b`` against a long label value runs for longer than the
universe, and one such silence would stall intake for every alert. RE2 matches in time linear
in the text and refuses what would need backtracking (backreferences, lookaround), and its
syntax is the one Alertmanager's Go regexps use, so matchers copied from there mean the same.
"""

from __future__ import annotations

import functools

import re2
import structlog

log = structlog.get_logger(__name__)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print each refused pattern to stderr


_LOOKAROUND = (
    "invalid perl operator: (?=",
    "invalid perl operator: (?!",
    "invalid perl operator: (?<",
)


def _hint(reason: str) -> str:
    """Plain words after RE2's own, for what users of backtracking engines most often write."""
    if reason.startswith(_LOOKAROUND):
        return " (RE2 has no lookahead or lookbehind)"
    if reason.startswith("invalid escape sequence: \\") and reason[-1:].isdigit():
        return " (RE2 has no backreferences)"
    return ""


class Pattern:
    """A compiled pattern; texts are matched as UTF-8, as RE2 reads them."""

    __slots__ = ("_compiled",)

    def __init__(self, text: str) -> None:
        try:
            self._compiled = re2.compile(text.encode("utf-8"), _OPTIONS)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", errors="replace")
            reason = str(reason)
            raise ValueError(
                f"not a valid regular expression (RE2 syntax): {reason}{_hint(reason)}"
            ) from None

    def matches_whole(self, value: str) -> bool:
        """The pattern matches all of ``value`` (a matcher's ``=~ "api"`` is ``^(?:api)$``)."""
        if len(value) > _REMEMBERED_VALUE_CHARS:
            return self._fullmatch(value)
        return _remembered_fullmatch(self, value)

    def _fullmatch(self, value: str) -> bool:
        return self._compiled.fullmatch(value.encode("utf-8")) is not None

    def found_in(self, data: bytes) -> bool:
        """The pattern matches somewhere in ``data``."""
        return self._compiled.search(data) is not None


_REMEMBERED_VALUE_CHARS = 200
"""Answers for label values up to this long are remembered: a storm repeats a few values
(``job``, ``severity``, ``service``) many times, and a remembered answer costs a tenth of a
match through RE2's Python binding. At most 16,384 answers: a few MiB."""


@functools.lru_cache(maxsize=16_384)
def _remembered_fullmatch(pattern: Pattern, value: str) -> bool:
    return pattern._fullmatch(value)


def check_pattern(text: str) -> str:
    """``text`` if it compiles; otherwise ValueError naming what RE2 refused."""
    Pattern(text)
    return text


@functools.lru_cache(maxsize=4096)
def stored_pattern(text: str) -> Pattern | None:
    """A stored pattern, compiled once per process; None when it does not compile (it was
    stored before patterns were RE2). Such a matcher never holds, so the silence, rule or
    inhibition it belongs to lets alerts through rather than hiding them."""
    try:
        return Pattern(text)
    except ValueError as exc:
        log.warning("stored pattern ignored", pattern=text[:200], reason=str(exc))
        return None
