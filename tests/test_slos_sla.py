"""SLA targets and the monthly breach report; probe SLIs from real TCP probe runs."""

from __future__ import annotations

import html
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.runtime import Runtime
from tests.factories import ApiUser, Factory, row_counts
from tests.slo_support import evaluate_all, events_slo, incidents, push, slo_alerts

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NOVEMBER_MINUTES = 30 * 24 * 60


def _target(user: ApiUser, **body: object) -> dict[str, object]:
    answer = user.put("/api/v1/sla/targets", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_monthly_report_says_who_breached(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    factory.service("checkout")
    factory.service("search")
    factory.service("quiet")
    events_slo(responder, "checkout-availability", "checkout")
    events_slo(responder, "search-availability", "search")
    events_slo(responder, "quiet-availability", "quiet")
    with FrozenClock(NOW):
        for day, good, bad in ((2, 49_900, 100), (20, 49_900, 100)):  # 0.2 % bad in November
            stamp = datetime(2026, 11, day, 8, 30, tzinfo=UTC).isoformat()
            push(responder, "checkout-availability", good, bad, timestamp=stamp)
        push(responder, "checkout-availability", 0, 5000)  # December: not in the report
        push(
            responder,
            "search-availability",
            1000,
            0,
            timestamp=datetime(2026, 11, 15, tzinfo=UTC).isoformat(),
        )
        push(  # October: outside the month
            responder,
            "quiet-availability",
            0,
            10,
            timestamp=datetime(2026, 10, 31, 23, 59, tzinfo=UTC).isoformat(),
        )
        _target(
            responder,
            service="checkout",
            kind="uptime",
            target_percent=99.9,
            slo="checkout-availability",
        )
        _target(
            responder, service="search", kind="uptime", target_percent=99, slo="search-availability"
        )
        _target(
            responder, service="quiet", kind="uptime", target_percent=99, slo="quiet-availability"
        )
        # Setting the same kind again replaces the target.
        _target(
            responder,
            service="checkout",
            kind="uptime",
            target_percent=99.95,
            slo="checkout-availability",
        )
        answer = viewer.get("/api/v1/sla/report", params={"month": "2026-11"})
        current = viewer.get("/api/v1/sla/report", params={"month": "2026-12"}).json()
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["month"] == "2026-11"
    assert report["complete"] is True
    assert report["starts_at"] == "2026-11-01T00:00:00Z"
    assert report["ends_at"] == "2026-12-01T00:00:00Z"
    by_service = {s["service"]: s for s in report["services"]}
    assert sorted(by_service) == ["checkout", "quiet", "search"]

    [checkout] = by_service["checkout"]["targets"]
    assert by_service["checkout"]["breached"] is True
    assert checkout["source"] == "slo:checkout-availability"
    assert checkout["target_percent"] == 99.95
    assert checkout["achieved_percent"] == pytest.approx(99.8)
    assert checkout["breached"] is True
    assert checkout["events"] == 100_000
    assert checkout["downtime_minutes_allowed"] == pytest.approx(0.0005 * NOVEMBER_MINUTES)
    assert checkout["downtime_minutes_used"] == pytest.approx(0.002 * NOVEMBER_MINUTES)

    [search] = by_service["search"]["targets"]
    assert by_service["search"]["breached"] is False
    assert search["achieved_percent"] == 100
    assert search["downtime_minutes_allowed"] == pytest.approx(0.01 * NOVEMBER_MINUTES)
    assert search["downtime_minutes_used"] == 0

    [quiet] = by_service["quiet"]["targets"]  # no events in November: nothing to judge
    assert quiet["achieved_percent"] is None
    assert quiet["breached"] is False
    assert quiet["downtime_minutes_used"] is None

    assert current["complete"] is False
    december = {s["service"]: s["targets"][0] for s in current["services"]}
    assert december["checkout"]["achieved_percent"] == 0
    assert december["checkout"]["breached"] is True
    # Used so far: the whole elapsed December (2.5 days), all of it bad.
    assert december["checkout"]["downtime_minutes_used"] == pytest.approx(2.5 * 24 * 60)


def test_a_month_past_what_its_sources_keep_is_not_measured(
    factory: Factory, runtime: Runtime
) -> None:
    """Pushed events are kept 100 days, probe roll-ups 90. The report read what was left of a
    month past that: a breach at the start of November was pruned, and in March the report
    said 100 % achieved, no breach, without a word about the missing days."""
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    factory.service("checkout")
    events_slo(responder, "avail", "checkout")
    probe = {"name": "db", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}
    assert admin.post("/api/v1/probes", json={**probe, "service": "checkout"}).status_code == 201
    with FrozenClock(NOW):
        for day, good, bad in ((2, 100, 100), (25, 1000, 0)):
            stamp = datetime(2026, 11, day, tzinfo=UTC).isoformat()
            push(responder, "avail", good, bad, timestamp=stamp)
        _target(responder, service="checkout", kind="uptime", target_percent=99.5, slo="avail")
        _target(
            responder,
            service="checkout",
            kind="latency",
            target_percent=99,
            probe="db",
            latency_threshold_ms=300,
        )
    # 1 March 2027: 1 November is 120 days back; 25 November 96; 1 December exactly 90.
    with FrozenClock(datetime(2027, 3, 1, tzinfo=UTC)):
        evaluate_all(runtime)  # prunes the events past 100 days, as every minute does
        november = responder.get("/api/v1/sla/report", params={"month": "2026-11"}).json()
        december = responder.get("/api/v1/sla/report", params={"month": "2026-12"}).json()
    lines = {line["kind"]: line for line in november["services"][0]["targets"]}
    assert lines["uptime"]["achieved_percent"] is None
    assert lines["uptime"]["breached"] is False
    assert lines["uptime"]["downtime_minutes_used"] is None
    assert lines["uptime"]["error"] == (
        "pushed events are kept 100 days: this month's before 2026-11-21 00:00 UTC are gone, "
        "so it cannot be measured in full"
    )
    assert lines["latency"]["achieved_percent"] is None
    assert lines["latency"]["error"] == (
        "probe results are kept 90 days: this month's before 2026-12-01 00:00 UTC are gone, "
        "so it cannot be measured in full"
    )
    # December is still whole for both.
    assert [line["error"] for line in december["services"][0]["targets"]] == [None, None]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"month": "2026-13"}, "month"),
        ({"month": "nov"}, "month"),
        ({"month": "2027-01"}, "month"),
        ({"month": "9999-12"}, "month"),  # its end is past what a date can hold: was a 500
    ],
)
def test_a_bad_month_is_refused(factory: Factory, params: dict[str, str], field: str) -> None:
    viewer = factory.user(Role.viewer)
    with FrozenClock(NOW):
        answer = viewer.get("/api/v1/sla/report", params=params)
        page = viewer.get("/sla", params=params)
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert page.status_code == 200  # the console shows this month's report instead
    assert "SLA report · 2026-12" in page.text
    # ... and says so: it showed another month than the one asked for without a word.
    assert f'data-field="{field}"' in page.text
    assert answer.json()["detail"] in html.unescape(page.text)
    assert "showing 2026-12 instead" in page.text


def test_a_month_that_meets_its_target_exactly_is_not_a_breach(factory: Factory) -> None:
    """4,502 good of 5,000 is exactly 90.04 %: in floating point it came out just under
    a 90.04 target, and the report said breached beside an achieved 90.04."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(NOW):
        stamp = datetime(2026, 11, 2, 8, 30, tzinfo=UTC).isoformat()
        push(responder, "checkout-availability", 4_502, 498, timestamp=stamp)
        for target, breached in ((90.04, False), (90.05, True)):
            _target(
                responder,
                service="checkout",
                kind="uptime",
                target_percent=target,
                slo="checkout-availability",
            )
            report = responder.get("/api/v1/sla/report", params={"month": "2026-11"}).json()
            [line] = report["services"][0]["targets"]
            assert (line["achieved_percent"], line["breached"]) == (90.04, breached)


def test_an_achieved_percentage_is_not_rounded_across_its_target(factory: Factory) -> None:
    """998,999,999 good of 10^9 is 99.8999999 %: to six decimals that is 99.9, the target
    it breaches. 999,999,994 of 10^9 meets a 99.9999994 target exactly, and to six decimals
    fell below it (99.999999). Each is rounded towards its own side instead."""
    responder = factory.user(Role.responder)
    stamp = datetime(2026, 11, 2, 8, 30, tzinfo=UTC).isoformat()
    cases = {  # service: (good of 10^9, target, achieved shown, breached)
        "checkout": (998_999_999, 99.9, 99.899999, True),
        "search": (999_999_994, 99.9999994, 100.0, False),
        "payments": (998_000_000, 99.9, 99.8, True),  # nearest already on its side: kept
    }
    with FrozenClock(NOW):
        for service, (good, target, _, _) in cases.items():
            factory.service(service)
            events_slo(responder, f"{service}-availability", service)
            push(responder, f"{service}-availability", good, 10**9 - good, timestamp=stamp)
            _target(
                responder,
                service=service,
                kind="uptime",
                target_percent=target,
                slo=f"{service}-availability",
            )
        report = responder.get("/api/v1/sla/report", params={"month": "2026-11"}).json()
    shown = {
        row["service"]: (row["targets"][0]["achieved_percent"], row["targets"][0]["breached"])
        for row in report["services"]
    }
    assert shown == {service: case[2:] for service, case in cases.items()}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"service": "nowhere", "kind": "uptime", "target_percent": 99, "slo": "a"}, "service"),
        ({"service": "checkout", "kind": "uptime", "target_percent": 99, "slo": "nope"}, "slo"),
        ({"service": "search", "kind": "uptime", "target_percent": 99, "slo": "a"}, "slo"),
        (
            {"service": "checkout", "kind": "uptime", "target_percent": 101, "slo": "a"},
            "target_percent",
        ),
        (
            {"service": "checkout", "kind": "uptime", "target_percent": True, "slo": "a"},
            "target_percent",
        ),
        (
            {"service": "checkout", "kind": "uptime", "target_percent": "99", "slo": "a"},
            "target_percent",
        ),
        (
            {
                "service": "checkout",
                "kind": "latency",
                "target_percent": 99,
                "probe": "p",
                "latency_threshold_ms": True,
            },
            "latency_threshold_ms",
        ),
        ({"service": "checkout", "kind": "uptime", "target_percent": 99}, "body"),  # slo or probe
        # The threshold is named: it is the field to give, or to leave out.
        (
            {"service": "checkout", "kind": "latency", "target_percent": 99, "probe": "p"},
            "latency_threshold_ms",
        ),
        (
            {
                "service": "checkout",
                "kind": "uptime",
                "target_percent": 99,
                "slo": "a",
                "latency_threshold_ms": 300,
            },
            "latency_threshold_ms",
        ),
        ({"service": "checkout", "kind": "uptime", "target_percent": 99, "probe": "p"}, "probe"),
    ],
)
def test_bad_targets_are_refused(
    factory: Factory, runtime: Runtime, body: dict[str, object], field: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    factory.service("search")
    events_slo(responder, "a", "checkout")
    before = row_counts(runtime)
    answer = responder.put("/api/v1/sla/targets", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert row_counts(runtime) == before


def test_a_probe_of_another_service_cannot_measure_its_target(
    factory: Factory, runtime: Runtime
) -> None:
    """As an SLO of another service is refused; a probe of no service may measure any."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    factory.service("search")
    for name, service in (("checkout-tcp", "checkout"), ("edge-tcp", None)):
        probe = {"name": name, "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}
        made = admin.post("/api/v1/probes", json={**probe, "service": service})
        assert made.status_code == 201, made.text
    before = row_counts(runtime)
    body = {"service": "search", "kind": "uptime", "target_percent": 99}
    refused = admin.put("/api/v1/sla/targets", json={**body, "probe": "checkout-tcp"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "probe"
    assert refused.json()["detail"] == "probe checkout-tcp belongs to service checkout, not search"
    assert row_counts(runtime) == before
    assert _target(admin, **body, probe="edge-tcp")["probe"] == "edge-tcp"


@pytest.mark.parametrize(
    ("kind", "measure", "detail"),
    [
        ("latency", "availability", "SLO edge-slo measures availability, not latency"),
        ("uptime", "latency", "SLO edge-slo measures latency, not uptime"),
    ],
)
def test_a_probe_slo_measures_only_targets_of_its_own_kind(
    factory: Factory, runtime: Runtime, kind: str, measure: str, detail: str
) -> None:
    """A probe SLI says what it measures: an uptime target read from a latency SLO (or the
    other way round) would report a month of the wrong thing. Events and Prometheus SLIs
    do not say, and are taken at the target's word."""
    admin = factory.user(Role.admin)
    factory.service("edge")
    probe = {"name": "edge-tcp", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}
    assert admin.post("/api/v1/probes", json={**probe, "service": "edge"}).status_code == 201
    sli: dict[str, object] = {"kind": "probe", "probe": "edge-tcp", "measure": measure}
    if measure == "latency":
        sli["latency_threshold_ms"] = 300
    slo = {"name": "edge-slo", "service": "edge", "objective_percent": 99, "sli": sli}
    assert admin.post("/api/v1/slos", json=slo).status_code == 201
    before = row_counts(runtime)
    body = {"service": "edge", "kind": kind, "target_percent": 99, "slo": "edge-slo"}
    refused = admin.put("/api/v1/sla/targets", json=body)
    assert refused.status_code == 422, refused.text
    assert (refused.json()["field"], refused.json()["detail"]) == ("slo", detail)
    assert row_counts(runtime) == before
    other = "uptime" if kind == "latency" else "latency"
    assert _target(admin, **{**body, "kind": other})["slo"] == "edge-slo"


def test_targets_are_listed_and_deleted(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "a", "checkout")
    made = _target(responder, service="checkout", kind="uptime", target_percent=99.9, slo="a")
    assert responder.get("/api/v1/sla/targets").json() == [made]
    assert responder.delete(f"/api/v1/sla/targets/{made['id']}").status_code == 204
    assert responder.get("/api/v1/sla/targets").json() == []
    assert responder.delete(f"/api/v1/sla/targets/{made['id']}").status_code == 404


# -- probes ------------------------------------------------------------------------------------
@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real TCP endpoint on loopback for the probe to connect to."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def test_probe_slis_feed_slos_and_sla_targets(
    factory: Factory, runtime: Runtime, listener: socket.socket
) -> None:
    admin = factory.user(Role.admin)
    factory.service("edge")
    port = listener.getsockname()[1]
    made = admin.post(
        "/api/v1/probes",
        json={
            "name": "edge-tcp",
            "kind": "tcp",
            "service": "edge",
            "tcp": {"host": "127.0.0.1", "port": port},
            "timeout_seconds": 2,
        },
    )
    assert made.status_code == 201, made.text
    slo = admin.post(
        "/api/v1/slos",
        json={
            "name": "edge-availability",
            "service": "edge",
            "objective_percent": 99,
            "min_events": 5,
            "sli": {"kind": "probe", "probe": "edge-tcp"},
        },
    )
    assert slo.status_code == 201, slo.text
    assert slo.json()["sli_summary"] == "probe edge-tcp availability"
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    with FrozenClock(start) as clock:
        for _ in range(6):  # six passing runs, a minute apart
            assert admin.post("/api/v1/probes/edge-tcp/run").json()["ok"] is True
            clock.advance(minutes=1)
        evaluate_all(runtime)
        assert admin.get("/api/v1/slos/edge-availability").json()["state"] == "ok"
        listener.close()  # the endpoint goes away: runs fail
        for _ in range(4):
            assert admin.post("/api/v1/probes/edge-tcp/run").json()["ok"] is False
            clock.advance(seconds=30)
        evaluate_all(runtime)
        slo_now = admin.get("/api/v1/slos/edge-availability").json()
        assert slo_now["state"] == "page"
        assert slo_now["burn_rates"]["1h"] == pytest.approx(40)  # 4 of 10 failed, budget 1 %
        # The probe itself went down first and opened the incident; the page joins it.
        [incident] = incidents(runtime)
        assert incident.source == "probe"
        assert slo_alerts(runtime, "edge-availability")["page"].incident_id == incident.id

        _target(admin, service="edge", kind="uptime", target_percent=99.9, probe="edge-tcp")
        _target(
            admin,
            service="edge",
            kind="latency",
            target_percent=50,
            probe="edge-tcp",
            latency_threshold_ms=5000,
        )
        report = admin.get("/api/v1/sla/report", params={"month": "2026-11"}).json()
    [edge] = report["services"]
    lines = {line["kind"]: line for line in edge["targets"]}
    assert lines["uptime"]["source"] == "probe:edge-tcp"
    assert lines["uptime"]["achieved_percent"] == pytest.approx(60)
    assert lines["uptime"]["breached"] is True
    assert lines["latency"]["achieved_percent"] == pytest.approx(60)  # the six quick ones
    assert lines["latency"]["breached"] is False
    assert edge["breached"] is True
