"""Service health: a failing check (probe, SLO) marks the service failing, its dependents at
risk, and blast radii show both (issue 3, dependency failures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.catalog import service as catalog
from firetower.catalog.models import ServiceCheck
from firetower.clock import FrozenClock
from tests.factories import Factory

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _chain(factory: Factory) -> None:
    """a → b → c → d: a depends on b, which depends on c, which depends on d."""
    factory.service("d")
    factory.service("c", depends_on=["d"])
    factory.service("b", depends_on=["c"])
    factory.service("a", depends_on=["b"])


def _report(factory: Factory, service: str, check: str, failing: bool, detail: str = "") -> None:
    with factory.runtime.transaction() as session:
        catalog.report_health(
            session, service_name=service, check=check, failing=failing, detail=detail
        )


def _health(viewer, name: str) -> tuple[str, list[str], list[str]]:
    shown = viewer.get(f"/api/v1/services/{name}").json()
    return shown["health"], shown["failing_checks"], shown["at_risk_from"]


def test_a_failing_check_marks_the_service_failing_and_its_dependents_at_risk(
    factory: Factory,
) -> None:
    viewer = factory.user(Role.viewer)
    _chain(factory)
    assert _health(viewer, "a") == ("ok", [], [])

    _report(factory, "c", "probe:c-home", failing=True, detail="HTTP 503")
    assert _health(viewer, "c") == ("failing", ["probe:c-home"], [])
    assert _health(viewer, "b") == ("at_risk", [], ["c"])
    assert _health(viewer, "a") == ("at_risk", [], ["c"])
    assert _health(viewer, "d") == ("ok", [], []), "what c depends on is not at risk"

    _report(factory, "c", "probe:c-home", failing=False)
    assert [_health(viewer, n)[0] for n in "abcd"] == ["ok", "ok", "ok", "ok"]


def test_blast_radius_shows_failing_checks_at_risk_dependents_and_failing_dependencies(
    factory: Factory,
) -> None:
    viewer = factory.user(Role.viewer)
    _chain(factory)
    _report(factory, "c", "slo:c-availability", failing=True)

    from_c = viewer.get("/api/v1/blast-radius", params={"service": "c"}).json()
    assert from_c["failing_checks"] == {"c": ["slo:c-availability"]}
    assert from_c["at_risk"] == ["a", "b"]
    assert from_c["failing_dependencies"] == []

    # A user report about "a": the radius names the failing service upstream as a likely cause.
    from_a = viewer.get("/api/v1/blast-radius", params={"service": "a"}).json()
    assert from_a["failing_checks"] == {}
    assert from_a["at_risk"] == []
    assert from_a["failing_dependencies"] == ["c"]

    ref = factory.incident(services=["c"], severity="SEV3")
    incident = viewer.get(f"/api/v1/incidents/{ref}").json()
    assert incident["blast_radius"]["at_risk"] == ["a", "b"]
    assert incident["blast_radius"]["failing_checks"] == {"c": ["slo:c-availability"]}


def test_one_failing_check_of_several_keeps_the_service_failing(factory: Factory) -> None:
    viewer = factory.user(Role.viewer)
    factory.service("api")
    _report(factory, "api", "probe:api-home", failing=True)
    _report(factory, "api", "slo:api-latency", failing=True)
    _report(factory, "api", "probe:api-home", failing=False)
    assert _health(viewer, "api") == ("failing", ["slo:api-latency"], [])


def test_changed_at_moves_only_when_the_state_changes(factory: Factory) -> None:
    factory.service("api")
    with FrozenClock(T0) as frozen:
        _report(factory, "api", "probe:api-home", failing=True, detail="timeout")
        frozen.advance(minutes=5)
        _report(factory, "api", "probe:api-home", failing=True, detail="HTTP 500")
        with factory.runtime.read() as session:
            row = session.scalars(select(ServiceCheck)).one()
            assert (row.changed_at, row.detail) == (T0, "HTTP 500")
        frozen.advance(minutes=5)
        _report(factory, "api", "probe:api-home", failing=False)
        with factory.runtime.read() as session:
            row = session.scalars(select(ServiceCheck)).one()
            assert (row.failing, row.changed_at) == (False, T0 + timedelta(minutes=10))


def test_checks_of_unknown_services_are_ignored_and_deleted_services_take_theirs(
    factory: Factory,
) -> None:
    admin = factory.user(Role.admin)
    _report(factory, "ghost", "probe:ghost", failing=True)
    factory.service("api")
    _report(factory, "api", "probe:api-home", failing=True)
    assert admin.delete("/api/v1/services/api").status_code == 204
    with factory.runtime.read() as session:
        assert session.scalars(select(ServiceCheck)).all() == []


def test_the_console_marks_failing_and_at_risk_services(factory: Factory, client) -> None:
    from tests.factories import login

    factory.user(Role.viewer, email="vi@example.com", password="correct horse battery staple")
    assert login(client, "vi@example.com", "correct horse battery staple").status_code == 303
    _chain(factory)
    _report(factory, "c", "probe:c-home", failing=True)
    catalog_page = client.get("/catalog", headers={"accept": "text/html"}).text
    assert 'title="probe:c-home">failing</span>' in catalog_page
    assert catalog_page.count('title="depends on c">at risk</span>') == 2  # a and b

    ref = factory.incident(services=["c"], severity="SEV3")
    incident_page = client.get(f"/incidents/{ref}", headers={"accept": "text/html"}).text
    assert '<dd class="at-risk"><span class="risk">a, b</span></dd>' in incident_page
    assert "c: probe:c-home" in incident_page
