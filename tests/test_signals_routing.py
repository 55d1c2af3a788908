"""Routing rules: ordered, first match wins unless ``continue``; open, attach, notify, drop;
resolve or note when an incident's alerts clear; the test endpoint; firetower.yaml."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.incidents.models import Incident
from firetower.jobs import Job, Worker
from firetower.runtime import Runtime
from firetower.settings import Settings
from firetower.signals import service as signals_service
from firetower.signals.service import NOTIFY_KIND
from tests.factories import ApiUser, Factory, row_counts
from tests.probe_servers import closed_port
from tests.signals_support import (
    alert_by_fingerprint,
    incident_count,
    matcher,
    send_batch,
    sql_run,
    sqlite_plan,
    status_changes_and_notes,
)
from tests.test_web_signals import sign_in


def _key(admin: ApiUser, name: str, service: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "kind": "alertmanager"}
    if service:
        body["service_name"] = service
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", **labels},
        "annotations": {"summary": f"alert {fingerprint}"},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T10:05:00Z",
        "fingerprint": fingerprint,
    }


def _rule(admin: ApiUser, name: str, **fields: Any) -> Any:
    answer = admin.post("/api/v1/routing-rules", json={"name": name, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _names(admin: ApiUser) -> list[str]:
    rules = admin.get("/api/v1/routing-rules").json()
    assert [r["position"] for r in rules] == list(range(len(rules)))
    return [r["name"] for r in rules]


def _alert_read(admin: ApiUser, fingerprint: str) -> dict[str, Any]:
    [found] = [a for a in admin.get("/api/v1/alerts").json() if a["fingerprint"] == fingerprint]
    return dict(found)


def _send_pagerduty(admin: ApiUser, key: str, action: str, dedup_key: str) -> None:
    """One Events v2 event for service api's alert ``dedup_key``, accepted."""
    body: dict[str, Any] = {"routing_key": key, "event_action": action, "dedup_key": dedup_key}
    if action == "trigger":
        body["payload"] = {"summary": f"{dedup_key} down", "source": "api", "severity": "error"}
    sent = admin.client.post("/v2/enqueue", json=body)
    assert sent.status_code == 202, sent.text


def _incidents(runtime: Runtime) -> list[Incident]:
    with runtime.read() as session:
        found = list(session.scalars(select(Incident).order_by(Incident.id)))
        for incident in found:
            _ = incident.services
        return found


def _jobs(runtime: Runtime) -> list[Job]:
    with runtime.read() as session:
        return list(session.scalars(select(Job).where(Job.kind == NOTIFY_KIND).order_by(Job.id)))


SEVERITY_MAP = {"label": "severity", "values": {"critical": "SEV1", "warning": "SEV3"}}


# -- the rule list -------------------------------------------------------------------------------
def test_rules_are_kept_in_order_and_can_be_moved(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    for name in ("a", "b", "c"):
        _rule(admin, name)
    _rule(admin, "first", position=0, matchers=[matcher("team", "=", "db")], service="db")
    assert _names(admin) == ["first", "a", "b", "c"]
    _rule(admin, "far", position=99)
    assert _names(admin) == ["first", "a", "b", "c", "far"]

    moved = admin.put(
        "/api/v1/routing-rules/c", json={"name": "c", "action": "attach", "position": 0}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["action"] == "attach" and moved.json()["position"] == 0
    assert _names(admin) == ["c", "first", "a", "b", "far"]
    renamed = admin.put("/api/v1/routing-rules/b", json={"name": "bee", "continue": True})
    assert renamed.json()["continue"] is True and renamed.json()["position"] == 3
    assert _names(admin) == ["c", "first", "a", "bee", "far"]

    one = admin.get("/api/v1/routing-rules/first").json()
    assert one["matchers"] == [matcher("team", "=", "db")]
    assert one["service"] == "db" and one["action"] == "open" and one["on_clear"] == "note"
    assert admin.delete("/api/v1/routing-rules/first").status_code == 204
    assert _names(admin) == ["c", "a", "bee", "far"]

    created_a = admin.get("/api/v1/routing-rules/a").json()["created_at"]
    whole = admin.put(
        "/api/v1/routing-rules",
        json={"rules": [{"name": "far"}, {"name": "a", "action": "drop"}, {"name": "new"}]},
    )
    assert whole.status_code == 200, whole.text
    assert [r["name"] for r in whole.json()] == ["far", "a", "new"]
    assert _names(admin) == ["far", "a", "new"]
    after = admin.get("/api/v1/routing-rules/a").json()
    assert after["created_at"] == created_a and after["action"] == "drop"

    for method in (admin.get, admin.delete):
        assert method("/api/v1/routing-rules/nope").status_code == 404
    assert admin.put("/api/v1/routing-rules/nope", json={"name": "nope"}).status_code == 404
    responder = factory.user(Role.responder)
    assert responder.post("/api/v1/routing-rules", json={"name": "x"}).status_code == 403
    assert responder.get("/api/v1/routing-rules").status_code == 403


# -- the test endpoint ---------------------------------------------------------------------------
def test_the_test_endpoint_walks_the_rules_in_order(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    for name in ("db", "web", "checkout"):
        factory.service(name)
    _key(admin, "prom", "checkout")
    _key(admin, "grafana")
    _rule(
        admin,
        "page-critical",
        matchers=[matcher("severity", "=", "critical")],
        action="notify",
        **{"continue": True},
    )
    _rule(
        admin,
        "db-team",
        matchers=[matcher("team", "=", "db")],
        service="db",
        severity_map=SEVERITY_MAP,
        on_clear="resolve",
    )
    _rule(admin, "staging", matchers=[matcher("env", "=~", "stag.*")], action="drop")
    _rule(
        admin,
        "from-grafana",
        matchers=[matcher("@integration", "=", "grafana")],
        service="web",
        severity="SEV4",
        action="attach",
    )
    responder = factory.user(Role.responder)
    before = row_counts(runtime)

    def test(labels: dict[str, str], integration: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"labels": labels}
        if integration:
            body["integration"] = integration
        answer = responder.post("/api/v1/routing-rules/test", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    # notify (continue) then the db rule decides: first match wins after that.
    assert test({"severity": "critical", "team": "db", "env": "staging"}) == {
        "matched": ["page-critical", "db-team"],
        "decided_by": "db-team",
        "action": "open",
        "notify": ["page-critical"],
        "service": "db",
        "severity": "SEV1",
        "on_clear": "resolve",
        "outcome": "opens an incident on db",
    }
    # a value the map does not list sets nothing: the alert's own severity stays.
    assert test({"severity": "info", "team": "db"})["severity"] == "SEV4"
    assert test({"team": "db", "severity": "warning"})["severity"] == "SEV3"
    # a drop mutes the notify rule that matched before it
    assert test({"severity": "critical", "env": "staging"}) == {
        "matched": ["page-critical", "staging"],
        "decided_by": "staging",
        "action": "drop",
        "notify": [],
        "service": None,
        "severity": "SEV1",
        "on_clear": "note",
        "outcome": "dropped: the alert is stored and counted, and nothing else happens",
    }
    # only a notify rule matched: notify, no incident
    only_notify = test({"severity": "critical"}, "prom")
    assert only_notify["action"] == "notify" and only_notify["decided_by"] == "page-critical"
    assert only_notify["service"] == "checkout"  # the integration's, as at intake
    assert only_notify["outcome"] == "notified only: the alert joins no incident"
    # the integration name is matchable; its rule sets service and severity
    graf = test({"alertname": "x"}, "grafana")
    assert (graf["decided_by"], graf["action"], graf["service"], graf["severity"]) == (
        "from-grafana",
        "attach",
        "web",
        "SEV4",
    )
    # nothing matches: today's routing (open on the alert's own service)
    assert test({"service": "web"}) == {
        "matched": [],
        "decided_by": None,
        "action": "open",
        "notify": [],
        "service": "web",
        "severity": "SEV3",
        "on_clear": "note",
        "outcome": "opens an incident on web",
    }
    assert row_counts(runtime) == before  # nothing stored
    viewer = factory.user(Role.viewer)
    assert viewer.post("/api/v1/routing-rules/test", json={"labels": {}}).status_code == 403


def test_the_test_endpoint_says_what_routing_would_do_now(
    factory: Factory, runtime: Runtime
) -> None:
    """``action: open`` alone hid that an alert of no known service opens nothing, and
    whether it would join an incident already open."""
    admin = factory.user(Role.admin)
    factory.service("web")
    factory.service("db")
    _key(admin, "graf")  # an integration with no service
    _rule(admin, "db-attach", matchers=[matcher("team", "=", "db")], service="db", action="attach")

    def outcome(labels: dict[str, str], integration: str | None = None) -> tuple[str, str]:
        body: dict[str, Any] = {"labels": labels}
        if integration:
            body["integration"] = integration
        answer = admin.post("/api/v1/routing-rules/test", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["action"], answer.json()["outcome"]

    assert outcome({"alertname": "Nowhere", "service": "ghost"}, "graf") == (
        "open",
        "opens nothing: no known service (service 'ghost' is not in the catalog); a rule that "
        "sets a service, or a service label the catalog knows, routes it",
    )
    assert outcome({"alertname": "Nowhere"}, "graf") == (
        "open",
        "opens nothing: no known service; a rule that sets a service, or a service label "
        "the catalog knows, routes it",
    )
    assert outcome({"service": "web"}, "graf") == ("open", "opens an incident on web")
    assert outcome({"team": "db"}) == (
        "attach",
        "waits: db has no active incident to join (attach never opens one); each repeat tries "
        "again",
    )
    declared = admin.post(
        "/api/v1/incidents", json={"title": "db slow", "severity": "SEV2", "services": ["db"]}
    )
    assert declared.status_code == 201, declared.text
    ref = declared.json()["ref"]
    assert outcome({"team": "db"}) == ("attach", f"joins {ref}, the active incident of db")
    before = row_counts(runtime)
    outcome({"service": "web"})
    assert row_counts(runtime) == before


def test_the_test_endpoint_refuses_an_unknown_integration_and_knows_built_in_ones(
    factory: Factory, runtime: Runtime
) -> None:
    from firetower.signals import service as signals

    admin = factory.user(Role.admin)
    _rule(
        admin, "probes-notify", matchers=[matcher("@integration", "=", "@probes")], action="notify"
    )
    before = row_counts(runtime)
    answer = admin.post("/api/v1/routing-rules/test", json={"labels": {}, "integration": "nosuch"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "integration"
    assert "no integration named 'nosuch'" in answer.json()["detail"]
    assert row_counts(runtime) == before
    with runtime.transaction() as session:
        signals.builtin_integration(session, "@probes", "probe")
    probes = admin.post("/api/v1/routing-rules/test", json={"labels": {}, "integration": "@probes"})
    assert probes.status_code == 200, probes.text
    assert probes.json()["decided_by"] == "probes-notify"


def test_the_test_endpoint_routes_a_pagerduty_payload_as_v2_enqueue_does(
    factory: Factory, runtime: Runtime
) -> None:
    """The same Events v2 trigger, tried and then sent: the route test's answer is what
    intake did with it (labels from the payload, the integration's own service)."""
    admin = factory.user(Role.admin)
    factory.service("api")
    factory.service("db")
    body = {"name": "pd", "kind": "pagerduty", "service_name": "api"}
    key = admin.post("/api/v1/integrations", json=body).json()["key"]
    _rule(
        admin,
        "page-critical",
        matchers=[matcher("severity", "=", "critical")],
        action="notify",
        **{"continue": True},
    )
    _rule(admin, "postgres", matchers=[matcher("component", "=", "postgres")], service="db")
    _rule(admin, "db-class", matchers=[matcher("class", "=", "db")], severity="SEV4")
    payload = {
        "summary": "Replication lag over 30s",
        "source": "db-1",
        "severity": "critical",
        "component": "postgres",
        "group": "prod",
        "class": "db",
        "custom_details": {"lag_seconds": 42},
    }
    tried = admin.post(
        "/api/v1/routing-rules/test", json={"integration": "pd", "pagerduty": payload}
    )
    assert tried.status_code == 200, tried.text

    event = {"routing_key": key, "event_action": "trigger", "dedup_key": "lag", "payload": payload}
    assert admin.client.post("/v2/enqueue", json=event).status_code == 202
    routed = alert_by_fingerprint(runtime, "lag")

    predicted = tried.json()
    assert predicted["matched"] == ["page-critical", "postgres"]
    assert (predicted["decided_by"], predicted["action"]) == (
        routed.routed_by,
        routed.routing_action,
    )
    assert (predicted["service"], predicted["severity"]) == (routed.service_name, routed.severity)
    assert (routed.service_name, routed.severity) == ("db", "SEV1")
    [job] = _jobs(runtime)
    assert predicted["notify"] == [job.payload["rule"]]
    # An Events v2 alert never names its service: the integration's is its own.
    bare = admin.post(
        "/api/v1/routing-rules/test",
        json={"integration": "pd", "labels": {"source": "x", "service": "db"}},
    )
    assert bare.json()["service"] == "api"  # intake never reads a service from the event


def test_the_test_endpoint_refuses_a_pagerduty_payload_it_cannot_route(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    admin.post("/api/v1/integrations", json={"name": "am", "kind": "alertmanager"})
    payload = {"summary": "Down", "source": "web-1", "severity": "error"}
    before = row_counts(runtime)
    for body, field in (
        ({"integration": "am", "pagerduty": payload}, "pagerduty"),
        ({"labels": {"a": "b"}, "pagerduty": payload}, "pagerduty"),
        ({"pagerduty": {**payload, "severity": "fatal"}}, "pagerduty.severity"),
    ):
        answer = admin.post("/api/v1/routing-rules/test", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field, answer.text
    assert (
        admin.post("/api/v1/routing-rules/test", json={"pagerduty": payload}).json()["severity"]
        == "SEV2"
    )
    assert row_counts(runtime) == before


def test_built_in_integrations_are_known_before_their_first_signal(
    factory: Factory, runtime: Runtime, client: TestClient
) -> None:
    """A team writes its rule for user reports before the first report arrives."""
    admin = factory.user(Role.admin)
    _rule(
        admin,
        "reports-notify",
        matchers=[matcher("@integration", "=", "@user-reports")],
        action="notify",
    )
    viewer = sign_in(factory, client, Role.viewer)
    before = row_counts(runtime)
    for name in ("@user-reports", "@probes", "@slos"):
        tried = admin.post("/api/v1/routing-rules/test", json={"labels": {}, "integration": name})
        assert tried.status_code == 200, tried.text
        expected = "reports-notify" if name == "@user-reports" else None
        assert tried.json()["decided_by"] == expected
        for path in ("/api/v1/alerts", "/api/v1/alert-groups", "/api/v1/change-events"):
            listed = admin.get(path, params={"integration": name})
            assert listed.status_code == 200, (path, listed.text)
            assert listed.json() == []
    for page in ("/alerts/groups", "/alerts", "/changes"):
        shown = viewer.get(page, params={"integration": "@user-reports"})
        assert shown.status_code == 200, (page, shown.text)
    assert row_counts(runtime) == before  # nothing made by asking


def test_the_test_endpoint_reads_the_severity_as_the_integrations_intake_does(
    factory: Factory, runtime: Runtime
) -> None:
    """A generic mapping may give SEV1..SEV4; a probe's alert has its probe's severity, an
    SLO's its level's, a report SEV3: the answer is the severity intake stores."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    mapping = {"title": "t", "severity": "s"}
    body = {"name": "bot", "kind": "generic", "service_name": "checkout", "mapping": mapping}
    key = admin.post("/api/v1/integrations", json=body).json()["key"]
    probe = {"name": "health", "kind": "tcp", "service": "checkout", "severity": "SEV1"}
    probe |= {"failure_threshold": 1, "tcp": {"host": "127.0.0.1", "port": closed_port()}}
    assert admin.post("/api/v1/probes", json=probe).status_code == 201
    assert admin.post("/api/v1/probes/health/run").json()["state"] == "down"

    def tested(labels: dict[str, Any], integration: str) -> str:
        body = {"labels": labels, "integration": integration}
        answer = admin.post("/api/v1/routing-rules/test", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["severity"])

    for sent in ("SEV1", "critical", "warning"):
        ingested = factory.client.post(f"/ingest/generic/{key}", json={"t": sent, "s": sent})
        stored = _alert_read(admin, ingested.json()["dedup_key"])
        assert tested(stored["labels"], "bot") == stored["severity"], sent
    assert tested({"s": "SEV1"}, "bot") == "SEV3"  # no severity label: the default
    stored = _alert_read(admin, "probe:health")
    assert (stored["severity"], tested(stored["labels"], "@probes")) == ("SEV1", "SEV1")
    assert tested({"probe": "never-defined"}, "@probes") == "SEV2"  # a new probe's default
    assert tested({"level": "page", "severity": "SEV4"}, "@slos") == "SEV2"
    assert tested({"level": "ticket"}, "@slos") == "SEV4"
    assert tested({"severity": "critical"}, "@user-reports") == "SEV3"
    _key(admin, "prom")
    assert tested({"severity": "SEV1"}, "prom") == "SEV3"  # Alertmanager's words only


def test_every_app_tells_the_route_test_how_probes_and_slos_set_their_severity(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers are registered where the app is assembled, not as a side effect of some
    import: a process whose imports never ran them (a fresh registry) still answers with the
    probe's and the level's severity, not the Alertmanager reading of the labels."""
    fresh = {
        name: reader
        for name, reader in signals_service._BUILTIN_SEVERITIES.items()
        if name not in (signals_service.PROBE_INTEGRATION, signals_service.SLO_INTEGRATION)
    }
    monkeypatch.setattr(signals_service, "_BUILTIN_SEVERITIES", fresh)
    app = create_app(settings, database=database, start_worker=False, configure_logs=False)
    with TestClient(app) as client:
        factory = Factory(app.state.runtime, client)
        admin = factory.user(Role.admin)
        probe = {"name": "health", "kind": "tcp", "severity": "SEV1"}
        probe |= {"tcp": {"host": "127.0.0.1", "port": closed_port()}}
        assert admin.post("/api/v1/probes", json=probe).status_code == 201

        def tested(labels: dict[str, Any], integration: str) -> str:
            body = {"labels": labels, "integration": integration}
            answer = admin.post("/api/v1/routing-rules/test", json=body)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["severity"])

        assert tested({"probe": "health", "severity": "warning"}, "@probes") == "SEV1"
        assert tested({"level": "ticket", "severity": "critical"}, "@slos") == "SEV4"


def test_the_first_rule_setting_a_value_wins(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    for name in ("a", "b"):
        factory.service(name)
    _rule(admin, "sets-severity", severity="SEV2", action="notify", **{"continue": True})
    _rule(admin, "sets-service", service="a", **{"continue": True})
    _rule(admin, "sets-both", service="b", severity="SEV4")
    _rule(admin, "never-reached", service="b", action="drop")
    answer = admin.post("/api/v1/routing-rules/test", json={"labels": {}}).json()
    assert answer["matched"] == ["sets-severity", "sets-service", "sets-both"]
    assert answer["decided_by"] == "sets-service"  # the first open, attach or drop rule
    assert (answer["service"], answer["severity"]) == ("a", "SEV2")


# -- actions at intake ---------------------------------------------------------------------------
def test_open_routes_to_the_rule_service_with_the_mapped_severity(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    factory.service("db")
    key = _key(admin, "prom", "checkout")
    _rule(
        admin,
        "db-team",
        matchers=[matcher("team", "=", "db")],
        service="db",
        severity_map=SEVERITY_MAP,
    )

    answer = send_batch(factory, key, _alert("d1", team="db", severity="critical"))
    [incident] = _incidents(runtime)
    assert answer["opened"] == [incident.ref]
    assert [s.name for s in incident.services] == ["db"] and incident.severity == "SEV1"
    read = _alert_read(admin, "d1")
    assert read["routed_by"] == "db-team" and read["routing_action"] == "open"
    assert read["service_name"] == "db" and read["severity"] == "SEV1"

    send_batch(factory, key, _alert("c1", team="web"))  # no rule: today's default, on checkout
    read = _alert_read(admin, "c1")
    assert read["routed_by"] is None and read["routing_action"] == "open"
    assert sorted(i.services[0].name for i in _incidents(runtime)) == ["checkout", "db"]


def test_an_alert_firing_again_routes_by_its_own_service_not_a_rule_s_from_before(
    factory: Factory, runtime: Runtime
) -> None:
    """The service a rule routed an alert to became the alert's own: once the rule was gone,
    the alert firing again opened an incident on it, while the test endpoint (and a new alert
    with the same labels) said it had no service."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _key(admin, "prom")  # no service of its own: only a rule gives one
    _rule(admin, "team-checkout", matchers=[matcher("team", "=", "checkout")], service="checkout")
    send_batch(factory, key, _alert("a1", team="checkout"))
    [incident] = _incidents(runtime)
    send_batch(factory, key, _alert("a1", "resolved", team="checkout"))
    resolved = admin.patch(f"/api/v1/incidents/{incident.ref}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    assert admin.delete("/api/v1/routing-rules/team-checkout").status_code == 204

    labels = {"alertname": "HighErrorRate", "team": "checkout"}
    test = admin.post("/api/v1/routing-rules/test", json={"labels": labels, "integration": "prom"})
    assert test.status_code == 200, test.text
    assert test.json()["service"] is None
    assert send_batch(factory, key, _alert("a1", team="checkout"))["opened"] == []
    assert _alert_read(admin, "a1")["service_name"] is None
    assert send_batch(factory, key, _alert("b1", team="checkout"))["opened"] == []
    assert incident_count(runtime) == 1


def test_attach_joins_only_and_keeps_the_alert_unrouted_without_an_incident(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    key = _key(admin, "prom", "web")
    _rule(admin, "only-join", matchers=[matcher("severity", "=", "warning")], action="attach")

    assert send_batch(factory, key, _alert("w1", severity="warning"))["opened"] == []
    assert incident_count(runtime) == 0
    read = _alert_read(admin, "w1")
    assert read["routing_action"] == "attach" and read["incident"] is None

    ref = factory.incident(title="Web is slow", services=["web"])
    send_batch(factory, key, _alert("w2", severity="warning"))
    assert _alert_read(admin, "w2")["incident"] == ref
    send_batch(factory, key, _alert("w1", severity="warning"))  # the repeat tries again, and joins
    assert _alert_read(admin, "w1")["incident"] == ref
    assert incident_count(runtime) == 1


def test_an_attach_alert_firing_again_without_an_active_incident_waits_for_the_next(
    factory: Factory, runtime: Runtime
) -> None:
    """An attach rule's alert that fires again when its incident is over waits, and each
    repeat tries again: it kept its link to the resolved incident, so it never retried."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _key(admin, "prom", "checkout")
    _rule(admin, "joins", matchers=[matcher("kind", "=", "minor")], action="attach")
    send_batch(factory, key, _alert("big"))
    send_batch(factory, key, _alert("m1", kind="minor"))
    [first] = _incidents(runtime)
    assert _alert_read(admin, "m1")["incident"] == first.ref
    send_batch(factory, key, _alert("m1", "resolved", kind="minor"), _alert("big", "resolved"))
    resolved = admin.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text

    send_batch(factory, key, _alert("m1", kind="minor"))  # nothing active to join: it waits
    read = _alert_read(admin, "m1")
    assert (read["routing_action"], read["incident"]) == ("attach", None)
    [second] = send_batch(factory, key, _alert("big2"))["opened"]
    send_batch(factory, key, _alert("m1", kind="minor"))  # the repeat tries again, and joins
    assert _alert_read(admin, "m1")["incident"] == second


def test_a_repeat_stays_with_the_incident_a_person_resolved(
    factory: Factory, runtime: Runtime
) -> None:
    """A source's repeat of a firing alert (Alertmanager's repeat_interval) says nothing
    new: once a person resolved its incident it opens no other. Only a signal that asks for
    it (``reroute_when_incident_over``, an SLO still paging) routes again."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _key(admin, "prom", "checkout")
    send_batch(factory, key, _alert("a"))
    [first] = _incidents(runtime)
    resolved = admin.patch(f"/api/v1/incidents/{first.ref}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    send_batch(factory, key, _alert("a"))
    assert [i.id for i in _incidents(runtime)] == [first.id]
    assert _alert_read(admin, "a")["incident"] == first.ref


@pytest.mark.parametrize("action", ["drop", "notify"])
def test_an_alert_firing_again_into_no_incident_leaves_its_active_one(
    factory: Factory, runtime: Runtime, action: str
) -> None:
    """A rule that joins no incident takes the alert off the active incident it joined
    before: it counted there still, as firing and as asking for a note, so the incident's
    other alerts clearing never resolved it."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _key(admin, "prom", "checkout")
    _rule(admin, "all", on_clear="resolve")
    send_batch(factory, key, _alert("a", alertname="Noisy"))
    send_batch(factory, key, _alert("b"))
    send_batch(factory, key, _alert("a", "resolved", alertname="Noisy"))
    _rule(admin, "noisy", matchers=[matcher("alertname", "=", "Noisy")], action=action, position=0)
    send_batch(factory, key, _alert("a", alertname="Noisy"))
    read = _alert_read(admin, "a")
    assert (read["routed_by"], read["routing_action"], read["incident"]) == ("noisy", action, None)
    send_batch(factory, key, _alert("b", "resolved"))
    [incident] = _incidents(runtime)
    assert incident.status == "resolved"


def test_notify_enqueues_a_job_and_opens_nothing(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    key = _key(admin, "prom", "web")
    _rule(admin, "tell-team", matchers=[matcher("severity", "=", "info")], action="notify")

    assert send_batch(factory, key, _alert("n1", severity="info"))["opened"] == []
    assert incident_count(runtime) == 0
    alert = alert_by_fingerprint(runtime, "n1")
    assert (alert.routed_by, alert.routing_action, alert.incident_id) == (
        "tell-team",
        "notify",
        None,
    )
    [job] = _jobs(runtime)
    assert (job.payload["alert_id"], job.payload["rule"]) == (alert.id, "tell-team")
    assert job.payload["status"] == "firing"
    send_batch(
        factory, key, _alert("n1", severity="info")
    )  # a repeat of a firing alert: no new job
    assert len(_jobs(runtime)) == 1

    # Another test of this process may have set a higher log level (serve --log-level):
    # the notification is an info line, so let info through while it is captured.
    kept = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as logs:
            assert Worker(runtime.database, runtime.jobs, runtime.bus).run_once() == 1
    finally:
        structlog.configure(**kept)
    [line] = [entry for entry in logs if entry["event"] == "alert notification"]
    assert line["rule"] == "tell-team" and line["alert_id"] == alert.id
    assert line["integration"] == "prom" and line["delivered"] is False
    assert _jobs(runtime)[0].status == "succeeded"


def _run_notifications(runtime: Runtime) -> list[dict[str, Any]]:
    """Run the queued jobs through the worker; the ``alert notification`` lines logged."""
    kept = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as logs:
            while Worker(runtime.database, runtime.jobs, runtime.bus).run_once():
                pass
    finally:
        structlog.configure(**kept)
    return [entry for entry in logs if entry["event"] == "alert notification"]


def _fired_and_resolved_before_its_job(factory: Factory) -> None:
    """A notify rule fires on an alert that resolves before its job runs."""
    admin = factory.user(Role.admin)
    factory.service("web")
    key = _key(admin, "prom", "web")
    _rule(admin, "tell-team", matchers=[matcher("severity", "=", "info")], action="notify")
    send_batch(factory, key, _alert("n1", severity="info"))
    send_batch(factory, key, _alert("n1", "resolved", severity="info"))


def test_a_notification_logs_the_status_the_rule_fired_on(
    factory: Factory, runtime: Runtime
) -> None:
    _fired_and_resolved_before_its_job(factory)
    assert alert_by_fingerprint(runtime, "n1").status == "resolved"
    [job] = _jobs(runtime)
    assert job.payload["status"] == "firing"
    fired_at = datetime.fromisoformat(job.payload["fired_at"])
    assert fired_at.tzinfo is not None and fired_at <= job.created_at
    [line] = _run_notifications(runtime)
    assert (line["rule"], line["status"]) == ("tell-team", "firing")
    assert line["fired_at"] == job.payload["fired_at"]


def test_a_notification_queued_by_an_older_version_logs_the_current_status(
    factory: Factory, runtime: Runtime
) -> None:
    _fired_and_resolved_before_its_job(factory)
    with runtime.transaction() as session:  # the payload an older version queued
        job = session.scalars(select(Job).where(Job.kind == NOTIFY_KIND)).one()
        job.payload = {"alert_id": job.payload["alert_id"], "rule": "tell-team"}
        created_at = job.created_at
    [line] = _run_notifications(runtime)
    assert (line["rule"], line["status"]) == ("tell-team", "resolved")
    assert line["fired_at"] == created_at.isoformat()


def test_notify_then_open_with_continue(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(
        admin,
        "page",
        matchers=[matcher("severity", "=", "critical")],
        action="notify",
        **{"continue": True},
    )
    _rule(admin, "open-api", matchers=[matcher("severity", "=~", "critical|error")])
    assert len(send_batch(factory, key, _alert("x", severity="critical"))["opened"]) == 1
    alert = alert_by_fingerprint(runtime, "x")
    assert (alert.routed_by, alert.routing_action) == ("open-api", "open")
    assert [j.payload["rule"] for j in _jobs(runtime)] == ["page"]


def test_drop_keeps_and_counts_but_never_routes(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "page", action="notify", **{"continue": True})
    _rule(admin, "no-staging", matchers=[matcher("env", "=", "staging")], action="drop")
    send_batch(factory, key, _alert("s", env="staging"))
    send_batch(factory, key, _alert("s", env="staging"))
    alert = alert_by_fingerprint(runtime, "s")
    assert alert.count == 2 and alert.incident_id is None
    assert (alert.routed_by, alert.routing_action) == ("no-staging", "drop")
    assert incident_count(runtime) == 0 and _jobs(runtime) == []


# -- on clear ------------------------------------------------------------------------------------
def test_on_clear_resolve_resolves_when_every_alert_has_cleared(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "auto-resolve", matchers=[matcher("team", "=", "api")], on_clear="resolve")
    send_batch(factory, key, _alert("r1", team="api"), _alert("r2", team="api"))
    [incident] = _incidents(runtime)
    send_batch(factory, key, _alert("r1", "resolved", team="api"))
    assert _incidents(runtime)[0].status == "triage"  # r2 still fires
    send_batch(factory, key, _alert("r2", "resolved", team="api"))
    assert _incidents(runtime)[0].status == "resolved"
    [change] = [
        e for e in status_changes_and_notes(runtime, incident.id) if e.kind == "status_changed"
    ]
    assert change.after == {"status": "resolved"}
    assert "auto-resolve" in change.text and "all 2 alerts" in change.text
    assert change.actor == "integration:prom"


def test_an_acknowledged_alert_keeps_its_incident_from_resolving(
    factory: Factory, runtime: Runtime
) -> None:
    """Acknowledged is not cleared: the incident resolves once that alert resolves too."""
    admin = factory.user(Role.admin)
    factory.service("api")
    answer = admin.post(
        "/api/v1/integrations", json={"name": "pd", "kind": "pagerduty", "service_name": "api"}
    )
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    _rule(admin, "auto-resolve", matchers=[matcher("@integration", "=", "pd")], on_clear="resolve")

    def send(action: str, dedup_key: str) -> None:
        _send_pagerduty(admin, key, action, dedup_key)

    send("trigger", "k1")
    send("trigger", "k2")
    send("acknowledge", "k1")
    send("resolve", "k2")
    assert _incidents(runtime)[0].status == "triage"
    send("resolve", "k1")
    assert _incidents(runtime)[0].status == "resolved"


def test_a_stray_acknowledge_of_a_resolved_alert_neither_holds_nor_revives_an_incident(
    factory: Factory, runtime: Runtime
) -> None:
    """PagerDuty ignores an acknowledge of a resolved alert, and so does firetower: it does
    not keep the incident open, and the alert that fires after it opens a new incident."""
    admin = factory.user(Role.admin)
    factory.service("api")
    body = {"name": "pd", "kind": "pagerduty", "service_name": "api"}
    key = admin.post("/api/v1/integrations", json=body).json()["key"]
    _rule(admin, "auto-resolve", on_clear="resolve")

    def send(action: str, dedup_key: str) -> None:
        _send_pagerduty(admin, key, action, dedup_key)

    for action, dedup_key in [("trigger", "k1"), ("trigger", "k2"), ("resolve", "k1")]:
        send(action, dedup_key)
    send("acknowledge", "k1")
    send("resolve", "k2")
    [first] = _incidents(runtime)
    assert first.status == "resolved"
    send("acknowledge", "k1")
    send("trigger", "k1")
    assert [i.status for i in _incidents(runtime)] == ["resolved", "triage"]
    k1 = _alert_read(admin, "k1")
    assert (k1["status"], k1["incident"]) == ("firing", f"INC-{first.id + 1}")


def test_a_resolving_batch_seeks_its_incidents_unresolved_alerts(
    factory: Factory, runtime: Runtime
) -> None:
    """Whether an incident still has an alert firing was read from every alert of it, for each
    resolving batch: 20,000 rows an incident in a million-alert storm's resolving half. SQLite
    must seek the index of alerts by incident and status for each status other than resolved
    (reading the row of the first it finds, to leave out user reports), and for the resolved
    ones that flap, with no read of the others."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("the plan is SQLite's: PostgreSQL plans by its statistics of the table")
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "auto-resolve", matchers=[matcher("team", "=", "api")], on_clear="resolve")
    send_batch(factory, key, *(_alert(f"s{n}", team="api") for n in range(5)))
    engine = runtime.database.engine
    with sql_run(engine) as ran:
        send_batch(factory, key, _alert("s0", "resolved", team="api"))
    assert _incidents(runtime)[0].status == "triage"
    reads = [(s, p) for s, p in ran if s.lstrip().startswith("SELECT") and "FROM alerts" in s]
    with engine.connect() as connection:
        plans = [sqlite_plan(connection, statement, parameters) for statement, parameters in reads]
    [check] = [p for p in plans if "ix_alerts_incident_status" in p]
    assert [step for step in check.split(" | ") if "alerts" in step] == [
        "SEARCH alerts USING INDEX ix_alerts_incident_status (incident_id=? AND status=?)",
        "SEARCH alerts USING COVERING INDEX ix_alerts_incident_status "
        "(incident_id=? AND status=? AND flapping=?)",
    ], plans


def test_on_clear_note_only_notes(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "just-note", matchers=[matcher("team", "=", "api")])
    send_batch(factory, key, _alert("q1", team="api"))
    send_batch(factory, key, _alert("q1", "resolved", team="api"))
    [incident] = _incidents(runtime)
    assert incident.status == "triage"
    events = status_changes_and_notes(runtime, incident.id)
    assert [e.kind for e in events] == ["note"]
    assert events[0].text == "The 1 alert attached to this incident has resolved."


@pytest.mark.parametrize("source", ["manual", "alert"])
def test_on_clear_resolve_leaves_an_incident_a_person_declared_open(
    factory: Factory, runtime: Runtime, source: str
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(
        admin,
        "attach-and-resolve",
        matchers=[matcher("team", "=", "api")],
        action="attach",
        on_clear="resolve",
    )
    declared = admin.post(
        "/api/v1/incidents",
        json={"title": "Checkout is slow", "services": ["api"], "source": source},
    )
    assert declared.status_code == 201, declared.text
    send_batch(factory, key, _alert("d1", team="api"))
    [incident] = _incidents(runtime)
    send_batch(factory, key, _alert("d1", "resolved", team="api"))
    assert _incidents(runtime)[0].status == "triage"
    notes = [e.text for e in status_changes_and_notes(runtime, incident.id) if e.kind == "note"]
    assert notes[-1] == (
        "The 1 alert attached to this incident has resolved. It stays open: a person "
        "declared it, so a person resolves it."
    )


def test_one_alert_asking_for_a_note_keeps_the_incident_open(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "auto-resolve", matchers=[matcher("team", "=", "api")], on_clear="resolve")
    send_batch(factory, key, _alert("a", team="api"), _alert("b", team="other"))  # b: default
    send_batch(
        factory, key, _alert("a", "resolved", team="api"), _alert("b", "resolved", team="other")
    )
    assert _incidents(runtime)[0].status == "triage"


# -- bad input -----------------------------------------------------------------------------------
BAD_RULES = [
    ("post", {"name": "x", "service": "nope"}, 422, "service"),
    ("post", {"name": "x", "matchers": [matcher("a", "=~", "(")]}, 422, "matchers.0.value"),
    ("post", {"name": "taken"}, 409, "name"),
    ("post", {"name": "x", "action": "page"}, 422, "action"),
    ("post", {"name": "x", "action": "drop", "continue": True}, 422, "continue"),
    ("post", {"name": "x", "action": "notify", "on_clear": "resolve"}, 422, "on_clear"),
    ("post", {"name": "x", "on_clear": "close"}, 422, "on_clear"),
    ("post", {"name": "x", "severity": "SEV9"}, 422, "severity"),
    (
        "post",
        {"name": "x", "severity_map": {"label": "s", "values": {}}},
        422,
        "severity_map.values",
    ),
    ("post", {"name": "Bad Name"}, 422, "name"),
    ("post", {"name": "x", "position": -1}, 422, "position"),
    ("put-list", {"rules": [{"name": "a"}, {"name": "a"}]}, 409, "rules.1.name"),
    (
        "put-list",
        {"rules": [{"name": "a"}, {"name": "b", "service": "nope"}]},
        422,
        "rules.1.service",
    ),
    ("put-list", {"rules": [{"name": "a", "action": "x"}]}, 422, "rules.0.action"),
    ("put-one", {"name": "other"}, 409, "name"),
    ("put-one", {"name": "taken", "service": "nope"}, 422, "service"),
]


@pytest.mark.parametrize(("how", "body", "status", "field"), BAD_RULES)
def test_bad_rules_are_refused_naming_the_field_and_change_nothing(
    factory: Factory, runtime: Runtime, how: str, body: dict[str, Any], status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    _rule(admin, "taken", service="db")
    _rule(admin, "other")
    before = row_counts(runtime)
    listed = admin.get("/api/v1/routing-rules").json()
    if how == "post":
        answer = admin.post("/api/v1/routing-rules", json=body)
    elif how == "put-list":
        answer = admin.put("/api/v1/routing-rules", json=body)
    else:
        answer = admin.put("/api/v1/routing-rules/taken", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert row_counts(runtime) == before
    assert admin.get("/api/v1/routing-rules").json() == listed


# -- firetower.yaml ------------------------------------------------------------------------------
YAML = """
catalog:
  services:
    - name: db
    - name: web
routing:
  - name: page-critical
    matchers: [{label: severity, op: "=", value: critical}]
    action: notify
    continue: true
  - name: db-team
    matchers: [{label: team, op: "=", value: db}]
    service: db
    severity_map: {label: severity, values: {critical: SEV1, warning: SEV3}}
    on_clear: resolve
  - name: drop-staging
    matchers: [{label: env, op: "=~", value: "stag.*"}]
    action: drop
inhibit_rules:
  - name: node-down
    source_matchers: [{label: alertname, op: "=", value: NodeDown}]
    target_matchers: [{label: severity, op: "=", value: warning}]
    equal: [cluster]
"""


def test_firetower_yaml_applies_routing_and_inhibit_rules(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/apply", json={"content": YAML})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["applied"] == ["catalog", "routing", "inhibit_rules"]
    assert report["routing"] == {
        "rules": 3,
        "names": ["page-critical", "db-team", "drop-staging"],
    }
    assert report["inhibit_rules"] == {"rules": 1, "names": ["node-down"]}
    rules = admin.get("/api/v1/routing-rules").json()
    assert [r["name"] for r in rules] == ["page-critical", "db-team", "drop-staging"]
    assert rules[0]["continue"] is True and rules[1]["on_clear"] == "resolve"
    assert rules[1]["severity_map"] == SEVERITY_MAP
    [inhibit] = admin.get("/api/v1/inhibit-rules").json()
    assert inhibit["equal"] == ["cluster"]

    again = admin.post("/api/v1/apply", json={"content": YAML})
    assert again.json() == report
    assert admin.get("/api/v1/routing-rules").json() == rules  # unchanged, updated_at too
    assert admin.get("/api/v1/inhibit-rules").json() == [inhibit]

    # the whole list is replaced: reordered, one gone; an empty block removes them all
    shorter = "routing:\n  - name: drop-staging\n    action: drop\n  - name: db-team\n"
    assert admin.post("/api/v1/apply", json={"content": shorter}).status_code == 200
    assert _names(admin) == ["drop-staging", "db-team"]
    assert len(admin.get("/api/v1/inhibit-rules").json()) == 1  # its block was left out
    emptied = "routing: []\ninhibit_rules: []\n"
    assert admin.post("/api/v1/apply", json={"content": emptied}).status_code == 200
    assert admin.get("/api/v1/routing-rules").json() == []
    assert admin.get("/api/v1/inhibit-rules").json() == []


@pytest.mark.parametrize(
    ("block", "status", "field"),
    [
        ("routing:\n  - name: a\n  - name: b\n    service: nope\n", 422, "routing[1].service"),
        ("routing:\n  - name: a\n    action: page\n", 422, "routing[0].action"),
        (
            "routing:\n  - name: a\n    matchers: [{label: x, op: '=~', value: '('}]\n",
            422,
            "routing[0].matchers[0].value",
        ),
        ("routing:\n  - name: a\n  - name: a\n", 409, "routing[1].name"),
        ("routing: {name: a}\n", 422, "routing"),
        (
            "inhibit_rules:\n  - name: i\n    source_matchers: []\n",
            422,
            "inhibit_rules[0].source_matchers",
        ),
        (
            "inhibit_rules:\n  - {name: i, source_matchers: [{label: a, op: '=', value: b}],"
            " target_matchers: [{label: a, op: '=', value: c}]}\n  - {name: i,"
            " source_matchers: [{label: a, op: '=', value: b}],"
            " target_matchers: [{label: a, op: '=', value: c}]}\n",
            409,
            "inhibit_rules[1].name",
        ),
    ],
)
def test_a_bad_rules_block_applies_nothing(
    factory: Factory, runtime: Runtime, block: str, status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    _rule(admin, "kept")
    before = row_counts(runtime)
    content = "catalog:\n  services:\n    - name: fresh\n" + block
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert row_counts(runtime) == before  # not even the catalog block
    assert _names(admin) == ["kept"]


@pytest.mark.parametrize(
    ("content", "line", "key"),
    [
        # the drop rule's second action would have been read alone: staging paged
        ("routing:\n  - name: a\n    action: drop\n    action: open\n", 4, "action"),
        # two blocks: the first one's rules would have been lost without a word
        ("routing:\n  - name: a\nrouting:\n  - name: b\n", 3, "routing"),
        (
            "inhibit_rules:\n  - {name: i, equal: [a], equal: [],"
            " source_matchers: [{label: a, op: '=', value: b}],"
            " target_matchers: [{label: a, op: '=', value: c}]}\n",
            2,
            "equal",
        ),
    ],
)
def test_a_key_given_twice_is_refused_not_read_as_the_last_one(
    factory: Factory, runtime: Runtime, content: str, line: int, key: str
) -> None:
    admin = factory.user(Role.admin)
    _rule(admin, "kept")
    before = row_counts(runtime)
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "content"
    assert f"line {line}" in answer.json()["detail"]
    assert f"found duplicate key {key!r}" in answer.json()["detail"]
    assert row_counts(runtime) == before
    assert _names(admin) == ["kept"]


@pytest.mark.parametrize(
    ("content", "key"),
    [
        # the rules' items lost (a template that rendered nothing): every rule would go
        ("routing:\n", "routing"),
        ("catalog:\n  services: [{name: fresh}]\nrouting: ~\n", "routing"),
        ("inhibit_rules:\n", "inhibit_rules"),
        ("probes: null\n", "probes"),
        ("slos:\n", "slos"),
    ],
)
def test_a_list_key_with_no_value_is_refused_not_read_as_empty(
    factory: Factory, runtime: Runtime, content: str, key: str
) -> None:
    admin = factory.user(Role.admin)
    admin.post("/api/v1/apply", json={"content": YAML}).raise_for_status()
    routing = admin.get("/api/v1/routing-rules").json()
    inhibit = admin.get("/api/v1/inhibit-rules").json()
    before = row_counts(runtime)
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == key
    assert f"{key} has no value; write '{key}: []' to mean" in answer.json()["detail"]
    assert row_counts(runtime) == before
    assert admin.get("/api/v1/routing-rules").json() == routing
    assert admin.get("/api/v1/inhibit-rules").json() == inhibit


def test_the_yaml_example_in_the_signals_docs_applies(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "signals.md").read_text()
    blocks = [part.split("```", 1)[0] for part in docs.split("```yaml\n")[1:]]
    [example] = [b for b in blocks if "routing:" in b]
    answer = admin.post("/api/v1/apply", json={"content": example})
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == ["routing", "inhibit_rules"]
    assert _names(admin) == ["drop-staging", "page-critical", "checkout-team", "grafana-joins-only"]
    _key(admin, "grafana")
    test = admin.post(
        "/api/v1/routing-rules/test", json={"labels": {"x": "y"}, "integration": "grafana"}
    ).json()
    assert (test["decided_by"], test["action"]) == ("grafana-joins-only", "attach")


def test_requests_committed_together_see_an_incident_resolved_by_an_earlier_one(
    factory: Factory, runtime: Runtime
) -> None:
    """Group commit runs many requests in one transaction, sharing what they read: an
    incident the first request resolves must not take the next request's new alert."""
    from firetower.signals import service as signals
    from firetower.signals.schemas import AlertmanagerPayload

    admin = factory.user(Role.admin)
    factory.service("api")
    key = _key(admin, "prom", "api")
    _rule(admin, "auto-resolve", matchers=[matcher("team", "=", "api")], on_clear="resolve")
    send_batch(factory, key, _alert("g1", team="api"))
    [first] = _incidents(runtime)

    def batch(*alerts: dict[str, Any]) -> AlertmanagerPayload:
        body = {"version": "4", "status": alerts[0]["status"], "alerts": list(alerts)}
        return AlertmanagerPayload.model_validate(body)

    batches = (
        batch(_alert("g0", team="api")),  # joins the incident: the transaction now knows it
        batch(_alert("g0", "resolved", team="api"), _alert("g1", "resolved", team="api")),
        batch(_alert("g2", team="api")),  # the incident is resolved: this opens a new one
    )
    with runtime.transaction() as session:
        for payload in batches:
            integration = signals.authenticate(session, key, "alertmanager")
            intake = signals.Intake(integration, runtime.settings.severity_policy)
            signals.ingest_alertmanager(session, intake, signals.alertmanager_signals(payload))

    resolved, opened = _incidents(runtime)
    assert (resolved.id, resolved.status) == (first.id, "resolved")
    assert opened.status == "triage"
    assert alert_by_fingerprint(runtime, "g2").incident_id == opened.id


def _waiting_for_a_lock(runtime: Runtime, working: threading.Thread) -> None:
    """Return once ``working`` has ended or a session of this test's database waits for a
    lock (PostgreSQL's pg_stat_activity); ten seconds at most."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while working.is_alive() and time.monotonic() < deadline:
        with runtime.database.engine.connect() as connection:
            if connection.scalar(waiting):
                return
        time.sleep(0.02)


ON_CLEAR_RACES = {
    # What ``b`` does after ``a`` opened an incident (``a`` from one integration, ``b`` from
    # another of the same service); the transaction that begins first and the one that
    # begins while it is open; then the status of the incident ``a`` opened, and the
    # incident ``b`` ends on.
    "resolving-first": ([], ("a", "resolved"), ("b", "firing"), "resolved", "a new one"),
    "firing-first": ([], ("b", "firing"), ("a", "resolved"), "triage", "a's"),
    "both-resolving": (["firing"], ("a", "resolved"), ("b", "resolved"), "resolved", "a's"),
    "firing-again": (
        ["firing", "resolved"],  # b fires again: it rejoins its incident while that is active
        ("a", "resolved"),
        ("b", "firing"),
        "resolved",
        "a new one",
    ),
}


@pytest.mark.parametrize("race", list(ON_CLEAR_RACES))
def test_resolving_on_clear_waits_for_alerts_routed_to_the_service_at_the_same_moment(
    factory: Factory, runtime: Runtime, race: str
) -> None:
    """PostgreSQL: routing reads a service's active incident under the service's lock, but
    resolving on clear took none. A firing alert then joined an incident a concurrent
    transaction was resolving (whichever began first): the incident ended resolved, the
    alert firing on it and no incident open for it. And two transactions clearing an
    incident's last two alerts each saw the other's firing: neither resolved it."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    from firetower.signals import service as signals
    from firetower.signals.schemas import AlertmanagerPayload

    b_before, earlier, later, status, b_on = ON_CLEAR_RACES[race]
    admin = factory.user(Role.admin)
    factory.service("api")
    keys = {"a": _key(admin, "prom", "api"), "b": _key(admin, "other", "api")}
    _rule(admin, "auto-resolve", on_clear="resolve")
    send_batch(factory, keys["a"], _alert("a"))
    for b_status in b_before:
        send_batch(factory, keys["b"], _alert("b", b_status))
    [incident] = _incidents(runtime)

    def ingest(
        fingerprint: str, alert_status: str, then: Callable[[], None] = lambda: None
    ) -> None:
        alert = _alert(fingerprint, alert_status)
        body = {"version": "4", "status": alert_status, "alerts": [alert]}
        payload = AlertmanagerPayload.model_validate(body)
        with runtime.transaction() as session:
            integration = signals.authenticate(session, keys[fingerprint], "alertmanager")
            intake = signals.Intake(integration, runtime.settings.severity_policy)
            signals.ingest_alertmanager(session, intake, signals.alertmanager_signals(payload))
            then()  # before this transaction commits

    failed: list[BaseException] = []

    def ingest_later() -> None:
        try:
            ingest(*later)
        except BaseException as error:  # reported by the test below
            failed.append(error)

    second = threading.Thread(target=ingest_later)

    def start_the_second_until_it_waits() -> None:
        second.start()
        _waiting_for_a_lock(runtime, second)

    ingest(*earlier, then=start_the_second_until_it_waits)
    second.join(10)
    assert not second.is_alive() and failed == []

    b = alert_by_fingerprint(runtime, "b")
    first, *rest = _incidents(runtime)
    assert (first.id, first.status) == (incident.id, status)
    if b_on == "a's":
        assert (b.incident_id, rest) == (incident.id, [])
    else:
        [opened] = rest
        assert (b.incident_id, opened.status) == (opened.id, "triage")
