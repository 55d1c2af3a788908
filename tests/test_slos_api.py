"""SLOs through the API: definitions, pushed events end to end, burn-rate alerts and incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.jobs import Schedule, Worker
from firetower.monitors.slo_models import SloEvaluation
from firetower.monitors.slo_reactions import SCHEDULE
from firetower.runtime import Runtime
from tests.factories import ApiUser, Factory, row_counts
from tests.signals_support import settle_held_alerts
from tests.slo_support import (
    evaluate_all,
    events_slo,
    incidents,
    push,
    run_jobs,
    slo_alerts,
    timeline,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


# -- definitions -------------------------------------------------------------------------------
def test_an_slo_is_created_listed_replaced_and_deleted(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    factory.service("checkout")
    created = events_slo(responder, "checkout-availability", "checkout", window_days=28)
    assert created["state"] == "pending"  # never evaluated: nothing known yet
    assert created["window_days"] == 28
    assert created["min_events"] == 20
    assert created["budget_remaining_percent"] is None  # not evaluated yet
    assert created["sli_summary"] == "pushed events"

    [listed] = viewer.get("/api/v1/slos").json()
    assert listed["name"] == "checkout-availability"
    assert viewer.post("/api/v1/slos", json={}).status_code == 403

    replaced = responder.put(
        "/api/v1/slos/checkout-availability",
        json={
            "name": "checkout-availability",
            "service": "checkout",
            "objective_percent": 99.5,
            "sli": {"kind": "events"},
            "min_events": 5,
        },
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["objective_percent"] == 99.5
    assert replaced.json()["window_days"] == 30
    new = responder.put(
        "/api/v1/slos/checkout-latency",
        json={
            "name": "checkout-latency",
            "service": "checkout",
            "objective_percent": 99,
            "sli": {"kind": "events"},
        },
    )
    assert new.status_code == 201, new.text

    assert responder.delete("/api/v1/slos/checkout-availability").status_code == 204
    assert responder.get("/api/v1/slos/checkout-availability").status_code == 404
    assert [s["name"] for s in viewer.get("/api/v1/slos").json()] == ["checkout-latency"]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"service": "nowhere"}, 422, "service"),
        ({"objective_percent": 100}, 422, "objective_percent"),
        ({"objective_percent": 0}, 422, "objective_percent"),
        ({"objective_percent": True}, 422, "objective_percent"),  # not 1 %
        ({"objective_percent": "99.9"}, 422, "objective_percent"),
        ({"window_days": True}, 422, "window_days"),
        ({"window_days": 7.0}, 422, "window_days"),
        ({"min_events": False}, 422, "min_events"),
        (
            {
                "sli": {
                    "kind": "probe",
                    "probe": "p",
                    "measure": "latency",
                    "latency_threshold_ms": True,
                }
            },
            422,
            "sli.probe.latency_threshold_ms",
        ),
        ({"window_days": 91}, 422, "window_days"),
        ({"min_events": -1}, 422, "min_events"),
        ({"name": "Not A Name"}, 422, "name"),
        ({"sli": {"kind": "probe", "probe": "missing"}}, 422, "sli.probe"),
        ({"sli": {"kind": "probe", "probe": "p", "measure": "latency"}}, 422, "sli.probe"),
        (
            {"sli": {"kind": "prometheus", "total_query": "sum(rate(x[{{window}}]))"}},
            422,
            "sli.prometheus",
        ),
        (
            {
                "sli": {
                    "kind": "prometheus",
                    "error_query": "sum(rate(errors[5m]))",
                    "total_query": "sum(rate(x[{{window}}]))",
                    "url": "http://prometheus:9090",
                }
            },
            422,
            "sli.prometheus.error_query",
        ),
        (
            {
                "sli": {
                    "kind": "prometheus",
                    "error_query": "sum(rate(errors[{{window}}]))",
                    "total_query": "sum(rate(x[{{window}}]))",
                }
            },
            422,
            "sli.url",
        ),
        ({"sli": {"kind": "statsd"}}, 422, "sli"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(
    factory: Factory, runtime: Runtime, change: dict[str, object], status: int, field: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    before = row_counts(runtime)
    body = {
        "name": "checkout-availability",
        "service": "checkout",
        "objective_percent": 99.9,
        "sli": {"kind": "events"},
        **change,
    }
    answer = responder.post("/api/v1/slos", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"].startswith(field), answer.json()
    assert row_counts(runtime) == before


def test_a_second_slo_of_the_same_name_conflicts(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    again = responder.post(
        "/api/v1/slos",
        json={
            "name": "checkout-availability",
            "service": "checkout",
            "objective_percent": 99,
            "sli": {"kind": "events"},
        },
    )
    assert again.status_code == 409
    assert again.json()["field"] == "name"


# -- pushed events -----------------------------------------------------------------------------
def test_pushed_events_are_summed_per_minute(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0 + timedelta(seconds=10)) as clock:
        first = push(responder, "checkout-availability", 10, 1)
        clock.advance(seconds=30)
        second = push(responder, "checkout-availability", 5, 2)
        stamped = push(
            responder,
            "checkout-availability",
            7,
            0,
            timestamp=(T0 - timedelta(minutes=3, seconds=-5)).isoformat(),
        )
    assert first["bucket_start"] == second["bucket_start"] == "2026-11-28T10:00:00Z"
    assert (second["good"], second["bad"]) == (15, 3)
    assert stamped["bucket_start"] == "2026-11-28T09:57:00Z"
    assert (stamped["good"], stamped["bad"]) == (7, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"good": -1, "bad": 0}, "good"),
        ({"good": 1}, "bad"),
        ({"good": 1, "bad": 0, "timestamp": "2026-11-28T10:00:00"}, "timestamp"),
        ({"good": 1, "bad": 0, "timestamp": "2026-11-28T11:00:00Z"}, "timestamp"),
        ({"good": 1, "bad": 0, "timestamp": "2026-06-01T10:00:00Z"}, "timestamp"),
        ({"good": 10**13, "bad": 0}, "good"),
        ({"good": True, "bad": False}, "good"),  # not one good event
        ({"good": 1, "bad": True}, "bad"),
        ({"good": 1.5, "bad": 0}, "good"),
        ({"good": "7", "bad": 0}, "good"),
    ],
)
def test_bad_pushes_are_refused(
    factory: Factory, runtime: Runtime, body: dict[str, object], field: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    before = row_counts(runtime)
    with FrozenClock(T0):
        answer = responder.post("/api/v1/slos/checkout-availability/events", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert row_counts(runtime) == before


def test_a_minute_bucket_refuses_more_events_than_it_may_hold(
    factory: Factory, runtime: Runtime
) -> None:
    """Each push is capped, but pushes added up in one bucket without end, past what the
    bigint column holds (PostgreSQL: a 500) and what a window's sum may reach (SQLite)."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0):
        for _ in range(10):
            push(responder, "checkout-availability", 10**12, 10**12)
        before = row_counts(runtime)
        for body, field in (({"good": 1, "bad": 0}, "good"), ({"good": 0, "bad": 1}, "bad")):
            answer = responder.post("/api/v1/slos/checkout-availability/events", json=body)
            assert answer.status_code == 422, answer.text
            problem = answer.json()
            assert problem["field"] == field
            assert "10,000,000,000,000" in problem["detail"], problem
        assert row_counts(runtime) == before
        last = push(responder, "checkout-availability", 0, 0)
        assert (last["good"], last["bad"]) == (10**13, 10**13)
        evaluate_all(runtime)
    slo = responder.get("/api/v1/slos/checkout-availability").json()
    assert (slo["last_error"], slo["state"]) == (None, "page")


def test_events_go_only_to_events_slos_and_need_a_responder(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    factory.service("checkout")
    responder.post(
        "/api/v1/slos",
        json={
            "name": "checkout-prom",
            "service": "checkout",
            "objective_percent": 99,
            "sli": {
                "kind": "prometheus",
                "url": "http://127.0.0.1:9",
                "error_query": "sum(rate(e[{{window}}]))",
                "total_query": "sum(rate(t[{{ window }}]))",
            },
        },
    )
    refused = responder.post("/api/v1/slos/checkout-prom/events", json={"good": 1, "bad": 0})
    assert refused.status_code == 409
    assert "prometheus" in refused.json()["detail"]
    assert (
        responder.post("/api/v1/slos/nothing/events", json={"good": 1, "bad": 0}).status_code == 404
    )
    events_slo(responder, "checkout-events", "checkout")
    denied = viewer.post("/api/v1/slos/checkout-events/events", json={"good": 1, "bad": 0})
    assert denied.status_code == 403


# -- burn-rate alerts --------------------------------------------------------------------------
def test_a_fast_burn_pages_then_tickets_then_resolves(factory: Factory, runtime: Runtime) -> None:
    """Bad pushed events open an incident; as clean traffic returns the windows cool down one
    by one: page → ticket (the page signal resolves) → ok (the ticket resolves too)."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)  # 10 % errors: 100x
        evaluate_all(runtime)
        slo = responder.get("/api/v1/slos/checkout-availability").json()
        assert slo["state"] == "page"
        assert slo["burn_rates"]["5m"] == pytest.approx(100)
        assert slo["current_burn_rate"] == pytest.approx(100)
        assert slo["budget_remaining_percent"] == pytest.approx(-9900)
        [incident] = incidents(runtime)
        assert incident.source == "slo"
        assert incident.severity == "SEV2"
        assert "checkout-availability" in incident.title
        alerts = slo_alerts(runtime, "checkout-availability")
        assert set(alerts) == {"page"}
        assert alerts["page"].status == "firing"
        assert alerts["page"].incident_id == incident.id
        assert alerts["page"].service_name == "checkout"

        # Still burning a minute later: no second incident, no second alert.
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert len(incidents(runtime)) == 1
        assert slo_alerts(runtime, "checkout-availability")["page"].count == 1

        # 40 minutes of clean traffic: 5m and 30m are clean, 2h still sees 9x → ticket.
        for _ in range(4):
            clock.advance(minutes=10)
            push(responder, "checkout-availability", 2500, 0)
        evaluate_all(runtime)
        slo = responder.get("/api/v1/slos/checkout-availability").json()
        assert slo["state"] == "ticket"
        alerts = slo_alerts(runtime, "checkout-availability")
        assert alerts["page"].status == "resolved"
        assert alerts["ticket"].status == "firing"
        assert alerts["ticket"].severity == "SEV4"
        # The incident is still open, so the ticket joins it as a note; it opened nothing.
        assert alerts["ticket"].incident_id == incident.id
        assert len(incidents(runtime)) == 1

        # Seven more hours of clean traffic: every short window is clean → ok.
        for _ in range(7):
            clock.advance(hours=1)
            push(responder, "checkout-availability", 20_000, 0)
        evaluate_all(runtime)
        slo = responder.get("/api/v1/slos/checkout-availability").json()
        assert slo["state"] == "ok"
        assert slo_alerts(runtime, "checkout-availability")["ticket"].status == "resolved"
    texts = [e.text for e in timeline(runtime, incident.id)]
    assert any("alerts attached to this incident have resolved" in t for t in texts)

    history = responder.get("/api/v1/slos/checkout-availability/evaluations").json()
    assert [h["level"] for h in history] == ["ok", "ticket", "page", "page"]
    assert history[-1]["fired"] == [
        "page: >14.4x over 1h and 5m",
        "page: >6x over 6h and 30m",
        "ticket: >3x over 1d and 2h",
        "ticket: >1x over 3d and 6h",
    ]


def test_a_page_still_burning_opens_the_next_incident_once_a_person_resolves_one(
    factory: Factory, runtime: Runtime
) -> None:
    """The SLO stays at page level, so it signalled nothing new: its alert stayed with the
    resolved incident and nobody was paged again while the budget kept burning."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)  # 10 % errors: 100x
        evaluate_all(runtime)
        [first] = incidents(runtime)
        resolved = responder.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text

        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "page"
        opened, second = incidents(runtime)
        assert (opened.id, opened.status) == (first.id, "resolved")
        assert (second.status, second.source, second.severity) == ("triage", "slo", "SEV2")
        assert second.impact_started_at == T0  # the burn it is about started then
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.status, page.incident_id, page.count) == ("firing", second.id, 2)

        # While that one is open the SLO says nothing again: no third incident.
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert len(incidents(runtime)) == 2
        assert slo_alerts(runtime, "checkout-availability")["page"].count == 2

        # A burn people know about is kept quiet by a silence, not by resolving.
        silence = {
            "matchers": [{"label": "slo", "op": "=", "value": "checkout-availability"}],
            "duration_seconds": 3600,
        }
        assert responder.post("/api/v1/silences", json=silence).status_code == 201
        resolved = responder.patch(f"/api/v1/incidents/{second.ref}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert len(incidents(runtime)) == 2
        assert slo_alerts(runtime, "checkout-availability")["page"].silenced


def test_a_page_still_burning_joins_the_other_active_incident_once_a_person_resolves_its_own(
    factory: Factory, runtime: Runtime
) -> None:
    """A page repeated only while its service had no active incident: once a person resolved
    the incident it joined while another one of its service was active, its alert stayed
    with the resolved one for good, and the active one never heard of the burn."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)  # 10 % errors: 100x
        evaluate_all(runtime)
        [first] = incidents(runtime)
        other = factory.incident(title="Checkout is slow", severity="SEV3", services=["checkout"])
        resolved = responder.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text

        clock.advance(minutes=1)
        evaluate_all(runtime)
        resolved_one, active = incidents(runtime)
        assert (resolved_one.id, active.ref) == (first.id, other)
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.status, page.incident_id, page.count) == ("firing", active.id, 2)
        assert active.severity == "SEV2"  # the page joined it, as a first page would have
        notes = [e.text for e in timeline(runtime, active.id) if e.kind == "note"]
        assert any(n.startswith("Severity raised from SEV3 to SEV2: SLO") for n in notes), notes

        # On an active incident again, it says nothing more.
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert len(incidents(runtime)) == 2
        assert slo_alerts(runtime, "checkout-availability")["page"].count == 2


def test_a_page_silenced_once_its_incident_ended_is_not_repeated_and_routes_when_unmuted(
    factory: Factory, runtime: Runtime
) -> None:
    """A page still burning whose incident a person ended under a silence was said again
    at every evaluation: each repeat wrote its alert again (its count grew) and routed
    nothing, the silence holding it. It is said once, which finds the silence; the job
    that routes what a mute held opens the next incident once the silence is over."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)  # 10 % errors: 100x
        evaluate_all(runtime)
        [first] = incidents(runtime)
        silence = {
            "matchers": [{"label": "slo", "op": "=", "value": "checkout-availability"}],
            "duration_seconds": 3600,
        }
        silenced = responder.post("/api/v1/silences", json=silence)
        assert silenced.status_code == 201, silenced.text
        ended = responder.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
        assert ended.status_code == 200, ended.text

        clock.advance(minutes=1)
        evaluate_all(runtime)  # said again: it finds the silence
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.silenced, page.count) == (True, 2)
        for _ in range(3):
            clock.advance(minutes=1)
            evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "page"
        assert slo_alerts(runtime, "checkout-availability")["page"].count == 2
        assert len(incidents(runtime)) == 1

        expired = responder.post(f"/api/v1/silences/{silenced.json()['id']}/expire")
        assert expired.status_code == 200, expired.text
        clock.advance(minutes=1)
        settle_held_alerts(runtime)
        ended_one, second = incidents(runtime)
        assert (ended_one.id, second.status, second.source) == (first.id, "triage", "slo")
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.silenced, page.incident_id) == (False, second.id)

        # On an active incident now, it says nothing more.
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert slo_alerts(runtime, "checkout-availability")["page"].count == 2


def route_slo_pages(admin: ApiUser, action: str) -> None:
    """A routing rule that sends every SLO signal to ``action``."""
    rule = {
        "name": f"slos-{action}",
        "matchers": [{"label": "alertname", "op": "=", "value": "SLOBurnRate"}],
        "action": action,
    }
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201


def test_a_page_an_attach_rule_kept_waiting_joins_the_incident_opened_later(
    factory: Factory, runtime: Runtime
) -> None:
    """A rule that only attaches found no incident to join, so the page waited on none; once
    a person opened one on its service the SLO said nothing again (it repeated only while
    the service had none), and its alert never joined it."""
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    factory.service("checkout")
    route_slo_pages(admin, "attach")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)
        evaluate_all(runtime)
        assert incidents(runtime) == []
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.routing_action, page.incident_id) == ("attach", None)
        clock.advance(minutes=1)
        evaluate_all(runtime)  # the repeat tries again: still nothing to join, nothing opened
        assert incidents(runtime) == []

        ref = factory.incident(title="Checkout errors", severity="SEV3", services=["checkout"])
        clock.advance(minutes=1)
        evaluate_all(runtime)
        [incident] = incidents(runtime)
        assert (incident.ref, incident.severity) == (ref, "SEV2")
        page = slo_alerts(runtime, "checkout-availability")["page"]
        assert (page.status, page.incident_id) == ("firing", incident.id)
        count = page.count

        clock.advance(minutes=1)
        evaluate_all(runtime)  # on it now: no more repeats
        assert slo_alerts(runtime, "checkout-availability")["page"].count == count


def test_a_page_resolved_by_hand_while_still_burning_pages_again(
    factory: Factory, runtime: Runtime
) -> None:
    """A person cleared the page's alert from the alert list, then resolved its incident,
    while the budget still burned: the SLO asked only whether a firing alert's incident was
    over, so the page stayed resolved at page level and nobody was paged again."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)
        evaluate_all(runtime)
        [first] = incidents(runtime)
        page = slo_alerts(runtime, "checkout-availability")["page"]
        by_hand = responder.post(f"/api/v1/alerts/{page.id}/resolve")
        assert by_hand.status_code == 200, by_hand.text
        ended = responder.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
        assert ended.status_code == 200, ended.text

        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "page"
        page = slo_alerts(runtime, "checkout-availability")["page"]
        first_again, second = incidents(runtime)
        assert (first_again.ref, first_again.status) == (first.ref, "resolved")
        assert (page.status, page.incident_id, second.status) == ("firing", second.id, "triage")


def test_a_page_a_rule_only_notifies_of_is_not_repeated(factory: Factory, runtime: Runtime) -> None:
    """A page routed to notify is on no incident by design: it was said again at every
    evaluation (its service had no incident), which routed nothing and only counted."""
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    factory.service("checkout")
    route_slo_pages(admin, "notify")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)
        evaluate_all(runtime)
        for _ in range(2):
            clock.advance(minutes=1)
            evaluate_all(runtime)
    assert incidents(runtime) == []
    page = slo_alerts(runtime, "checkout-availability")["page"]
    assert (page.status, page.routing_action, page.incident_id, page.count) == (
        "firing",
        "notify",
        None,
        1,
    )


def test_a_page_routed_to_another_open_incident_raises_its_severity_once(
    factory: Factory, runtime: Runtime
) -> None:
    """A rule sends the page to another service's open incident; its own service has none,
    which once made each evaluation repeat the page. A page on an active incident repeats
    nothing, so the severity a person set there stays."""
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    factory.service("checkout")
    factory.service("platform")
    ref = factory.incident(title="Platform trouble", severity="SEV4", services=["platform"])
    rule = {
        "name": "slos-to-platform",
        "matchers": [{"label": "slo", "op": "=", "value": "checkout-availability"}],
        "service": "platform",
    }
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 900, 100)
        evaluate_all(runtime)
        [incident] = incidents(runtime)
        assert (incident.ref, incident.severity) == (ref, "SEV2")
        lowered = responder.patch(f"/api/v1/incidents/{ref}", json={"severity": "SEV3"})
        assert lowered.status_code == 200, lowered.text
        for _ in range(2):
            clock.advance(minutes=1)
            evaluate_all(runtime)
    [incident] = incidents(runtime)
    assert incident.severity == "SEV3"
    page = slo_alerts(runtime, "checkout-availability")["page"]
    assert (page.incident_id, page.count) == (incident.id, 1)


def test_a_page_escalates_the_open_incident_of_the_service(
    factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    ref = factory.incident(title="Slow checkout", severity="SEV4", services=["checkout"])
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0):
        push(responder, "checkout-availability", 500, 500)
        evaluate_all(runtime)
    [incident] = incidents(runtime)
    assert incident.ref == ref
    assert incident.severity == "SEV2"
    entries = timeline(runtime, incident.id)
    raised = [e for e in entries if e.kind == "severity_changed"]
    assert [(e.before, e.after) for e in raised] == [({"severity": "SEV4"}, {"severity": "SEV2"})]
    notes = [e.text for e in entries if e.kind == "note"]
    assert any(
        n.startswith("Severity raised from SEV4 to SEV2: SLO checkout-availability burns")
        for n in notes
    ), notes
    assert slo_alerts(runtime, "checkout-availability")["page"].incident_id == incident.id


def test_a_page_leaves_a_more_severe_incident_alone(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    factory.incident(title="Checkout down", severity="SEV1", services=["checkout"])
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0):
        push(responder, "checkout-availability", 0, 100)
        evaluate_all(runtime)
    [incident] = incidents(runtime)
    assert incident.severity == "SEV1"
    assert not [e for e in timeline(runtime, incident.id) if e.kind == "severity_changed"]


def test_too_little_traffic_never_alerts(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout", min_events=100)
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 40, 50)  # 55 % errors, 90 events
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "ok"
        assert incidents(runtime) == []
        assert slo_alerts(runtime, "checkout-availability") == {}
        clock.advance(seconds=30)
        push(responder, "checkout-availability", 5, 5)  # 100 events now
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "page"
    assert len(incidents(runtime)) == 1


def test_a_slow_burn_only_files_a_ticket(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0):
        push(responder, "checkout-availability", 9980, 20)  # 0.2 %: 2x
        evaluate_all(runtime)
    slo = responder.get("/api/v1/slos/checkout-availability").json()
    assert slo["state"] == "ticket"
    assert slo["budget_remaining_percent"] == pytest.approx(-100)
    assert incidents(runtime) == []  # never opens one: it does not page
    ticket = slo_alerts(runtime, "checkout-availability")["ticket"]
    assert ticket.status == "firing"
    assert ticket.severity == "SEV4"
    assert ticket.incident_id is None
    assert ticket.labels["service"] == "checkout"
    listed = responder.get("/api/v1/alerts", params={"integration": "@slos"})
    assert [a["fingerprint"] for a in listed.json()] == ["slo:checkout-availability:ticket"]
    all_alerts = responder.get("/api/v1/alerts").json()
    assert [a["fingerprint"] for a in all_alerts] == ["slo:checkout-availability:ticket"]


def test_a_ticket_that_once_joined_an_incident_never_opens_one(
    factory: Factory, runtime: Runtime
) -> None:
    """A ticket routes to its service only while the service has an active incident; the
    service it got while one was active stayed the alert's, and the next ticket opened one."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    ref = factory.incident(title="Checkout is slow", services=["checkout"])
    with FrozenClock(T0) as clock:
        push(responder, "checkout-availability", 9980, 20)  # 2x: a ticket
        evaluate_all(runtime)
        [incident] = incidents(runtime)
        assert slo_alerts(runtime, "checkout-availability")["ticket"].incident_id == incident.id
        for _ in range(7):  # clean hours: the ticket resolves
            clock.advance(hours=1)
            push(responder, "checkout-availability", 20_000, 0)
        evaluate_all(runtime)
        assert slo_alerts(runtime, "checkout-availability")["ticket"].status == "resolved"
        resolved = responder.patch(f"/api/v1/incidents/{ref}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text

        clock.advance(minutes=1)
        push(responder, "checkout-availability", 99_600, 400)  # about 2x over 6h and 3d
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/checkout-availability").json()["state"] == "ticket"
        assert slo_alerts(runtime, "checkout-availability")["ticket"].status == "firing"
    assert [i.id for i in incidents(runtime)] == [incident.id]


def test_an_unreadable_prometheus_keeps_the_level_and_says_why(
    factory: Factory, runtime: Runtime
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    responder = factory.user(Role.responder)
    factory.service("checkout")
    answer = responder.post(
        "/api/v1/slos",
        json={
            "name": "checkout-prom",
            "service": "checkout",
            "objective_percent": 99,
            "sli": {
                "kind": "prometheus",
                "url": f"http://127.0.0.1:{port}",
                "good_query": "sum(rate(ok[{{window}}]))",
                "total_query": "sum(rate(all[{{window}}]))",
            },
        },
    )
    assert answer.status_code == 201, answer.text
    evaluate_all(runtime)
    slo = responder.get("/api/v1/slos/checkout-prom").json()
    assert slo["state"] == "pending"  # the SLI was never read: nothing is known yet
    assert slo["last_error"].startswith(f"cannot reach Prometheus at http://127.0.0.1:{port}")
    assert slo["budget_remaining_percent"] is None


def test_the_schedule_evaluates_every_slo_each_minute(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-a", "checkout")
    events_slo(responder, "checkout-b", "checkout")
    worker = Worker(runtime.database, runtime.jobs, runtime.bus)
    with FrozenClock(T0) as clock:
        worker.sync_schedules()
        with runtime.read() as session:
            schedule = session.get(Schedule, SCHEDULE)
            assert schedule is not None and schedule.cron == "* * * * *"
        clock.advance(minutes=1)
        run_jobs(runtime)
        run_jobs(runtime)
        clock.advance(minutes=1)
        run_jobs(runtime)
    with runtime.read() as session:
        rows = session.execute(select(SloEvaluation.slo_id, SloEvaluation.at)).all()
    assert len(rows) == 4  # two SLOs, two ticks


def test_deleting_a_paging_slo_resolves_its_signal(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "checkout-availability", "checkout")
    with FrozenClock(T0):
        push(responder, "checkout-availability", 0, 100)
        evaluate_all(runtime)
        assert slo_alerts(runtime, "checkout-availability")["page"].status == "firing"
        assert responder.delete("/api/v1/slos/checkout-availability").status_code == 204
    assert slo_alerts(runtime, "checkout-availability")["page"].status == "resolved"


def _health(user: ApiUser, service: str) -> tuple[str, list[str], list[str]]:
    read = user.get(f"/api/v1/services/{service}").json()
    return read["health"], read["failing_checks"], read["at_risk_from"]


def test_moving_a_paging_slo_clears_the_old_service(factory: Factory, runtime: Runtime) -> None:
    """The old service stops failing (and its dependents stop being at risk) at once; the
    SLO starts over on its new service, which the next evaluation judges."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    factory.service("payments")
    factory.service("web", depends_on=["checkout"])
    with FrozenClock(T0) as clock:
        events_slo(responder, "avail", "checkout", min_events=0)
        push(responder, "avail", 100, 100)
        evaluate_all(runtime)
        assert _health(responder, "checkout") == ("failing", ["slo:avail"], [])
        assert _health(responder, "web") == ("at_risk", [], ["checkout"])

        body = {
            "name": "avail",
            "service": "payments",
            "objective_percent": 99.9,
            "sli": {"kind": "events"},
            "min_events": 0,
        }
        moved = responder.put("/api/v1/slos/avail", json=body)
        assert moved.status_code == 200, moved.text
        assert moved.json()["service"] == "payments"
        assert slo_alerts(runtime, "avail")["page"].status == "resolved"
        assert _health(responder, "checkout") == ("ok", [], [])
        assert _health(responder, "web") == ("ok", [], [])

        # Still burning: the next evaluation pages again, now on payments.
        clock.advance(minutes=1)
        evaluate_all(runtime)
        assert _health(responder, "payments") == ("failing", ["slo:avail"], [])
        assert _health(responder, "checkout") == ("ok", [], [])
        assert slo_alerts(runtime, "avail")["page"].status == "firing"

        clock.current = T0 + timedelta(days=4)
        push(responder, "avail", 1000, 0)
        evaluate_all(runtime)
        assert responder.get("/api/v1/slos/avail").json()["state"] == "ok"
        assert slo_alerts(runtime, "avail")["page"].status == "resolved"
        for service in ("checkout", "payments", "web"):
            assert _health(responder, service) == ("ok", [], [])


def test_an_slo_measuring_an_sla_target_cannot_move(factory: Factory, runtime: Runtime) -> None:
    """The target belongs to the old service, which put_target would refuse: say so."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    factory.service("payments")
    events_slo(responder, "avail", "checkout")
    target = {"service": "checkout", "kind": "uptime", "target_percent": 99.5, "slo": "avail"}
    assert responder.put("/api/v1/sla/targets", json=target).status_code == 200
    before = row_counts(runtime)
    body = {
        "name": "avail",
        "service": "payments",
        "objective_percent": 99.9,
        "sli": {"kind": "events"},
    }
    refused = responder.put("/api/v1/slos/avail", json=body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "service"
    assert refused.json()["detail"] == (
        "SLO avail measures the uptime SLA target of service checkout; "
        "move or delete that target first"
    )
    assert row_counts(runtime) == before
    assert responder.get("/api/v1/slos/avail").json()["service"] == "checkout"
    # The same SLO staying on its service is still replaced as usual.
    kept = responder.put("/api/v1/slos/avail", json={**body, "service": "checkout"})
    assert kept.status_code == 200, kept.text

    # Nor may it come to measure the other kind: the uptime target would then report a
    # month of latency (put_target refuses that pairing too).
    admin = factory.user(Role.admin)
    probe = {"name": "db", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}
    assert admin.post("/api/v1/probes", json={**probe, "service": "checkout"}).status_code == 201
    sli = {"kind": "probe", "probe": "db", "measure": "latency", "latency_threshold_ms": 300}
    before = row_counts(runtime)
    latency = responder.put("/api/v1/slos/avail", json={**body, "service": "checkout", "sli": sli})
    assert latency.status_code == 409, latency.text
    assert latency.json()["field"] == "sli"
    assert latency.json()["detail"] == (
        "SLO avail measures the uptime SLA target of service checkout, which its SLI would "
        "measure latency for; change or delete that target first"
    )
    assert row_counts(runtime) == before
    availability = {"kind": "probe", "probe": "db"}
    fits = responder.put(
        "/api/v1/slos/avail", json={**body, "service": "checkout", "sli": availability}
    )
    assert fits.status_code == 200, fits.text


def test_an_slo_measuring_an_sla_target_cannot_be_deleted(
    factory: Factory, runtime: Runtime
) -> None:
    """Deleting it took the target with it (the foreign key cascades): the service dropped
    out of every month's SLA report, a breached month included, without a word."""
    responder = factory.user(Role.responder)
    factory.service("checkout")
    events_slo(responder, "avail", "checkout")
    target = {"service": "checkout", "kind": "uptime", "target_percent": 99.5, "slo": "avail"}
    made = responder.put("/api/v1/sla/targets", json=target)
    assert made.status_code == 200, made.text
    before = row_counts(runtime)
    refused = responder.delete("/api/v1/slos/avail")
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "name"
    assert refused.json()["detail"] == (
        "SLO avail measures the uptime SLA target of service checkout; "
        "delete that target or measure it by another source first"
    )
    assert row_counts(runtime) == before
    assert [t["slo"] for t in responder.get("/api/v1/sla/targets").json()] == ["avail"]
    # Once the target is gone, the SLO goes as usual.
    assert responder.delete(f"/api/v1/sla/targets/{made.json()['id']}").status_code == 204
    assert responder.delete("/api/v1/slos/avail").status_code == 204


def test_apply_slos_creates_updates_and_refuses_all_or_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    """The config-as-code entry point: by name, all or nothing, errors name slos[i]."""
    from firetower.errors import InvalidInput
    from firetower.monitors.slo_schemas import SLOCreate
    from firetower.monitors.slos import apply_slos
    from tests.factories import SYSTEM

    factory.service("checkout")
    first = SLOCreate.model_validate(
        {"name": "a", "service": "checkout", "objective_percent": 99, "sli": {"kind": "events"}}
    )
    second = first.model_copy(update={"name": "b"})
    with runtime.transaction() as session:
        summary = apply_slos(session, SYSTEM, [first, second])
    assert (summary.created, summary.updated, summary.unchanged) == (["a", "b"], [], [])
    changed = second.model_copy(update={"objective_percent": 99.5})
    with runtime.transaction() as session:
        summary = apply_slos(session, SYSTEM, [first, changed])
    assert (summary.created, summary.updated, summary.unchanged) == ([], ["b"], ["a"])

    before = row_counts(runtime)
    stray = first.model_copy(update={"name": "c", "service": "nowhere"})
    with pytest.raises(InvalidInput) as refused, runtime.transaction() as session:
        apply_slos(session, SYSTEM, [first.model_copy(update={"name": "new"}), stray])
    assert refused.value.field == "slos[1].service"
    assert row_counts(runtime) == before

    responder = factory.user(Role.responder)
    body = {"name": "a", "service": "nowhere", "objective_percent": 99, "sli": {"kind": "events"}}
    answer = responder.put("/api/v1/slos/a", json=body)
    assert (answer.status_code, answer.json()["field"]) == (422, "service")
    answer = responder.put("/api/v1/slos/other", json={**body, "service": "checkout"})
    assert (answer.status_code, answer.json()["field"]) == (422, "name")
