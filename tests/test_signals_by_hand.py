"""People acknowledge and resolve alerts by hand (``POST /api/v1/alerts/{id}/acknowledge``,
``/resolve``): the alert records who, and a resolve clears an incident as a sender's would."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.incidents.models import Incident
from firetower.runtime import Runtime
from tests.factories import ApiUser, Factory
from tests.signals_support import (
    alert_by_fingerprint,
    firing_alert,
    matcher,
    send_batch,
    status_changes_and_notes,
)


def _key(admin: ApiUser, name: str = "prom", service: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "kind": "alertmanager"}
    if service:
        body["service_name"] = service
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _auto_resolving_key(factory: Factory) -> str:
    """The key of an integration of service api whose alerts' incident resolves once they
    have all cleared (a rule with ``on_clear: resolve``)."""
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, service="api")
    rule = {"name": "auto-resolve", "on_clear": "resolve"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    return key


def _resolved(fingerprint: str, **labels: str) -> dict[str, Any]:
    return {**firing_alert(fingerprint, **labels), "status": "resolved"}


def _incidents(runtime: Runtime) -> list[Incident]:
    with runtime.read() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def test_a_report_of_no_known_service_is_resolved_by_hand_and_says_who(
    factory: Factory, runtime: Runtime
) -> None:
    viewer = factory.user(Role.viewer)
    report = viewer.post("/api/v1/reports", json={"what": "The wiki is slow", "where": "wiki?"})
    assert report.status_code == 201, report.text
    alert_id = report.json()["id"]
    responder = factory.user(Role.responder)

    answer = responder.post(f"/api/v1/alerts/{alert_id}/resolve")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"]) == (alert_id, "resolved")
    assert body["status_by"] == responder.email
    assert body["count"] == 1  # a person's act is not a signal received
    [listed] = responder.get("/api/v1/alerts", params={"status": "resolved"}).json()
    assert (listed["id"], listed["status_by"]) == (alert_id, responder.email)
    assert responder.get("/api/v1/alerts", params={"status": "firing"}).json() == []


def test_resolving_the_last_alert_by_hand_lets_the_rule_resolve_the_incident(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, service="api")
    rule = {
        "name": "auto-resolve",
        "matchers": [matcher("team", "=", "api")],
        "on_clear": "resolve",
    }
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    send_batch(factory, key, firing_alert("a1", team="api"), firing_alert("a2", team="api"))
    [incident] = _incidents(runtime)
    send_batch(factory, key, _resolved("a1", team="api"))  # the sender resolves one
    a2 = alert_by_fingerprint(runtime, "a2")
    responder = factory.user(Role.responder)

    answer = responder.post(f"/api/v1/alerts/{a2.id}/resolve")

    assert answer.status_code == 200, answer.text
    [incident] = _incidents(runtime)
    assert incident.status == "resolved"
    *_, note, change = status_changes_and_notes(runtime, incident.id)
    assert note.text == f"Alert {a2.id} from prom resolved by hand: HighErrorRate"
    assert note.actor == responder.email
    assert change.after == {"status": "resolved"}
    assert "auto-resolve" in change.text and "all 2 alerts" in change.text
    assert change.actor == responder.email


def test_resolving_one_of_several_alerts_by_hand_leaves_the_incident_open(
    factory: Factory, runtime: Runtime
) -> None:
    key = _auto_resolving_key(factory)
    send_batch(factory, key, firing_alert("b1"), firing_alert("b2"))
    b1 = alert_by_fingerprint(runtime, "b1")

    answer = factory.user(Role.responder).post(f"/api/v1/alerts/{b1.id}/resolve")

    assert answer.status_code == 200, answer.text
    [incident] = _incidents(runtime)
    assert incident.status == "triage"  # b2 still fires


def test_with_on_clear_note_a_resolve_by_hand_notes_that_the_alerts_cleared(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, service="api")
    send_batch(factory, key, firing_alert("n1"))
    n1 = alert_by_fingerprint(runtime, "n1")

    assert factory.user(Role.responder).post(f"/api/v1/alerts/{n1.id}/resolve").status_code == 200

    [incident] = _incidents(runtime)
    assert incident.status == "triage"
    assert status_changes_and_notes(runtime, incident.id)[-1].text == (
        "The 1 alert attached to this incident has resolved."
    )


def test_a_later_firing_from_the_sender_fires_a_resolved_alert_again(
    factory: Factory, runtime: Runtime
) -> None:
    key = _auto_resolving_key(factory)
    send_batch(factory, key, firing_alert("f1"))
    f1 = alert_by_fingerprint(runtime, "f1")
    assert factory.user(Role.responder).post(f"/api/v1/alerts/{f1.id}/resolve").status_code == 200
    [first] = _incidents(runtime)
    assert first.status == "resolved"

    send_batch(factory, key, firing_alert("f1"))  # the problem is back

    again = alert_by_fingerprint(runtime, "f1")
    assert (again.status, again.status_by) == ("firing", None)
    first, second = _incidents(runtime)
    assert again.incident_id == second.id and second.status == "triage"


def test_an_acknowledge_by_hand_holds_through_repeats_until_the_sender_resolves(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin)
    send_batch(factory, key, firing_alert("k1"))
    k1 = alert_by_fingerprint(runtime, "k1")
    responder = factory.user(Role.responder)

    answer = responder.post(f"/api/v1/alerts/{k1.id}/acknowledge")

    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["status_by"]) == (
        "acknowledged",
        responder.email,
    )
    send_batch(factory, key, firing_alert("k1"))
    repeated = alert_by_fingerprint(runtime, "k1")
    assert (repeated.status, repeated.status_by, repeated.count) == (
        "acknowledged",
        responder.email,
        2,
    )
    send_batch(factory, key, _resolved("k1"))
    assert (alert_by_fingerprint(runtime, "k1").status_by) is None


def test_asking_for_the_status_an_alert_has_changes_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, service="api")
    send_batch(factory, key, firing_alert("s1"))
    s1 = alert_by_fingerprint(runtime, "s1")
    first, second = factory.user(Role.responder), factory.user(Role.responder)
    assert first.post(f"/api/v1/alerts/{s1.id}/acknowledge").status_code == 200
    assert first.post(f"/api/v1/alerts/{s1.id}/resolve").status_code == 200
    before = alert_by_fingerprint(runtime, "s1")
    [incident] = _incidents(runtime)
    entries = len(status_changes_and_notes(runtime, incident.id))

    again = second.post(f"/api/v1/alerts/{s1.id}/resolve")

    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["status_by"]) == ("resolved", first.email)
    after = alert_by_fingerprint(runtime, "s1")
    assert (after.ends_at, after.state_changes) == (before.ends_at, before.state_changes)
    assert len(status_changes_and_notes(runtime, incident.id)) == entries


def test_acknowledging_a_resolved_alert_is_refused_and_changes_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _key(admin)
    send_batch(factory, key, firing_alert("r1"))
    send_batch(factory, key, _resolved("r1"))
    r1 = alert_by_fingerprint(runtime, "r1")

    answer = factory.user(Role.responder).post(f"/api/v1/alerts/{r1.id}/acknowledge")

    assert answer.status_code == 409, answer.text
    assert answer.json()["field"] == "id"
    assert f"alert {r1.id} is resolved" in answer.json()["detail"]
    after = alert_by_fingerprint(runtime, "r1")
    assert (after.status, after.status_by) == ("resolved", None)


def test_an_unknown_alert_is_a_404_naming_it(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    for action in ("acknowledge", "resolve"):
        for alert_id in (4242, 2**31, 0):
            answer = responder.post(f"/api/v1/alerts/{alert_id}/{action}")
            assert answer.status_code == 404, answer.text
            assert answer.json()["field"] == "id"
            assert answer.json()["detail"] == f"no alert {alert_id}"


def test_viewers_may_not_acknowledge_or_resolve(factory: Factory, runtime: Runtime) -> None:
    viewer = factory.user(Role.viewer)
    alert_id = viewer.post("/api/v1/reports", json={"what": "Broken"}).json()["id"]
    for action in ("acknowledge", "resolve"):
        assert viewer.post(f"/api/v1/alerts/{alert_id}/{action}").status_code == 403
    assert factory.client.post(f"/api/v1/alerts/{alert_id}/resolve").status_code == 401
    listed = factory.user(Role.responder).get("/api/v1/alerts").json()
    assert [(a["status"], a["status_by"]) for a in listed] == [("firing", None)]


def test_resolving_a_report_by_hand_leaves_the_incident_it_opened_to_people(
    factory: Factory, runtime: Runtime
) -> None:
    """A report never counts towards an incident's alerts having cleared, by hand either:
    the incident a report opened was resolved "by routing rules (on_clear: resolve): all
    0 alerts ... have resolved" as soon as someone resolved the report."""
    factory.service("checkout")
    viewer = factory.user(Role.viewer)
    report = viewer.post("/api/v1/reports", json={"what": "Pay fails", "where": "checkout"})
    assert report.status_code == 201, report.text
    [incident] = _incidents(runtime)
    responder = factory.user(Role.responder)

    answer = responder.post(f"/api/v1/alerts/{report.json()['id']}/resolve")

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "resolved"
    [incident] = _incidents(runtime)
    assert incident.status == "triage"
    [note] = [
        e for e in status_changes_and_notes(runtime, incident.id) if e.kind != "status_changed"
    ]
    assert (
        note.text == f"Alert {report.json()['id']} from @user-reports resolved by hand: Pay fails"
    )
