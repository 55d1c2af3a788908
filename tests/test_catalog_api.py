"""The catalog over its REST API: CRUD, the dependency DAG, blast radius."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from firetower import clock
from firetower.auth.schemas import Role
from firetower.catalog import service as catalog
from firetower.errors import Conflict, InvalidInput
from firetower.signals import service as signals
from firetower.signals.models import Integration, MaintenanceWindow, RoutingRule
from firetower.signals.schemas import (
    IntegrationCreate,
    MaintenanceWindowCreate,
    RoutingRuleCreate,
    RoutingRuleIn,
)
from tests.factories import SYSTEM, row_counts


def test_service_crud_over_api(factory):
    responder = factory.user(Role.responder)
    admin = factory.user(Role.admin)
    viewer = factory.user(Role.viewer)
    created = responder.post(
        "/api/v1/services",
        json={"name": "checkout", "tier": 1, "estimated_users": 900, "owner": "shop@example.com"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["tier"] == 1
    assert viewer.post("/api/v1/services", json={"name": "other"}).status_code == 403
    duplicate = responder.post("/api/v1/services", json={"name": "checkout"})
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "name"
    bad = responder.post("/api/v1/services", json={"name": "Not A Name"})
    assert bad.status_code == 422 and bad.json()["field"] == "name"

    patched = responder.patch(
        "/api/v1/services/checkout", json={"description": "buy things", "tier": 2}
    )
    assert patched.status_code == 200, patched.text
    shown = viewer.get("/api/v1/services/checkout").json()
    assert (shown["description"], shown["tier"], shown["estimated_users"]) == ("buy things", 2, 900)
    assert responder.patch("/api/v1/services/checkout", json={"tier": 9}).status_code == 422
    assert [s["name"] for s in viewer.get("/api/v1/services").json()] == ["checkout"]

    assert responder.delete("/api/v1/services/checkout").status_code == 403
    assert admin.delete("/api/v1/services/checkout").status_code == 204
    gone = viewer.get("/api/v1/services/checkout")
    assert gone.status_code == 404 and gone.json()["field"] == "service"


def test_create_with_a_missing_dependency_writes_nothing(factory):
    responder = factory.user()
    answer = responder.post("/api/v1/services", json={"name": "web", "depends_on": ["ghost"]})
    assert answer.status_code == 404
    assert answer.json()["field"] == "depends_on"
    assert responder.get("/api/v1/services/web").status_code == 404


def test_dependencies_features_and_customers_over_api(factory):
    responder = factory.user()
    for name in ("web", "api", "db"):
        factory.service(name)
    for edge in ({"service": "web", "depends_on": "api"}, {"service": "api", "depends_on": "db"}):
        assert responder.post("/api/v1/dependencies", json=edge).status_code == 201
    assert responder.get("/api/v1/dependencies").json() == [
        {"service": "api", "depends_on": "db"},
        {"service": "web", "depends_on": "api"},
    ]
    api = responder.get("/api/v1/services/api").json()
    assert (api["depends_on"], api["dependents"]) == (["db"], ["web"])

    feature = responder.put(
        "/api/v1/features", json={"name": "Front page", "services": ["web", "web", "api"]}
    )
    assert feature.status_code == 200, feature.text
    assert feature.json()["services"] == ["api", "web"]
    missing = responder.put("/api/v1/features", json={"name": "Search", "services": ["nope"]})
    assert missing.status_code == 404 and missing.json()["field"] == "services"
    assert [f["name"] for f in responder.get("/api/v1/features").json()] == ["Front page"]
    customer = responder.put(
        "/api/v1/customers",
        json={"name": "Acme", "contact": "ops@acme.example", "services": ["db"]},
    )
    assert customer.json() == {"name": "Acme", "contact": "ops@acme.example", "services": ["db"]}

    assert responder.delete("/api/v1/dependencies/web/api").status_code == 204
    again = responder.delete("/api/v1/dependencies/web/api")
    assert again.status_code == 404 and again.json()["field"] == "depends_on"


def test_a_cycle_is_refused_with_the_cycle_named_and_nothing_written(factory):
    responder = factory.user()
    for name in ("a", "b", "c"):
        factory.service(name)
    responder.post("/api/v1/dependencies", json={"service": "a", "depends_on": "b"})
    responder.post("/api/v1/dependencies", json={"service": "b", "depends_on": "c"})
    before = responder.get("/api/v1/dependencies").json()
    answer = responder.post("/api/v1/dependencies", json={"service": "c", "depends_on": "a"})
    assert answer.status_code == 409
    assert answer.json()["field"] == "depends_on"
    assert "c → a → b → c" in answer.json()["detail"]
    assert responder.get("/api/v1/dependencies").json() == before
    itself = responder.post("/api/v1/dependencies", json={"service": "a", "depends_on": "a"})
    assert itself.status_code == 422
    assert responder.get("/api/v1/dependencies").json() == before


def _diamond(factory, responder):
    # top depends on left and right, which both depend on bottom.
    factory.service("bottom", tier=2, estimated_users=10)
    factory.service("left", tier=1, estimated_users=700)
    factory.service("right", tier=3, estimated_users=5000)
    factory.service("top", tier=1, estimated_users=3000, depends_on=["left", "right"])
    factory.service("aside", tier=1, estimated_users=99999)
    for name in ("left", "right"):
        responder.post("/api/v1/dependencies", json={"service": name, "depends_on": "bottom"})
    responder.put("/api/v1/features", json={"name": "Home", "services": ["top"]})
    responder.put("/api/v1/features", json={"name": "Other", "services": ["aside"]})
    responder.put("/api/v1/customers", json={"name": "Acme", "services": ["left"]})


def test_blast_radius_over_a_diamond(factory):
    responder = factory.user()
    _diamond(factory, responder)
    radius = responder.get("/api/v1/blast-radius", params={"service": "bottom"}).json()
    assert radius == {
        "failing": ["bottom"],
        "impacted": ["bottom", "left", "right", "top"],
        "dependents": ["left", "right", "top"],
        "tier1_impacted": ["left", "top"],
        "features": ["Home"],
        "customers": ["Acme"],
        "failing_checks": {},
        "at_risk": [],
        "failing_dependencies": [],
        "users_estimate": 5000,
    }
    one_side = responder.get("/api/v1/blast-radius", params={"service": "right"}).json()
    assert one_side["impacted"] == ["right", "top"]
    assert one_side["customers"] == []
    assert one_side["users_estimate"] == 5000


def test_blast_radius_over_a_chain(factory):
    responder = factory.user()
    factory.service("d", tier=1, estimated_users=1)
    factory.service("c", estimated_users=20, depends_on=["d"])
    factory.service("b", estimated_users=300, depends_on=["c"])
    factory.service("a", tier=1, estimated_users=40, depends_on=["b"])
    responder.put("/api/v1/features", json={"name": "Storage", "services": ["d"]})
    responder.put("/api/v1/customers", json={"name": "Initech", "services": ["a"]})
    radius = responder.get("/api/v1/blast-radius", params={"service": "c"}).json()
    assert radius["impacted"] == ["a", "b", "c"]
    assert radius["dependents"] == ["a", "b"]
    assert radius["tier1_impacted"] == ["a"]
    assert radius["features"] == []
    assert radius["customers"] == ["Initech"]
    assert radius["users_estimate"] == 300
    several = responder.get("/api/v1/blast-radius", params=[("service", "a"), ("service", "d")])
    assert several.json()["impacted"] == ["a", "b", "c", "d"]
    assert several.json()["features"] == ["Storage"]
    unknown = responder.get("/api/v1/blast-radius", params={"service": "zzz"})
    assert unknown.status_code == 404


def test_a_service_an_incident_names_cannot_be_deleted(factory):
    admin = factory.user(Role.admin)
    factory.service("search", tier=2)
    factory.service("ranker")
    ref = factory.incident(title="Search slow", services=["search"])
    refused = admin.delete("/api/v1/services/search")
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "name"
    assert "search" in refused.json()["detail"]
    assert admin.get("/api/v1/services/search").status_code == 200
    assert admin.get(f"/api/v1/incidents/{ref}").json()["services"] == ["search"]
    assert admin.delete("/api/v1/services/ranker").status_code == 204


def test_free_text_refuses_nul(factory):
    responder = factory.user()
    answer = responder.post("/api/v1/services", json={"name": "x", "description": "a\x00b"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "description"
    assert responder.get("/api/v1/services").json() == []


def test_concurrent_opposite_edges_never_make_a_cycle(factory, runtime, database_url):
    """Two writers adding a→b and b→a at once: one of them must see the other's edge."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE); the race needs PostgreSQL")
    factory.service("a")
    factory.service("b")
    first = runtime.database.sessions()
    catalog.add_dependency(first, SYSTEM, "a", "b")  # not committed yet
    outcome: list[BaseException | None] = []
    checked = threading.Event()

    def second_writer() -> None:
        try:
            with runtime.transaction() as session:
                catalog.add_dependency(session, SYSTEM, "b", "a")
                checked.set()
            outcome.append(None)
        except BaseException as exc:  # the refusal is the expected outcome; keep it
            outcome.append(exc)
            checked.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    # Give the second writer every chance to pass its cycle check before the first commits;
    # with the graph lock it waits instead.
    checked.wait(2)
    first.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    with runtime.read() as session:
        edges = {(d.service, d.depends_on) for d in catalog.list_dependencies(session)}
    assert edges == {("a", "b")}


TCP = {"kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}


def _made(answer) -> dict:
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _named_by_a_dependent(admin):
    admin.post("/api/v1/services", json={"name": "web", "depends_on": ["db"]})
    return "service 'web' (depends on it)", lambda: admin.delete("/api/v1/dependencies/web/db")


def _named_by_a_feature(admin):
    admin.put("/api/v1/features", json={"name": "Search box", "services": ["db"]})
    return "feature 'Search box'", lambda: admin.put(
        "/api/v1/features", json={"name": "Search box", "services": []}
    )


def _named_by_a_customer(admin):
    admin.put("/api/v1/customers", json={"name": "Initech", "services": ["db"]})
    return "customer 'Initech'", lambda: admin.put(
        "/api/v1/customers", json={"name": "Initech", "services": []}
    )


def _named_by_an_integration(admin):
    body = {"name": "prom", "kind": "alertmanager", "service_name": "db"}
    _made(admin.post("/api/v1/integrations", json=body))
    return "integration 'prom'", lambda: admin.delete("/api/v1/integrations/prom")


def _named_by_a_routing_rule(admin):
    _made(admin.post("/api/v1/routing-rules", json={"name": "db-team", "service": "db"}))
    return "routing rule 'db-team'", lambda: admin.delete("/api/v1/routing-rules/db-team")


def _named_by_a_maintenance_window(admin):
    body = {"service_name": "db", "ends_at": "2999-01-01T00:00:00Z"}
    window = _made(admin.post("/api/v1/maintenance-windows", json=body))
    return f"maintenance window {window['id']}", lambda: admin.delete(
        f"/api/v1/maintenance-windows/{window['id']}"
    )


def _named_by_a_probe(admin):
    _made(admin.post("/api/v1/probes", json={"name": "db-tcp", "service": "db", **TCP}))
    return "probe 'db-tcp'", lambda: admin.delete("/api/v1/probes/db-tcp")


def _named_by_an_slo(admin):
    body = {"name": "db-ok", "service": "db", "objective_percent": 99, "sli": {"kind": "events"}}
    _made(admin.post("/api/v1/slos", json=body))
    return "SLO 'db-ok'", lambda: admin.delete("/api/v1/slos/db-ok")


def _named_by_an_sla_target(admin):
    _made(admin.post("/api/v1/probes", json={"name": "edge-tcp", **TCP}))  # of no service
    body = {"service": "db", "kind": "uptime", "target_percent": 99, "probe": "edge-tcp"}
    target = _made(admin.put("/api/v1/sla/targets", json=body))
    return f"SLA target {target['id']} (uptime)", lambda: admin.delete(
        f"/api/v1/sla/targets/{target['id']}"
    )


@pytest.mark.parametrize(
    "refer",
    [
        _named_by_a_dependent,
        _named_by_a_feature,
        _named_by_a_customer,
        _named_by_an_integration,
        _named_by_a_routing_rule,
        _named_by_a_maintenance_window,
        _named_by_a_probe,
        _named_by_an_slo,
        _named_by_an_sla_target,
    ],
)
def test_a_service_something_still_names_cannot_be_deleted(factory, runtime, refer):
    admin = factory.user(Role.admin)
    factory.service("db")
    named, remove = refer(admin)
    before = row_counts(runtime)
    refused = admin.delete("/api/v1/services/db")
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "name"
    assert refused.json()["references"] == [named]
    assert f"service 'db' is still referred to by {named};" in refused.json()["detail"]
    assert row_counts(runtime) == before
    assert remove().status_code in (200, 204)
    assert admin.delete("/api/v1/services/db").status_code == 204


def test_a_refused_delete_names_every_reference(factory):
    admin = factory.user(Role.admin)
    factory.service("db")
    factory.service("disk")
    admin.post("/api/v1/services", json={"name": "web", "depends_on": ["db"]})
    admin.post("/api/v1/dependencies", json={"service": "db", "depends_on": "disk"})
    ref = factory.incident(title="db down", services=["db"])
    _made(admin.post("/api/v1/routing-rules", json={"name": "db-team", "service": "db"}))
    refused = admin.delete("/api/v1/services/db").json()
    assert refused["references"] == [
        "service 'web' (depends on it)",
        f"incident {ref}",
        "routing rule 'db-team'",
    ]
    assert admin.delete("/api/v1/services/disk").json()["references"] == [
        "service 'db' (depends on it)"
    ]


def test_what_only_describes_the_service_goes_with_it(factory):
    admin = factory.user(Role.admin)
    factory.service("disk")
    admin.post("/api/v1/services", json={"name": "cache", "depends_on": ["disk"]})
    # a revoked integration is history, not a reference
    body = {"name": "old", "kind": "alertmanager", "service_name": "cache"}
    _made(admin.post("/api/v1/integrations", json=body))
    assert admin.delete("/api/v1/integrations/old").status_code == 204
    assert admin.delete("/api/v1/services/cache").status_code == 204
    assert admin.get("/api/v1/services/disk").json()["dependents"] == []
    assert admin.get("/api/v1/dependencies").json() == []


def _waiting_for_a_lock(runtime, working: threading.Thread) -> None:
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


def _names_db_as_a_routing_rule(session, admin):
    signals.create_routing_rule(session, admin, RoutingRuleCreate(name="db-team", service="db"))


def _names_db_as_an_integration(session, admin):
    data = IntegrationCreate(name="prom", kind="alertmanager", service_name="db")
    signals.create_integration(session, admin, data)


def _names_db_as_a_maintenance_window(session, admin):
    ends = clock.now() + timedelta(hours=1)
    signals.create_maintenance_window(
        session, admin, MaintenanceWindowCreate(service_name="db", ends_at=ends)
    )


def _names_db_in_the_whole_rule_list(session, admin):
    rules = [RoutingRuleIn(name="web-team", service="web"), RoutingRuleIn(name="db", service="db")]
    signals.replace_routing_rules(session, admin, rules)


NAMING_DB = [
    _names_db_as_a_routing_rule,
    _names_db_as_an_integration,
    _names_db_as_a_maintenance_window,
    _names_db_in_the_whole_rule_list,
]


@pytest.mark.parametrize("name_db", NAMING_DB)
def test_a_record_made_while_its_service_is_deleted_keeps_the_service(
    factory, runtime, database_url, name_db
):
    """PostgreSQL: the delete read no reference (the record was not committed yet), then
    deleted the service, and the record committed naming a service that no longer existed.
    The record now holds the service's row (FOR KEY SHARE) and the delete takes it before it
    looks: it waits, then sees the record and refuses."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE); the race needs PostgreSQL")
    factory.service("db")
    factory.service("web")
    admin = factory.user(Role.admin).actor
    naming = runtime.database.sessions()
    name_db(naming, admin)  # checked that db exists; not committed yet
    outcome: list[BaseException | None] = []

    def delete() -> None:
        try:
            with runtime.transaction() as session:
                catalog.delete_service(session, admin, "db")
            outcome.append(None)
        except BaseException as exc:  # the refusal is the expected outcome; keep it
            outcome.append(exc)

    thread = threading.Thread(target=delete)
    thread.start()
    _waiting_for_a_lock(runtime, thread)  # the delete waits for the record, or is done
    naming.commit()
    naming.close()
    thread.join(30)
    assert not thread.is_alive()
    with runtime.read() as session:
        names = {s.name for s in catalog.list_services(session)}
    assert "db" in names, "the record names a service that was deleted"
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome


@pytest.mark.parametrize("name_db", NAMING_DB)
def test_a_record_made_after_its_service_was_deleted_is_refused(
    factory, runtime, database_url, name_db
):
    """The other order: the delete holds the row when the record looks for the service: the
    record waits, then finds none and is refused (422, naming the field)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE); the race needs PostgreSQL")
    factory.service("db")
    factory.service("web")
    admin = factory.user(Role.admin).actor
    deleting = runtime.database.sessions()
    catalog.delete_service(deleting, admin, "db")  # not committed yet
    outcome: list[BaseException | None] = []

    def name() -> None:
        try:
            with runtime.transaction() as session:
                name_db(session, admin)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=name)
    thread.start()
    _waiting_for_a_lock(runtime, thread)
    deleting.commit()
    deleting.close()
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], InvalidInput), outcome
    assert "no service named 'db'" in outcome[0].detail
    with runtime.read() as session:
        assert _naming_db(session) == []


def _naming_db(session):
    """The signal records that name the service db."""
    return [
        *session.scalars(select(RoutingRule.name).where(RoutingRule.service_name == "db")),
        *session.scalars(select(Integration.name).where(Integration.service_name == "db")),
        *session.scalars(
            select(MaintenanceWindow.id).where(MaintenanceWindow.service_name == "db")
        ),
    ]
