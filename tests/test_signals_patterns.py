"""Users' regular expressions are RE2: linear in the text, so no pattern can stall intake."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from firetower.auth.schemas import Role
from firetower.patterns import stored_pattern
from firetower.runtime import Runtime
from firetower.signals.models import InhibitRule, RoutingRule, Silence
from firetower.signals.queries import parse_matcher
from firetower.signals.routing import compile_matchers, silence_holds
from tests.factories import ApiUser, Factory, row_counts
from tests.probe_servers import _Server, http_target
from tests.signals_support import (
    alert_by_fingerprint,
    firing_alert,
    incident_count,
    matcher,
    send_batch,
)

CATASTROPHIC = "(a+)+b"
"""Python's ``re`` tries every way to split the a's before it gives up: 2^n steps."""
LONG_AS = "a" * 3000


@contextmanager
def fails_instead_of_hanging(seconds: int = 60) -> Iterator[None]:
    """Should matching ever backtrack again, fail here rather than stall the suite. Not a
    measure of speed: RE2 answers these in microseconds, ``re`` in longer than a lifetime."""

    def stop(*_: Any) -> None:
        raise AssertionError(f"still matching after {seconds} s: the engine backtracks")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _key(admin: ApiUser) -> str:
    body = {"name": "prom", "kind": "alertmanager", "service_name": "checkout"}
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def test_a_backtracking_pattern_matches_in_linear_time_everywhere() -> None:
    silence = compile_matchers([matcher("job", "=~", CATASTROPHIC)])
    negated = compile_matchers([matcher("job", "!~", CATASTROPHIC)])
    (rule,) = compile_matchers([matcher("job", "=~", CATASTROPHIC)])
    with fails_instead_of_hanging():
        assert not silence_holds(silence, {"job": LONG_AS})
        assert silence_holds(negated, {"job": LONG_AS})
        assert silence_holds(silence, {"job": LONG_AS + "b"})
        assert not rule.holds({"job": LONG_AS}, "prom")
        assert rule.holds({"job": LONG_AS + "b"}, "prom")


def test_a_storm_of_long_labels_under_a_backtracking_silence_is_taken_in(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _key(admin)
    silence = {
        "matchers": [matcher("job", "=~", CATASTROPHIC)],
        "ends_at": "2099-01-01T00:00:00Z",
        "comment": "a responder's pattern",
    }
    assert factory.user(Role.responder).post("/api/v1/silences", json=silence).status_code == 201
    with fails_instead_of_hanging():
        send_batch(
            factory, key, firing_alert("long", job=LONG_AS), firing_alert("muted", job="aab")
        )
    assert not alert_by_fingerprint(runtime, "long").silenced
    assert alert_by_fingerprint(runtime, "muted").silenced
    assert incident_count(runtime) == 1


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid escape sequence"),  # a backreference
        ("x(?=y)", "invalid perl operator"),  # lookahead
        ("(?<!x)y", "invalid perl operator"),  # lookbehind
        ("a{2000}", "invalid repetition size"),
    ],
)
@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (
            "/api/v1/silences",
            {"matchers": [matcher("job", "=~", "{p}")], "ends_at": "2099-01-01T00:00:00Z"},
            "matchers.0.value",
        ),
        (
            "/api/v1/routing-rules",
            {"name": "r", "matchers": [matcher("job", "!~", "{p}")], "action": "drop"},
            "matchers.0.value",
        ),
        (
            "/api/v1/inhibit-rules",
            {
                "name": "i",
                "source_matchers": [matcher("alertname", "=", "NodeDown")],
                "target_matchers": [matcher("job", "=~", "{p}")],
                "equal": ["cluster"],
            },
            "target_matchers.0.value",
        ),
        (
            "/api/v1/probes",
            {
                "name": "p",
                "kind": "http",
                "http": {"url": "http://x/", "conditions": [{"type": "regex", "pattern": "{p}"}]},
            },
            "http.conditions.0.regex.pattern",
        ),
    ],
)
def test_a_pattern_re2_refuses_is_refused_by_name_and_writes_nothing(
    factory: Factory,
    runtime: Runtime,
    url: str,
    body: dict[str, Any],
    field: str,
    pattern: str,
    reason: str,
) -> None:
    admin = factory.user(Role.admin)
    before = row_counts(runtime)

    def filled(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: filled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [filled(v) for v in value]
        return pattern if value == "{p}" else value

    answer = admin.post(url, json=filled(body))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == field, problem
    assert "not a valid regular expression (RE2 syntax)" in problem["detail"], problem
    assert reason in problem["detail"], problem
    assert row_counts(runtime) == before


def test_the_cli_and_console_matcher_text_is_checked_as_re2() -> None:
    with pytest.raises(Exception, match="RE2 syntax"):
        parse_matcher(r"job=~(a)\1")
    assert parse_matcher(r"job=~api-\d+").value == r"api-\d+"


def test_a_stored_pattern_re2_cannot_read_lets_alerts_through(
    factory: Factory, runtime: Runtime
) -> None:
    """A silence, rule or inhibition stored while patterns were Python's ``re`` may use
    lookaround. It never holds: the alert pages rather than being hidden, and intake goes on."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    factory.service("payments")
    key = _key(admin)
    made = matcher("job", "=~", "api-.*")
    silence = {"matchers": [made], "ends_at": "2099-01-01T00:00:00Z"}
    assert factory.user(Role.responder).post("/api/v1/silences", json=silence).status_code == 201
    rule = {"name": "old", "matchers": [made], "service": "payments"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    inhibit = {
        "name": "old",
        "source_matchers": [matcher("alertname", "=", "HighErrorRate")],
        "target_matchers": [made],
        "equal": [],
    }
    assert admin.post("/api/v1/inhibit-rules", json=inhibit).status_code == 201
    lookahead = [matcher("job", "=~", "api(?=-)")]
    stored_pattern.cache_clear()  # it warns once per process, and this run may be the second
    with runtime.transaction() as session:  # as an older firetower stored them
        session.execute(update(Silence).values(matchers=lookahead))
        session.execute(update(RoutingRule).values(matchers=lookahead))
        session.execute(update(InhibitRule).values(target_matchers=lookahead))
    with structlog.testing.capture_logs() as logs:
        send_batch(factory, key, firing_alert("old", job="api-1"))
    alert = alert_by_fingerprint(runtime, "old")
    assert not alert.silenced and not alert.inhibited and alert.incident_id is not None
    routed = admin.post("/api/v1/routing-rules/test", json={"labels": {"job": "api-1"}})
    assert routed.json()["matched"] == [], routed.text
    ignored = [e for e in logs if e["event"] == "stored pattern ignored"]
    assert ignored and ignored[0]["pattern"] == "api(?=-)", logs


@pytest.fixture(scope="module")
def web() -> Iterator[_Server]:
    with http_target() as server:
        yield server


def test_a_probe_body_condition_is_matched_in_linear_time(factory: Factory, web: _Server) -> None:
    admin = factory.user(Role.admin)
    settings = {
        "url": f"{web.url}/echo",
        "method": "POST",
        "body": LONG_AS,
        "conditions": [{"type": "regex", "pattern": CATASTROPHIC}],
    }
    body = {"name": "echo", "kind": "http", "http": settings, "timeout_seconds": 5}
    assert admin.post("/api/v1/probes", json=body).status_code == 201
    with fails_instead_of_hanging():
        result = admin.post("/api/v1/probes/echo/run").json()
    assert result["ok"] is False
    assert result["error"] == f"the body does not match /{CATASTROPHIC}/", result


def _patterns() -> st.SearchStrategy[str]:
    """Patterns in the syntax RE2 and Python's ``re`` share: what silences held before."""
    atoms = st.sampled_from(["a", "b", "-", "1", ".", r"\d", "[ab]", "[^a]", r"\w"])

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        repeats = st.sampled_from(["*", "+", "?", "{1,2}"])
        quantified = st.tuples(inner, repeats).map(lambda p: f"(?:{p[0]}){p[1]}")
        joined = st.lists(inner, min_size=2, max_size=3).map("".join)
        alternated = st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})")
        return quantified | joined | alternated

    return st.recursive(atoms, grow, max_leaves=6)


@given(pattern=_patterns(), value=st.text(alphabet="ab-1", max_size=6))
def test_patterns_in_the_shared_syntax_match_as_they_did_with_re(pattern: str, value: str) -> None:
    """Silences and rules written before RE2 mean what they meant (ASCII values: RE2's
    ``\\d`` and ``\\w`` are ASCII, ``re``'s Unicode)."""
    compiled = stored_pattern(pattern)
    assert compiled is not None, pattern
    assert compiled.matches_whole(value) is (re.fullmatch(pattern, value) is not None)


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("x(?=y)", "(RE2 has no lookahead or lookbehind)"),
        ("(?<!x)y", "(RE2 has no lookahead or lookbehind)"),
        (r"(a)(b)\2", "(RE2 has no backreferences)"),
    ],
)
def test_a_refusal_says_in_plain_words_what_re2_has_not(
    factory: Factory, pattern: str, hint: str
) -> None:
    silence = {"matchers": [matcher("job", "=~", pattern)], "ends_at": "2099-01-01T00:00:00Z"}
    answer = factory.user(Role.responder).post("/api/v1/silences", json=silence)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].endswith(hint), answer.json()
