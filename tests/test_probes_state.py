"""Probe state: thresholds, the signal that opens an incident for the probe's service and
resolves, the catalog health of the service and its dependents, and runs by the worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.jobs import Job, Worker
from firetower.monitors import probes
from firetower.monitors.probe_checks import CheckOutcome, run_check
from firetower.monitors.probe_models import ProbeResult
from tests.factories import ApiUser, Factory, login
from tests.probe_servers import _Server, http_target
from tests.signals_support import alert_by_fingerprint, incident_count, settle_held_alerts

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def web() -> Iterator[_Server]:
    with http_target() as server:
        yield server


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


def run(user: ApiUser, name: str) -> dict[str, Any]:
    answer = user.post(f"/api/v1/probes/{name}/run")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def closed_port_probe(admin: ApiUser, name: str, *, service: str | None = None) -> None:
    """A TCP probe of a closed local port (discard, 9), down at its first failing run."""
    probe: dict[str, Any] = {
        "name": name,
        "kind": "tcp",
        "failure_threshold": 1,
        "tcp": {"host": "127.0.0.1", "port": 9},
    }
    if service is not None:
        probe["service"] = service
    created = admin.post("/api/v1/probes", json=probe)
    assert created.status_code == 201, created.text


def test_failures_in_a_row_open_an_incident_and_recovery_resolves_the_signal(
    admin: ApiUser, factory: Factory, web: _Server
) -> None:
    factory.service("payments")
    factory.service("checkout")
    added = admin.post(
        "/api/v1/dependencies", json={"service": "checkout", "depends_on": "payments"}
    )
    assert added.status_code == 201, added.text
    responder = factory.user(Role.responder)
    created = admin.post(
        "/api/v1/probes",
        json={
            "name": "payments-api",
            "kind": "http",
            "service": "payments",
            "severity": "SEV1",
            "failure_threshold": 2,
            "success_threshold": 2,
            "http": {"url": f"{web.url}/toggle"},
        },
    )
    assert created.status_code == 201, created.text

    first = run(responder, "payments-api")
    assert (first["ok"], first["state"], first["state_changed"]) == (True, "unknown", False)
    second = run(responder, "payments-api")
    assert (second["state"], second["state_changed"]) == ("up", True)

    web.toggle_status = 500
    one = run(responder, "payments-api")
    assert (one["ok"], one["state"], one["state_changed"]) == (False, "up", False)
    assert incident_count(factory.runtime) == 0
    two = run(responder, "payments-api")
    assert (two["state"], two["state_changed"]) == ("down", True)

    alert = alert_by_fingerprint(factory.runtime, "probe:payments-api")
    assert alert.status == "firing"
    assert alert.severity == "SEV1"
    assert alert.service_name == "payments"
    assert alert.labels["probe"] == "payments-api" and alert.labels["probe_kind"] == "http"
    assert "status 500" in alert.annotations["error"]
    incidents = admin.get("/api/v1/incidents", params={"service": "payments"}).json()["items"]
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["source"] == "probe" and incident["services"] == ["payments"]
    assert incident["severity"] == "SEV1"
    services = {s["name"]: s for s in admin.get("/api/v1/services").json()}
    assert services["payments"]["health"] == "failing"
    assert services["payments"]["failing_checks"] == ["probe:payments-api"]
    assert services["checkout"]["health"] == "at_risk"

    # More failures neither open another incident nor count the alert as new.
    run(responder, "payments-api")
    assert incident_count(factory.runtime) == 1

    web.toggle_status = 200
    back = run(responder, "payments-api")
    assert (back["ok"], back["state"]) == (True, "down")
    assert alert_by_fingerprint(factory.runtime, "probe:payments-api").status == "firing"
    up = run(responder, "payments-api")
    assert (up["state"], up["state_changed"]) == ("up", True)
    assert alert_by_fingerprint(factory.runtime, "probe:payments-api").status == "resolved"
    services = {s["name"]: s for s in admin.get("/api/v1/services").json()}
    assert services["payments"]["health"] == "ok"
    assert services["checkout"]["health"] == "ok"
    timeline = admin.get(f"/api/v1/incidents/{incident['ref']}/timeline").json()["items"]
    resolved = "The 1 alert attached to this incident has resolved."
    assert any(resolved in (entry.get("text") or "") for entry in timeline), timeline


def test_a_probe_without_a_service_raises_a_signal_but_opens_nothing(
    admin: ApiUser, factory: Factory
) -> None:
    closed_port_probe(admin, "lonely")
    result = run(admin, "lonely")
    assert (result["state"], result["state_changed"]) == ("down", True)
    assert alert_by_fingerprint(factory.runtime, "probe:lonely").status == "firing"
    assert incident_count(factory.runtime) == 0


def test_a_probe_still_down_opens_the_next_incident_once_a_person_resolves_one(
    admin: ApiUser, factory: Factory
) -> None:
    """A probe signals only on a change of state, so its alert stayed with the incident a
    person resolved while it was still down, and nobody was paged again."""
    factory.service("checkout")
    closed_port_probe(admin, "checkout-db", service="checkout")
    went_down = T0
    with FrozenClock(went_down) as clock:
        assert run(admin, "checkout-db")["state"] == "down"
        [first] = _incident_list(admin)
        run(admin, "checkout-db")  # still down, its incident open: nothing new
        assert [i["ref"] for i in _incident_list(admin)] == [first["ref"]]
        resolved = admin.patch(f"/api/v1/incidents/{first['ref']}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text

        clock.advance(minutes=1)
        again = run(admin, "checkout-db")
        assert (again["state"], again["state_changed"]) == ("down", False)
        second, opened = _incident_list(admin)
        assert (opened["ref"], opened["status"]) == (first["ref"], "resolved")
        assert (second["status"], second["source"]) == ("triage", "probe")
        assert second["services"] == ["checkout"]
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.status, alert.count, alert.starts_at) == ("firing", 2, went_down)
        shown = admin.get(f"/api/v1/incidents/{second['ref']}").json()
        assert shown["impact_started_at"] == "2026-03-02T09:00:00Z"  # when the probe went down

        # While that one is open the probe says nothing again: no third incident.
        clock.advance(minutes=1)
        run(admin, "checkout-db")
        assert len(_incident_list(admin)) == 2
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").count == 2

        # An outage people know about is kept quiet by a silence, not by resolving.
        silence = {
            "matchers": [{"label": "probe", "op": "=", "value": "checkout-db"}],
            "duration_seconds": 3600,
        }
        assert admin.post("/api/v1/silences", json=silence).status_code == 201
        resolved = admin.patch(f"/api/v1/incidents/{second['ref']}", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text
        clock.advance(minutes=1)
        run(admin, "checkout-db")
        assert len(_incident_list(admin)) == 2
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").silenced


def test_a_probe_alert_resolved_by_hand_while_still_down_fires_again(
    admin: ApiUser, factory: Factory
) -> None:
    """A person cleared a down probe's alert from the alert list, then resolved its
    incident: the probe asked only whether a firing alert's incident was over, so the
    resolved alert stayed resolved while the probe stayed down, and nobody was paged."""
    factory.service("checkout")
    closed_port_probe(admin, "checkout-db", service="checkout")
    with FrozenClock(T0) as clock:
        assert run(admin, "checkout-db")["state"] == "down"
        [first] = _incident_list(admin)
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        by_hand = admin.post(f"/api/v1/alerts/{alert.id}/resolve")
        assert by_hand.status_code == 200, by_hand.text
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").status == "resolved"
        ended = admin.patch(f"/api/v1/incidents/{first['ref']}", json={"status": "resolved"})
        assert ended.status_code == 200, ended.text

        clock.advance(minutes=1)
        assert run(admin, "checkout-db")["state"] == "down"
        second, _ = _incident_list(admin)
        assert (second["status"], second["source"]) == ("triage", "probe")
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.status, alert.incident_id) == ("firing", int(second["ref"][4:]))


def test_a_down_probe_an_attach_rule_kept_waiting_joins_the_incident_opened_later(
    admin: ApiUser, factory: Factory
) -> None:
    """A rule that only attaches found no incident to join, so the probe's alert waited on
    none; the probe repeated only once an incident it had joined was over, so it never
    joined the incident a person opened on its service afterwards."""
    factory.service("checkout")
    rule = {
        "name": "probes-only-join",
        "matchers": [{"label": "alertname", "op": "=", "value": "ProbeDown"}],
        "action": "attach",
    }
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    closed_port_probe(admin, "checkout-db", service="checkout")
    with FrozenClock(T0) as clock:
        assert run(admin, "checkout-db")["state"] == "down"
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.routing_action, alert.incident_id) == ("attach", None)
        clock.advance(minutes=1)
        run(admin, "checkout-db")  # the repeat tries again: still nothing to join
        assert incident_count(factory.runtime) == 0

        ref = factory.incident(title="Checkout errors", services=["checkout"])
        clock.advance(minutes=1)
        again = run(admin, "checkout-db")
        assert (again["state"], again["state_changed"]) == ("down", False)
        [incident] = _incident_list(admin)
        assert incident["ref"] == ref
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.status, alert.starts_at) == ("firing", T0)
        [shown] = [a for a in admin.get("/api/v1/alerts").json() if a["id"] == alert.id]
        assert shown["incident"] == ref

        # On an active incident now, it says nothing more.
        clock.advance(minutes=1)
        run(admin, "checkout-db")
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").count == alert.count


def test_a_probe_silenced_once_its_incident_ended_is_not_repeated_and_routes_when_unmuted(
    admin: ApiUser, factory: Factory
) -> None:
    """A down probe whose incident a person ended under a silence said it again at every
    run: each repeat wrote its alert again (its count grew) and routed nothing, the silence
    holding it. It says it once, which finds the silence; the job that routes what a mute
    held opens the next incident once the silence is over."""
    factory.service("checkout")
    closed_port_probe(admin, "checkout-db", service="checkout")
    with FrozenClock(T0) as clock:
        assert run(admin, "checkout-db")["state"] == "down"
        [first] = _incident_list(admin)
        silence = {
            "matchers": [{"label": "probe", "op": "=", "value": "checkout-db"}],
            "duration_seconds": 3600,
        }
        silenced = admin.post("/api/v1/silences", json=silence)
        assert silenced.status_code == 201, silenced.text
        ended = admin.patch(f"/api/v1/incidents/{first['ref']}", json={"status": "resolved"})
        assert ended.status_code == 200, ended.text

        clock.advance(minutes=1)
        run(admin, "checkout-db")  # said again: it finds the silence
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.silenced, alert.count) == (True, 2)
        for _ in range(3):
            clock.advance(minutes=1)
            assert run(admin, "checkout-db")["state"] == "down"
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").count == 2
        assert len(_incident_list(admin)) == 1

        expired = admin.post(f"/api/v1/silences/{silenced.json()['id']}/expire")
        assert expired.status_code == 200, expired.text
        clock.advance(minutes=1)
        settle_held_alerts(factory.runtime)
        second, _ = _incident_list(admin)
        assert (second["status"], second["services"]) == ("triage", ["checkout"])
        assert second["source"] == "probe"  # as the probe's own signal opens one
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-db")
        assert (alert.silenced, alert.incident_id) == (False, int(second["ref"][4:]))

        # On an active incident now, it says nothing more.
        clock.advance(minutes=1)
        run(admin, "checkout-db")
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-db").count == 2


def test_a_probe_flapping_once_its_incident_ended_is_not_repeated_and_routes_once_settled(
    admin: ApiUser, factory: Factory, web: _Server
) -> None:
    """A probe going down and up often enough to flap (the @probes integration's defaults:
    5 changes in 10 minutes), down again once a person ended its incident, said it again at
    every run: each repeat wrote its alert again (its count grew) and routed nothing, the
    flapping holding it. It says nothing more; the job that routes what flapping held opens
    the next incident once a whole window passes with no change."""
    factory.service("checkout")
    created = admin.post(
        "/api/v1/probes",
        json={
            "name": "checkout-api",
            "kind": "http",
            "service": "checkout",
            "failure_threshold": 1,
            "success_threshold": 1,
            "http": {"url": f"{web.url}/toggle"},
        },
    )
    assert created.status_code == 201, created.text
    with FrozenClock(T0) as clock:
        for status in (500, 200, 500, 200, 500, 200, 500):  # down first: 6 changes after
            web.toggle_status = status
            run(admin, "checkout-api")
            clock.advance(seconds=30)
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-api")
        assert (alert.status, alert.flapping) == ("firing", True)
        [first] = _incident_list(admin)
        ended = admin.patch(f"/api/v1/incidents/{first['ref']}", json={"status": "resolved"})
        assert ended.status_code == 200, ended.text
        count = alert.count

        for _ in range(3):
            clock.advance(minutes=1)
            assert run(admin, "checkout-api")["state"] == "down"
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-api")
        assert (alert.flapping, alert.count) == (True, count)
        assert len(_incident_list(admin)) == 1

        clock.advance(minutes=10)  # a whole window with no change: flapping settles
        settle_held_alerts(factory.runtime)
        second, _ = _incident_list(admin)
        assert (second["status"], second["services"]) == ("triage", ["checkout"])
        alert = alert_by_fingerprint(factory.runtime, "probe:checkout-api")
        assert (alert.flapping, alert.incident_id) == (False, int(second["ref"][4:]))

        # On an active incident now, it says nothing more.
        clock.advance(minutes=1)
        run(admin, "checkout-api")
        assert alert_by_fingerprint(factory.runtime, "probe:checkout-api").count == count


def _incident_list(user: ApiUser) -> list[dict[str, Any]]:
    """Every incident, newest first."""
    answer = user.get("/api/v1/incidents")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_pausing_or_deleting_a_down_probe_resolves_its_signal(
    admin: ApiUser, factory: Factory
) -> None:
    for name in ("paused", "deleted"):
        closed_port_probe(admin, name)
        assert run(admin, name)["state"] == "down"
    paused = admin.patch("/api/v1/probes/paused", json={"enabled": False}).json()
    assert paused["state"] == "unknown"
    assert alert_by_fingerprint(factory.runtime, "probe:paused").status == "resolved"
    by_hand = run(admin, "paused")  # stored, but a paused probe's state does not move
    assert (by_hand["ok"], by_hand["state"], by_hand["state_changed"]) == (False, "unknown", False)
    assert alert_by_fingerprint(factory.runtime, "probe:paused").status == "resolved"
    assert len(admin.get("/api/v1/probes/paused/results").json()) == 2
    assert admin.delete("/api/v1/probes/deleted").status_code == 204
    assert alert_by_fingerprint(factory.runtime, "probe:deleted").status == "resolved"


def _jobs(factory: Factory, kind: str) -> list[Job]:
    with factory.runtime.read() as session:
        return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def _results(factory: Factory) -> int:
    with factory.runtime.read() as session:
        return int(session.scalar(select(func.count()).select_from(ProbeResult)) or 0)


def test_the_worker_runs_due_probes_on_their_interval(
    admin: ApiUser, factory: Factory, web: _Server
) -> None:
    start = datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC)
    with FrozenClock(start) as clock:
        admin.post(
            "/api/v1/probes",
            json={"name": "every-10s", "kind": "http", "interval_seconds": 10,
                  "http": {"url": f"{web.url}/ok"}},
        )  # fmt: skip
        admin.post(
            "/api/v1/probes",
            json={"name": "hourly", "kind": "http", "interval_seconds": 3600,
                  "http": {"url": f"{web.url}/text"}},
        )  # fmt: skip
        worker = Worker(factory.runtime.database, factory.runtime.jobs, factory.runtime.bus)
        worker.sync_schedules()

        def drain() -> None:
            while worker.run_once():
                pass

        clock.advance(seconds=5)
        drain()
        assert _results(factory) == 2  # both ran in their first slot
        assert [j.status for j in _jobs(factory, probes.RUN_KIND)] == ["succeeded"] * 2
        for _ in range(6):  # one minute in 10 s steps
            clock.advance(seconds=10)
            drain()
        with factory.runtime.read() as session:
            every = probes.get_probe(session, "every-10s")
            hourly = probes.get_probe(session, "hourly")
            counts = {p.name: len(probes.list_results(session, p)) for p in (every, hourly)}
            assert every.state == "up" and every.last_ok is True
        assert counts == {"every-10s": 7, "hourly": 1}
        runs = _jobs(factory, probes.RUN_KIND)
        assert len({j.idempotency_key for j in runs}) == len(runs) == 8
        assert web.hits.count("/ok") == 7

        # A worker that was away for five minutes runs the probe once, not 30 times over.
        clock.advance(minutes=5)
        drain()
        assert web.hits.count("/ok") == 8

        # Paused after its run was queued: the run is dropped without a check, and the
        # dispatcher queues no more.
        clock.advance(seconds=10)
        assert worker.run_once() == 1  # the dispatcher, which queues the run
        queued = _jobs(factory, probes.RUN_KIND)[-1]
        assert queued.status == "queued"
        admin.patch("/api/v1/probes/every-10s", json={"enabled": False})
        drain()
        clock.advance(seconds=30)
        drain()
        assert web.hits.count("/ok") == 8
        assert _jobs(factory, probes.RUN_KIND)[-1].id == queued.id


def test_a_run_of_a_redefined_probe_is_not_recorded(admin: ApiUser, factory: Factory) -> None:
    with http_target() as web:
        admin.post(
            "/api/v1/probes",
            json={"name": "moving", "kind": "http", "http": {"url": f"{web.url}/ok"}},
        )
        with factory.runtime.read() as session:
            spec = probes.run_spec(session, "moving")
        outcome = run_check(spec.kind, spec.settings, spec.timeout_seconds)
        admin.put(
            "/api/v1/probes/moving",
            json={"name": "moving", "kind": "http", "http": {"url": f"{web.url}/text"}},
        )
        with factory.runtime.transaction() as session:
            assert probes.record_result(session, spec, outcome) is None
    assert _results(factory) == 0


def test_credentials_in_a_probe_url_are_shown_to_admins_only(
    admin: ApiUser, factory: Factory, web: _Server, client: TestClient
) -> None:
    """``https://user:password@host/`` is how many health endpoints take basic auth: like a
    header value, the userinfo is hidden from viewers, and kept out of the alert and the
    incident, whose readers and notifications reach further than the probe's admins."""
    factory.service("billing")
    viewer = factory.user(Role.viewer, password=PASSWORD)
    url = web.url.replace("http://", "http://bob:s3cret@") + "/status/500"
    created = admin.post(
        "/api/v1/probes",
        json={"name": "billing-api", "kind": "http", "service": "billing",
              "failure_threshold": 1, "http": {"url": url}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["http"]["url"] == url  # the admin sees what they wrote
    assert run(admin, "billing-api")["state"] == "down"

    hidden = web.url.replace("http://", "http://<redacted>@") + "/status/500"
    assert viewer.get("/api/v1/probes/billing-api").json()["http"]["url"] == hidden
    assert viewer.get("/api/v1/probes").json()[0]["http"]["url"] == hidden
    alert = alert_by_fingerprint(factory.runtime, "probe:billing-api")
    assert alert.annotations["target"] == f"GET {hidden}"
    assert "s3cret" not in viewer.get("/api/v1/alerts").text
    incident = viewer.get("/api/v1/incidents", params={"service": "billing"}).json()["items"][0]
    assert "s3cret" not in viewer.get(f"/api/v1/incidents/{incident['ref']}/timeline").text
    assert login(client, viewer.email, PASSWORD).status_code == 303
    for page in ("/probes", "/probes/billing-api"):
        shown = client.get(page)
        assert shown.status_code == 200 and "s3cret" not in shown.text, page


def test_a_run_recorded_after_a_later_one_does_not_move_the_state(
    admin: ApiUser, factory: Factory
) -> None:
    """Two workers (or a run by hand) can finish runs out of order: a slow run that timed out
    is recorded after a later one that passed. The older outcome is stored, but the state
    follows the latest check, not the last to commit."""
    created = admin.post(
        "/api/v1/probes",
        json={"name": "db", "kind": "tcp", "failure_threshold": 1,
              "tcp": {"host": "127.0.0.1", "port": 9}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    with factory.runtime.read() as session:
        spec = probes.run_spec(session, "db")
    slow = CheckOutcome(
        datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC), False, 10_000.0, error="timed out"
    )
    fast = CheckOutcome(datetime(2026, 3, 1, 9, 0, 10, tzinfo=UTC), True, 3.0)
    with factory.runtime.transaction() as session:
        recorded = probes.record_result(session, spec, fast)
        assert recorded is not None and recorded.probe.state == "up"
    with factory.runtime.transaction() as session:
        late = probes.record_result(session, spec, slow)
        assert late is not None and not late.state_changed
    shown = admin.get("/api/v1/probes/db").json()
    assert (shown["state"], shown["last_ok"], shown["consecutive_failures"]) == ("up", True, 0)
    assert len(admin.get("/api/v1/probes/db/results").json()) == 2
    assert admin.get("/api/v1/alerts").json() == []  # it never went down
