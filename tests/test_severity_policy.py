"""Severity policy: risk and blast radius raise severity (never lower it) on declare and change."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from firetower.app import create_app
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.incidents import service
from firetower.incidents.events import IncidentEscalationFlagged
from firetower.incidents.lifecycle import Status
from firetower.incidents.schemas import IncidentCreate, IncidentUpdate
from firetower.runtime import Runtime
from firetower.settings import BlastRadiusRule, Settings, SeverityPolicy
from tests.factories import SYSTEM, ApiUser, Factory


def _timeline(factory: Factory, ref: str) -> list[dict[str, Any]]:
    admin = factory.user(Role.viewer)
    items: list[dict[str, Any]] = admin.get(f"/api/v1/incidents/{ref}/timeline").json()["items"]
    return items


def _policy_events(factory: Factory, ref: str) -> list[dict[str, Any]]:
    return [e for e in _timeline(factory, ref) if e["rule"]]


@pytest.mark.parametrize(
    ("risk", "rule"),
    [
        ("data_at_risk", "risk:data"),
        ("security_at_risk", "risk:security"),
        ("revenue_at_risk", "risk:revenue"),
    ],
)
def test_risk_raises_severity_and_escalates_on_declare(
    factory: Factory, risk: str, rule: str
) -> None:
    responder = factory.user(Role.responder)
    answer = responder.post(
        "/api/v1/incidents", json={"title": "x", "severity": "SEV4", risk: True}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["severity"] == "SEV1"
    assert body["escalate_immediately"] is True
    events = _policy_events(factory, body["ref"])
    assert [(e["kind"], e["rule"]) for e in events] == [
        ("severity_changed", rule),
        ("escalation_flagged", rule),
    ]
    assert events[0]["before"] == {"severity": "SEV4"}
    assert events[0]["after"] == {"severity": "SEV1"}
    assert events[0]["actor"] == "firetower severity policy"


def test_several_risks_are_named_in_one_rule(factory: Factory) -> None:
    ref = factory.incident(title="x", data_at_risk=True, revenue_at_risk=True)
    assert {e["rule"] for e in _policy_events(factory, ref)} == {"risk:data+revenue"}


def test_no_risk_no_change(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    body = responder.post("/api/v1/incidents", json={"title": "x", "severity": "SEV4"}).json()
    assert (body["severity"], body["escalate_immediately"]) == ("SEV4", False)
    assert _policy_events(factory, body["ref"]) == []


def test_risk_already_at_or_above_the_minimum_only_escalates(factory: Factory) -> None:
    ref = factory.incident(title="x", severity="SEV1", security_at_risk=True)
    events = _policy_events(factory, ref)
    assert [e["kind"] for e in events] == ["escalation_flagged"]


def test_policy_is_evaluated_on_change(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    ref = factory.incident(title="x", severity="SEV3")
    answer = responder.patch(f"/api/v1/incidents/{ref}", json={"revenue_at_risk": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["severity"] == "SEV1"
    assert answer.json()["escalate_immediately"] is True
    kinds = [(e["kind"], e["rule"]) for e in _timeline(factory, ref)]
    assert kinds[-3:] == [
        ("risk_changed", None),
        ("severity_changed", "risk:revenue"),
        ("escalation_flagged", "risk:revenue"),
    ]


def test_policy_never_lowers_and_lowering_below_it_is_raised_back(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    ref = factory.incident(title="x", data_at_risk=True)
    # Clearing the risk does not lower severity or withdraw escalation.
    cleared = responder.patch(f"/api/v1/incidents/{ref}", json={"data_at_risk": False}).json()
    assert (cleared["severity"], cleared["escalate_immediately"]) == ("SEV1", True)
    responder.patch(f"/api/v1/incidents/{ref}", json={"data_at_risk": True})
    # A person lowers it while data is still at risk: the policy puts it back, saying why.
    lowered = responder.patch(f"/api/v1/incidents/{ref}", json={"severity": "SEV3"}).json()
    assert lowered["severity"] == "SEV1"
    last = _timeline(factory, ref)[-2:]
    assert [(e["kind"], e["rule"], e["after"]) for e in last] == [
        ("severity_changed", None, {"severity": "SEV3"}),
        ("severity_changed", "risk:data", {"severity": "SEV1"}),
    ]


def test_tier1_in_the_blast_radius_raises_severity(factory: Factory) -> None:
    factory.service("storage", tier=3)
    factory.service("checkout", tier=1, depends_on=["storage"])
    ref = factory.incident(title="x", severity="SEV4", services=["storage"])
    events = _policy_events(factory, ref)
    assert [(e["rule"], e["after"]) for e in events] == [
        ("blast-radius:tier1-impacted", {"severity": "SEV2"})
    ]
    assert "checkout" in events[0]["text"]


def test_users_above_the_threshold_raise_severity(factory: Factory) -> None:
    factory.service("big", tier=3, estimated_users=10_000)
    factory.service("small", tier=3, estimated_users=9_999)
    assert _policy_events(factory, factory.incident(title="x", services=["small"])) == []
    ref = factory.incident(title="x", severity="SEV3", services=["big"])
    assert [e["rule"] for e in _policy_events(factory, ref)] == ["blast-radius:many-users"]


def test_adding_a_service_on_change_raises_severity(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("payments", tier=1)
    ref = factory.incident(title="x", severity="SEV4")
    body = responder.patch(f"/api/v1/incidents/{ref}", json={"services": ["payments"]}).json()
    assert body["severity"] == "SEV2"


def test_a_configured_policy_is_used(runtime: Runtime, factory: Factory) -> None:
    factory.service("edge", tier=2, estimated_users=50)
    policy = SeverityPolicy(
        risk_minimum_severity="SEV2",
        blast_radius_rules=[BlastRadiusRule(name="any-users", severity="SEV3", min_users=10)],
    )
    with runtime.transaction() as session:
        risky = service.declare(
            session, SYSTEM, IncidentCreate(title="r", severity="SEV4", data_at_risk=True), policy
        )
        edge = service.declare(
            session, SYSTEM, IncidentCreate(title="e", severity="SEV4", services=["edge"]), policy
        )
        assert (risky.severity, risky.escalate_immediately) == ("SEV2", True)
        assert edge.severity == "SEV3"
        service.update(session, SYSTEM, edge, IncidentUpdate(security_at_risk=True), policy)
        assert edge.severity == "SEV2"


def test_the_app_uses_the_policy_from_settings(
    settings: Settings, database: Database, factory: Factory
) -> None:
    custom = settings.model_copy(
        update={"severity_policy": SeverityPolicy(risk_minimum_severity="SEV3")}
    )
    app = create_app(custom, database=database, start_worker=False, configure_logs=False)
    responder = factory.user(Role.responder)
    with TestClient(app) as client:
        body = client.post(
            "/api/v1/incidents",
            json={"title": "x", "severity": "SEV4", "data_at_risk": True},
            headers=responder.headers,
        ).json()
    assert body["severity"] == "SEV3"


def test_the_declared_event_carries_the_final_severity(runtime: Runtime, factory: Factory) -> None:
    from firetower.incidents.events import IncidentDeclared

    seen: list[IncidentDeclared] = []
    runtime.bus.react(IncidentDeclared, lambda _session, event: seen.append(event))
    factory.incident(title="x", severity="SEV4", data_at_risk=True)
    assert [(e.severity, e.escalate_immediately) for e in seen] == [("SEV1", True)]


def test_escalation_is_an_event_other_domains_can_react_to(runtime: Runtime) -> None:
    flagged: list[Any] = []
    runtime.bus.listen(IncidentEscalationFlagged, flagged.append)
    with runtime.transaction() as session:
        incident = service.declare(
            session, SYSTEM, IncidentCreate(title="quiet"), runtime.settings.severity_policy
        )
        ref = incident.ref
    assert flagged == []
    with runtime.transaction() as session:
        incident = service.get_incident(session, ref)
        service.update(
            session,
            SYSTEM,
            incident,
            IncidentUpdate(revenue_at_risk=True),
            runtime.settings.severity_policy,
        )
    assert [(e.ref, e.rule) for e in flagged] == [(ref, "risk:revenue")]


def test_a_catalog_change_that_widens_the_blast_radius_raises_open_incidents(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("search", tier=3, estimated_users=100)
    factory.service("frontend", tier=3, estimated_users=500)
    open_ref = factory.incident(title="search slow", severity="SEV4", services=["search"])
    closed_ref = factory.incident(title="old", severity="SEV4", services=["search"])
    admin.post(f"/api/v1/incidents/{closed_ref}/transitions", json={"to": "resolved"})
    # frontend now depends on search and is tier 1: the open incident reaches a tier-1 service.
    assert admin.patch("/api/v1/services/frontend", json={"tier": 1}).status_code == 200
    assert admin.get(f"/api/v1/incidents/{open_ref}").json()["severity"] == "SEV4"
    added = admin.post("/api/v1/dependencies", json={"service": "frontend", "depends_on": "search"})
    assert added.status_code == 201, added.text
    shown = admin.get(f"/api/v1/incidents/{open_ref}").json()
    assert shown["severity"] == "SEV2"
    raised = [
        e
        for e in admin.get(f"/api/v1/incidents/{open_ref}/timeline").json()["items"]
        if e["kind"] == "severity_changed"
    ]
    assert [(e["rule"], e["after"]) for e in raised] == [
        ("blast-radius:tier1-impacted", {"severity": "SEV2"})
    ]
    # Only open incidents are re-evaluated: a resolved one keeps its story.
    assert admin.get(f"/api/v1/incidents/{closed_ref}").json()["severity"] == "SEV4"
    # More users on a service in the radius raise it again, by the users rule.
    assert (
        admin.patch("/api/v1/services/frontend", json={"estimated_users": 50_000}).status_code
        == 200
    )
    assert admin.get(f"/api/v1/incidents/{open_ref}").json()["severity"] == "SEV2"


def test_a_catalog_import_that_adds_a_dependency_raises_open_incidents(
    factory: Factory,
) -> None:
    admin = factory.user(Role.admin)
    factory.service("search", tier=3, estimated_users=100)
    factory.service("frontend", tier=1, estimated_users=500)
    ref = factory.incident(title="search slow", severity="SEV4", services=["search"])
    content = "services:\n  - name: frontend\n    depends_on: [search]\n"
    imported = admin.post("/api/v1/catalog/import", json={"content": content})
    assert imported.status_code == 200, imported.text
    shown = admin.get(f"/api/v1/incidents/{ref}").json()
    assert shown["severity"] == "SEV2"
    assert [(e["rule"], e["after"]) for e in _policy_events(factory, ref)] == [
        ("blast-radius:tier1-impacted", {"severity": "SEV2"})
    ]


def test_a_catalog_import_rechecks_each_open_incident_once(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = factory.user(Role.admin)
    factory.service("search", tier=3, estimated_users=100)
    dependents = ("web", "mobile", "partners")
    for name in dependents:
        factory.service(name, tier=1, estimated_users=500)
    refs = [
        factory.incident(title=f"search slow {n}", severity="SEV4", services=["search"])
        for n in range(2)
    ]
    rechecked: list[str] = []
    reapply = service.reapply_severity_policy

    def counted(session: Any, incident: Any, policy: SeverityPolicy) -> None:
        rechecked.append(incident.ref)
        reapply(session, incident, policy)

    monkeypatch.setattr(service, "reapply_severity_policy", counted)
    # Three services change (each gains an edge to search): one import, one check each.
    content = "services:\n" + "".join(
        f"  - name: {n}\n    depends_on: [search]\n" for n in dependents
    )
    imported = admin.post("/api/v1/catalog/import", json={"content": content})
    assert imported.status_code == 200, imported.text
    assert sorted(rechecked) == sorted(refs)
    for ref in refs:
        assert admin.get(f"/api/v1/incidents/{ref}").json()["severity"] == "SEV2"


def _merged_while_tier1_comes_into_reach(factory: Factory) -> tuple[str, str, ApiUser]:
    """An open SEV4 incident on search, a survivor, and frontend (tier 1) not yet on search."""
    admin = factory.user(Role.admin)
    factory.service("search", tier=3, estimated_users=100)
    factory.service("frontend", tier=1, estimated_users=500)
    survivor = factory.incident(title="checkout down", severity="SEV2")
    ref = factory.incident(title="search slow", severity="SEV4", services=["search"])
    return survivor, ref, admin


def test_reapplying_the_policy_leaves_a_merged_incident_alone(
    factory: Factory, runtime: Runtime
) -> None:
    """A merged incident is a pointer to its survivor: the policy never raises it again."""
    survivor, ref, admin = _merged_while_tier1_comes_into_reach(factory)
    merged = admin.post(
        f"/api/v1/incidents/{ref}/transitions", json={"to": "merged", "merged_into": survivor}
    )
    assert merged.status_code == 200, merged.text
    added = admin.post("/api/v1/dependencies", json={"service": "frontend", "depends_on": "search"})
    assert added.status_code == 201, added.text
    before = _timeline(factory, ref)
    with runtime.transaction() as session:
        incident = service.get_incident(session, ref)
        service.reapply_severity_policy(session, incident, runtime.settings.severity_policy)
    assert admin.get(f"/api/v1/incidents/{ref}").json()["severity"] == "SEV4"
    assert _timeline(factory, ref) == before


def test_an_incident_merged_while_a_catalog_import_waits_for_it_is_not_raised(
    factory: Factory, runtime: Runtime, server_url: str
) -> None:
    """The import selects active incidents, then locks each one; on PostgreSQL a merge can
    commit in between. The status read after the lock decides, so the merged one is skipped."""
    if runtime.settings.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite runs one writer at a time")
    survivor, ref, admin = _merged_while_tier1_comes_into_reach(factory)
    content = "services:\n  - name: frontend\n    depends_on: [search]\n"
    answers: list[httpx.Response] = []

    def import_catalog() -> None:
        with httpx.Client(base_url=server_url, headers=admin.headers, timeout=60) as client:
            answers.append(client.post("/api/v1/catalog/import", json={"content": content}))

    importing = threading.Thread(target=import_catalog)
    with runtime.transaction() as session:
        service.transition(
            session, admin.actor, service.get_incident(session, ref), Status.merged,
            merged_into=survivor,
        )  # fmt: skip
        importing.start()
        # Keep the merge uncommitted until the import waits on the incident's row lock (or
        # has finished, which only a missing lock allows).
        with runtime.read() as watcher:
            while importing.is_alive() and not watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ):
                watcher.rollback()
    importing.join(60)
    assert [a.status_code for a in answers] == [200], [a.text for a in answers]
    shown = admin.get(f"/api/v1/incidents/{ref}").json()
    assert (shown["status"], shown["severity"]) == ("merged", "SEV4")
    assert _policy_events(factory, ref) == []
