"""Prometheus-ratio SLIs against a real Prometheus serving backfilled request counters.

Seven hours of ``http_requests_total`` (10 requests/s): 5 % errors for the first five hours,
none after. Evaluated at the fifth hour the SLO pages; an hour later the short windows are
clean and it drops to a ticket (the page resolves). The data sit in last month, so the
evaluations run under a FrozenClock set there and query Prometheus at that time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.monitors import prometheus
from firetower.runtime import Runtime
from tests.factories import Factory
from tests.prometheus_support import (
    backfilled_prometheus,
    slow_prometheus,
    trickling_prometheus,
)
from tests.slo_support import evaluate_all, incidents, slo_alerts

STEP_SECONDS = 30
RATE_PER_SECOND = 10
ERROR_SHARE = 0.05
ERROR_QUERY = 'sum(rate(http_requests_total{code="500"}[{{window}}]))'
TOTAL_QUERY = "sum(rate(http_requests_total[{{window}}]))"


def _start() -> datetime:
    """The sixth of last month, midnight UTC: the whole series lies inside that month."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=6)


def _openmetrics(start: datetime) -> str:
    lines = ["# TYPE http_requests counter"]
    ok = errors = 0.0
    for step in range(0, 7 * 3600 // STEP_SECONDS + 1):
        at = start + timedelta(seconds=step * STEP_SECONDS)
        requests = RATE_PER_SECOND * STEP_SECONDS
        failing = requests * ERROR_SHARE if step * STEP_SECONDS <= 5 * 3600 else 0
        if step:
            errors += failing
            ok += requests - failing
        stamp = int(at.timestamp())
        lines.append(f'http_requests_total{{code="200"}} {ok:g} {stamp}')
        lines.append(f'http_requests_total{{code="500"}} {errors:g} {stamp}')
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory: Path = tmp_path_factory.mktemp("prometheus")
    with backfilled_prometheus(directory, _openmetrics(_start())) as url:
        yield url


def test_the_client_reads_instant_vectors_and_no_data(prometheus_url: str) -> None:
    at = _start() + timedelta(hours=4)
    total = prometheus.query(prometheus_url, prometheus.render(TOTAL_QUERY, "1h"), at=at)
    assert total == pytest.approx(RATE_PER_SECOND, rel=0.02)
    errors = prometheus.query(prometheus_url, prometheus.render(ERROR_QUERY, "1h"), at=at)
    assert errors == pytest.approx(RATE_PER_SECOND * ERROR_SHARE, rel=0.02)
    assert prometheus.query(prometheus_url, "sum(rate(nothing_total[5m]))", at=at) is None
    with pytest.raises(prometheus.PrometheusError, match="refused the query"):
        prometheus.query(prometheus_url, "sum(rate(", at=at)
    # A count cannot be infinite: the SLA report's exact comparison failed on one (a 500).
    infinite = prometheus.render(TOTAL_QUERY, "1h") + " / 0"
    with pytest.raises(prometheus.PrometheusError, match=r"gave \+Inf, not a count"):
        prometheus.query(prometheus_url, infinite, at=at)
    counts = prometheus.window_counts(
        prometheus_url, TOTAL_QUERY, {"1h": 3600}, error_query=ERROR_QUERY, at=at
    )
    bad, total_events = counts["1h"]
    assert total_events == pytest.approx(36_000, rel=0.02)
    assert bad / total_events == pytest.approx(ERROR_SHARE, rel=0.02)


def test_a_prometheus_slo_pages_and_cools_down_to_a_ticket(
    factory: Factory, runtime: Runtime, prometheus_url: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("api")
    sloth = """
version: "prometheus/v1"
service: "api"
labels:
  owner: "platform"
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Requests answered without a 5xx."
    sli:
      events:
        error_query: sum(rate(http_requests_total{code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: ApiHighErrorRate
      page_alert:
        labels:
          severity: critical
"""
    imported = responder.post(
        "/api/v1/slos/import", json={"content": sloth, "prometheus_url": prometheus_url}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == ["api-requests-availability"]

    start = _start()
    with FrozenClock(start + timedelta(hours=5)) as clock:
        evaluate_all(runtime)
        slo = responder.get("/api/v1/slos/api-requests-availability").json()
        assert slo["last_error"] is None
        assert slo["state"] == "page"
        assert slo["burn_rates"]["1h"] == pytest.approx(50, rel=0.05)
        assert slo["burn_rates"]["5m"] == pytest.approx(50, rel=0.1)
        [incident] = incidents(runtime)
        assert incident.source == "slo"
        assert slo_alerts(runtime, "api-requests-availability")["page"].status == "firing"

        clock.advance(hours=1)
        evaluate_all(runtime)
        slo = responder.get("/api/v1/slos/api-requests-availability").json()
        assert slo["state"] == "ticket"
        assert slo["burn_rates"]["5m"] == 0
        assert slo["burn_rates"]["30m"] == 0
        assert slo["burn_rates"]["2h"] == pytest.approx(25, rel=0.1)
        alerts = slo_alerts(runtime, "api-requests-availability")
        assert alerts["page"].status == "resolved"
        assert alerts["ticket"].status == "firing"

        # The month so far, measured by the same queries over the whole period.
        target = responder.put(
            "/api/v1/sla/targets",
            json={
                "service": "api",
                "kind": "uptime",
                "target_percent": 99.5,
                "slo": "api-requests-availability",
            },
        )
        assert target.status_code == 200, target.text
        report = responder.get("/api/v1/sla/report", params={"month": f"{start:%Y-%m}"}).json()
    [service] = report["services"]
    [line] = service["targets"]
    assert line["error"] is None
    assert line["achieved_percent"] == pytest.approx(100 - 5 * 5 / 6, abs=0.2)
    assert line["breached"] is True
    assert report["complete"] is False


def test_the_queries_of_one_slo_share_one_time_budget() -> None:
    """16 queries at 0.5 s each would take 8 s; with a 1.5 s budget the fetch stops at about
    1.5 s and says why, instead of giving each query its own 10 s."""
    windows = {"5m": 300, "30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600, "1d": 86400}
    with slow_prometheus(0.5) as (url, asked):
        started = time.perf_counter()
        with pytest.raises(prometheus.PrometheusError) as raised:
            prometheus.window_counts(
                url, TOTAL_QUERY, windows, error_query=ERROR_QUERY, budget_seconds=1.5
            )
        elapsed = time.perf_counter() - started
    assert elapsed < 4, elapsed
    assert len(asked) < 12
    assert str(raised.value).startswith(
        f"Prometheus at {url} took more than the 1.5s allowed for one SLO's queries ("
    ), str(raised.value)

    with slow_prometheus(0.05) as (url, asked):  # a quick Prometheus fits in the budget
        counts = prometheus.window_counts(
            url, TOTAL_QUERY, windows, error_query=ERROR_QUERY, budget_seconds=1.5
        )
    assert counts["1h"] == (3600, 3600)
    assert len(asked) == 12


def test_a_prometheus_that_trickles_its_answer_is_cut_off_at_the_budget() -> None:
    """No single read waits long (a byte every 0.05 s), yet one answer takes about 9 s: the
    per-read timeouts never fire, so the budget has to bound each query as a whole."""
    with trickling_prometheus(0.05) as (url, asked):
        started = time.perf_counter()
        with pytest.raises(prometheus.PrometheusError) as raised:
            prometheus.window_counts(
                url, TOTAL_QUERY, {"5m": 300}, error_query=ERROR_QUERY, budget_seconds=0.75
            )
        elapsed = time.perf_counter() - started
    assert elapsed < 3 * 0.75, elapsed
    assert len(asked) == 1
    assert str(raised.value) == (
        f"Prometheus at {url} took more than the 0.75s allowed for one SLO's queries "
        "(0 of them answered in time)"
    )


def test_a_slow_prometheus_is_recorded_as_the_evaluations_error(
    factory: Factory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus, "BUDGET_SECONDS", 1.5)
    responder = factory.user(Role.responder)
    factory.service("api")
    with slow_prometheus(0.5) as (url, asked):
        created = responder.post(
            "/api/v1/slos",
            json={
                "name": "api-slow-prom",
                "service": "api",
                "objective_percent": 99,
                "sli": {
                    "kind": "prometheus",
                    "url": url,
                    "error_query": ERROR_QUERY,
                    "total_query": TOTAL_QUERY,
                },
            },
        )
        assert created.status_code == 201, created.text
        started = time.perf_counter()
        evaluate_all(runtime)
        elapsed = time.perf_counter() - started
    assert elapsed < 5, elapsed  # 16 queries at 0.5 s each would take 8 s
    assert len(asked) < 8
    slo = responder.get("/api/v1/slos/api-slow-prom").json()
    assert slo["state"] == "pending"
    assert "took more than the 1.5s allowed for one SLO's queries" in slo["last_error"]


def test_a_count_past_what_a_window_can_hold_is_the_evaluations_error(
    factory: Factory, runtime: Runtime
) -> None:
    """1e305 requests a second over a 30-day window is no count (a float's infinity): the
    evaluation job crashed on it, and the SLA report with it."""
    responder = factory.user(Role.responder)
    factory.service("api")
    with slow_prometheus(0, "1e305") as (url, _):
        created = responder.post(
            "/api/v1/slos",
            json={
                "name": "api-huge",
                "service": "api",
                "objective_percent": 99,
                "sli": {
                    "kind": "prometheus",
                    "url": url,
                    "error_query": ERROR_QUERY,
                    "total_query": TOTAL_QUERY,
                },
            },
        )
        assert created.status_code == 201, created.text
        target = {"service": "api", "kind": "uptime", "target_percent": 99, "slo": "api-huge"}
        assert responder.put("/api/v1/sla/targets", json=target).status_code == 200
        evaluate_all(runtime)  # fails the test if the job failed
        month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        report = responder.get("/api/v1/sla/report", params={"month": month})
    slo = responder.get("/api/v1/slos/api-huge").json()
    assert slo["state"] == "pending"
    too_many = "more than the 9,223,372,036,854,775,807 events a window can count"
    assert "gave 1e+305 events per second" in slo["last_error"], slo["last_error"]
    assert too_many in slo["last_error"]
    assert report.status_code == 200, report.text
    [line] = report.json()["services"][0]["targets"]
    assert (line["achieved_percent"], line["breached"]) == (None, False)
    assert too_many in line["error"]


def test_a_month_just_begun_asks_prometheus_for_no_empty_range(
    factory: Factory, prometheus_url: str
) -> None:
    """At 00:00:00 on the first (or half a second later) the month so far lasts 0 s, and
    Prometheus refuses a ``[0s]`` range ("duration must be greater than 0"): the month was
    reported unreadable. It has no events yet instead, like a source that saw none."""
    responder = factory.user(Role.responder)
    factory.service("api")
    created = responder.post(
        "/api/v1/slos",
        json={
            "name": "api-month-start",
            "service": "api",
            "objective_percent": 99,
            "sli": {
                "kind": "prometheus",
                "url": prometheus_url,
                "error_query": ERROR_QUERY,
                "total_query": TOTAL_QUERY,
            },
        },
    )
    assert created.status_code == 201, created.text
    target = responder.put(
        "/api/v1/sla/targets",
        json={"service": "api", "kind": "uptime", "target_percent": 99.5, "slo": "api-month-start"},
    )
    assert target.status_code == 200, target.text
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for offset in (timedelta(0), timedelta(milliseconds=500)):
        with FrozenClock(first + offset):
            answer = responder.get("/api/v1/sla/report", params={"month": f"{first:%Y-%m}"})
        assert answer.status_code == 200, answer.text
        [line] = answer.json()["services"][0]["targets"]
        assert line["error"] is None, (offset, line["error"])
        assert line["achieved_percent"] is None
        assert line["breached"] is False
        assert line["events"] == 0


def test_a_window_under_a_second_is_not_asked_for() -> None:
    with slow_prometheus(0) as (url, asked):
        counts = prometheus.window_counts(
            url, TOTAL_QUERY, {"0s": 0, "5m": 300}, error_query=ERROR_QUERY
        )
    assert counts == {"5m": (300, 300)}
    assert len(asked) == 2
    assert all("%5B0s%5D" not in path for path in asked), asked
