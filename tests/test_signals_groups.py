"""Flapping detection and alert groups: a flapping alert is kept but opens nothing until it
is stable for a whole window; alerts group by their integration's label keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.incidents import service as incident_service
from firetower.incidents.lifecycle import Status
from firetower.incidents.models import Incident, TimelineEvent
from firetower.jobs import Job
from firetower.runtime import Runtime
from firetower.signals import service as signals_service
from firetower.signals.models import Alert
from firetower.signals.service import GROUP_KEY_LENGTH, NOTIFY_KIND, group_key_of
from tests.factories import SYSTEM, ApiUser, Factory, row_counts
from tests.signals_support import (
    alert_by_fingerprint,
    incident_count,
    run_due_jobs,
    scheduled_worker,
    sql_run,
    sqlite_plan,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _integration(admin: ApiUser, name: str, service: str | None = None, **extra: Any) -> Any:
    answer = admin.post(
        "/api/v1/integrations",
        json={"name": name, "kind": "alertmanager", "service_name": service, **extra},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _post(
    factory: Factory, key: str, fingerprint: str, status: str = "firing", **labels: str
) -> Any:
    alert = {
        "status": status,
        "labels": {"alertname": "HighLatency", **labels},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T10:05:00Z",
        "fingerprint": fingerprint,
    }
    answer = factory.client.post(
        f"/ingest/alertmanager/{key}", json={"version": "4", "status": status, "alerts": [alert]}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _close_incidents(runtime: Runtime) -> None:
    """Resolve every open incident the way a responder would (through the service)."""
    with runtime.transaction() as session:
        for incident in session.scalars(select(Incident).where(Incident.status != "resolved")):
            incident_service.transition(session, SYSTEM, incident, Status.resolved)


def test_flap_settings_default_and_are_settable(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    plain = _integration(admin, "plain")
    assert plain["flap_threshold"] == 5 and plain["flap_window_seconds"] == 600
    assert plain["group_by"] == ["alertname", "service"]
    custom = _integration(
        admin, "custom", flap_threshold=3, flap_window_seconds=60, group_by=["team"]
    )
    assert custom["flap_threshold"] == 3 and custom["flap_window_seconds"] == 60
    assert custom["group_by"] == ["team"]


def test_bad_settings_are_refused_and_store_nothing(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    for extra in (
        {"flap_threshold": 1},
        {"flap_threshold": "many"},
        {"flap_window_seconds": 0},
        {"group_by": ["not a label"]},
        {"group_by": ["job", "job"]},
        {"group_by": "job"},
    ):
        answer = admin.post(
            "/api/v1/integrations", json={"name": "bad", "kind": "alertmanager", **extra}
        )
        assert answer.status_code == 422, (extra, answer.text)
    assert row_counts(runtime) == before


def test_flapping_is_marked_after_n_changes_within_the_window_and_not_before(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", factory.service("checkout"), flap_threshold=4)["key"]
    with FrozenClock(T0) as frozen:
        first = _post(factory, key, "f")  # new: not a change
        assert len(first["opened"]) == 1
        for status in ("resolved", "firing", "resolved"):  # changes 1..3
            frozen.advance(seconds=30)
            _post(factory, key, "f", status)
            assert not alert_by_fingerprint(runtime, "f").flapping
        frozen.advance(seconds=30)
        _post(factory, key, "f")  # the 4th change within 600 s
        alert = alert_by_fingerprint(runtime, "f")
        assert alert.flapping and alert.count == 5
        assert len(alert.state_changes) == 4


def test_changes_spread_over_more_than_the_window_do_not_flap(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", flap_threshold=3, flap_window_seconds=100)["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "slow")
        for status in ("resolved", "firing", "resolved", "firing", "resolved"):
            frozen.advance(seconds=60)  # only one earlier change is ever within 100 s
            _post(factory, key, "slow", status)
            assert not alert_by_fingerprint(runtime, "slow").flapping
        repeats = ("resolved", "resolved", "resolved")  # repeats of one state: no change
        for status in repeats:
            frozen.advance(seconds=1)
            _post(factory, key, "slow", status)
        assert not alert_by_fingerprint(runtime, "slow").flapping


def test_a_flapping_alert_opens_nothing_until_it_is_stable_for_the_window(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=3, flap_window_seconds=300
    )["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "f")  # opens INC-1
        for status in ("resolved", "firing", "resolved"):
            frozen.advance(seconds=10)
            _post(factory, key, "f", status)
        assert alert_by_fingerprint(runtime, "f").flapping
        _close_incidents(runtime)

        frozen.advance(seconds=10)
        answer = _post(factory, key, "f")  # firing again while flapping: held
        assert answer["opened"] == []
        assert incident_count(runtime) == 1
        assert alert_by_fingerprint(runtime, "f").flapping

        control = _post(factory, key, "steady")  # a steady alert of the same service opens one
        assert len(control["opened"]) == 1
        _close_incidents(runtime)

        frozen.advance(seconds=299)  # not yet a whole window without a change
        assert _post(factory, key, "f")["opened"] == []
        assert alert_by_fingerprint(runtime, "f").flapping

        frozen.advance(seconds=2)  # 301 s since the last change: stable again
        answer = _post(factory, key, "f")
        assert len(answer["opened"]) == 1
        alert = alert_by_fingerprint(runtime, "f")
        assert not alert.flapping and alert.state_changes == []
        assert alert.incident_id is not None
        assert incident_count(runtime) == 3


def test_a_flapping_alert_that_fires_after_a_quiet_window_routes(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=2, flap_window_seconds=60
    )["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "f")
        frozen.advance(seconds=1)
        _post(factory, key, "f", "resolved")
        frozen.advance(seconds=1)
        _post(factory, key, "f")  # two changes: flapping, held
        frozen.advance(seconds=1)
        _post(factory, key, "f", "resolved")
        assert alert_by_fingerprint(runtime, "f").flapping
        _close_incidents(runtime)
        frozen.advance(seconds=61)  # quiet for a whole window, then a real change
        answer = _post(factory, key, "f")
        assert len(answer["opened"]) == 1
        alert = alert_by_fingerprint(runtime, "f")
        assert not alert.flapping and len(alert.state_changes) == 1


def test_a_flapping_alert_does_not_attach_to_an_open_incident(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=2, flap_window_seconds=300
    )["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "flappy", "resolved")
        frozen.advance(seconds=1)
        _post(factory, key, "flappy")  # change 1: opens an incident
        assert alert_by_fingerprint(runtime, "flappy").incident_id is not None
        frozen.advance(seconds=1)
        _post(factory, key, "flappy", "resolved")  # change 2: flapping
        assert alert_by_fingerprint(runtime, "flappy").flapping
        with runtime.transaction() as session:  # forget the attachment
            session.execute(update(Alert).values(incident_id=None))
        frozen.advance(seconds=1)
        _post(factory, key, "flappy")
        alert = alert_by_fingerprint(runtime, "flappy")
        assert alert.flapping and alert.incident_id is None


ALL_RESOLVED = "The 1 alert attached to this incident has resolved."


def _all_resolved_notes(runtime: Runtime, incident_id: int) -> int:
    with runtime.read() as session:
        texts = session.scalars(
            select(TimelineEvent.text).where(
                TimelineEvent.incident_id == incident_id, TimelineEvent.kind == "note"
            )
        )
        return sum(text == ALL_RESOLVED for text in texts)


def test_a_flapping_alert_resolves_without_noting_its_incident_until_it_is_stable(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=3, flap_window_seconds=300
    )["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "f")  # opens the incident
        incident_id = alert_by_fingerprint(runtime, "f").incident_id
        assert incident_id is not None
        frozen.advance(seconds=1)
        _post(factory, key, "f", "resolved")  # change 1: every alert resolved, noted
        assert _all_resolved_notes(runtime, incident_id) == 1
        for status in ("firing", "resolved", "firing", "resolved"):  # flapping from change 3
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        assert alert_by_fingerprint(runtime, "f").flapping
        assert _all_resolved_notes(runtime, incident_id) == 1  # its resolves were held
        _close_incidents(runtime)  # resolved by hand while it flaps
        for status in ("firing", "resolved", "firing", "resolved"):
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        assert _all_resolved_notes(runtime, incident_id) == 1
        assert incident_count(runtime) == 1
        frozen.advance(seconds=301)  # stable for a window: the resolve that lifts the mark counts
        _post(factory, key, "f", "resolved")
        assert not alert_by_fingerprint(runtime, "f").flapping
        assert _all_resolved_notes(runtime, incident_id) == 2


def _flapping_integration_resolving_on_clear(factory: Factory) -> str:
    """The key of an integration whose alerts flap at 3 changes in 300 s, with a rule that
    resolves their incidents once every alert has cleared."""
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=3, flap_window_seconds=300
    )["key"]
    rule = {"name": "all", "on_clear": "resolve"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    return str(key)


def test_a_flapping_alerts_held_resolve_does_not_let_another_alert_clear_the_incident(
    factory: Factory, runtime: Runtime
) -> None:
    """f's held resolve is not "resolved" to g's resolve either: the incident stays open, with
    no note, until f's mark is lifted."""
    key = _flapping_integration_resolving_on_clear(factory)
    with FrozenClock(T0) as frozen:
        _post(factory, key, "f")  # opens the incident
        _post(factory, key, "g")  # joins it
        incident_id = alert_by_fingerprint(runtime, "g").incident_id
        assert incident_id == alert_by_fingerprint(runtime, "f").incident_id is not None
        for status in ("resolved", "firing", "resolved"):  # flapping from change 3: held
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        assert alert_by_fingerprint(runtime, "f").flapping
        frozen.advance(seconds=1)
        _post(factory, key, "g", "resolved")
        with runtime.read() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None and incident.status == "triage"
        with runtime.read() as session:
            notes = session.scalars(
                select(TimelineEvent.text).where(
                    TimelineEvent.incident_id == incident_id, TimelineEvent.kind == "note"
                )
            )
            assert not [text for text in notes if "resolved" in text]
        frozen.advance(seconds=301)  # stable for a window: the resolve that lifts the mark
        _post(factory, key, "f", "resolved")
        with runtime.read() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None and incident.status == "resolved"


def test_an_incident_resolved_by_hand_is_noted_once_however_often_its_alert_clears(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", factory.service("checkout"), flap_threshold=100)["key"]
    _post(factory, key, "f")
    incident_id = alert_by_fingerprint(runtime, "f").incident_id
    assert incident_id is not None
    _close_incidents(runtime)  # resolved by hand while the alert still fires
    # From now on the alert only notifies: it stays the resolved incident's alert.
    rule = {"name": "quiet", "action": "notify"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    for _ in range(3):
        _post(factory, key, "f", "resolved")
        _post(factory, key, "f")
    _post(factory, key, "f", "resolved")
    assert alert_by_fingerprint(runtime, "f").incident_id == incident_id
    assert _all_resolved_notes(runtime, incident_id) == 1


def test_groups_by_the_default_keys(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "am")["key"]
    with FrozenClock(T0) as frozen:
        _post(factory, key, "a1", service="api", pod="1")
        frozen.advance(seconds=1)
        _post(factory, key, "a2", service="api", pod="2")
        frozen.advance(seconds=1)
        _post(factory, key, "a2", "resolved", service="api", pod="2")
        frozen.advance(seconds=1)
        _post(factory, key, "w1", service="web", pod="1")
        frozen.advance(seconds=1)
        _post(factory, key, "n1", pod="3")  # no service label: grouped by alertname only
    assert alert_by_fingerprint(runtime, "a1").group_key == "alertname=HighLatency,service=api"
    viewer = factory.user(Role.viewer)
    answer = viewer.get("/api/v1/alert-groups")
    assert answer.status_code == 200, answer.text
    groups = {g["group_key"]: g for g in answer.json()}
    assert set(groups) == {
        "alertname=HighLatency,service=api",
        "alertname=HighLatency,service=web",
        "alertname=HighLatency",
    }
    api = groups["alertname=HighLatency,service=api"]
    assert (api["firing"], api["resolved"], api["integration"]) == (1, 1, "am")
    assert api["incident"] is None
    assert answer.json()[0]["group_key"] == "alertname=HighLatency"  # newest first


def test_groups_by_custom_keys_with_the_incident(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", factory.service("checkout"), group_by=["team", "env"])["key"]
    _post(factory, key, "x", team="pay", env="prod", service="a")
    _post(factory, key, "y", env="prod", team="pay", service="b")
    _post(factory, key, "z", team="pay", env="stage")
    assert alert_by_fingerprint(runtime, "x").group_key == "env=prod,team=pay"  # sorted by key
    groups = {
        g["group_key"]: g for g in factory.user(Role.viewer).get("/api/v1/alert-groups").json()
    }
    assert set(groups) == {"env=prod,team=pay", "env=stage,team=pay"}
    assert groups["env=prod,team=pay"]["firing"] == 2
    assert groups["env=prod,team=pay"]["incident"] == "INC-1"


def test_alert_list_filters_and_roles(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    one = _integration(admin, "one", flap_threshold=2)["key"]
    two = _integration(admin, "two")["key"]
    _post(factory, one, "r", "resolved")
    _post(factory, one, "r")
    _post(factory, one, "r", "resolved")  # two changes: flapping
    _post(factory, two, "t")
    viewer = factory.user(Role.viewer)

    def fingerprints(**params: Any) -> list[str]:
        answer = viewer.get("/api/v1/alerts", params=params)
        assert answer.status_code == 200, answer.text
        return [a["fingerprint"] for a in answer.json()]

    assert sorted(fingerprints()) == ["r", "t"]
    assert fingerprints(status="resolved") == ["r"]
    assert fingerprints(integration="two") == ["t"]
    assert fingerprints(flapping="true") == ["r"]
    assert fingerprints(flapping="false") == ["t"]
    assert fingerprints(silenced="true") == []
    assert len(fingerprints(limit=1)) == 1
    listed = viewer.get("/api/v1/alerts", params={"integration": "one"}).json()[0]
    assert listed["flapping"] and listed["group_key"] == "alertname=HighLatency"

    for params in ({"status": "burning"}, {"limit": 0}, {"limit": 5000}, {"flapping": "x"}):
        assert viewer.get("/api/v1/alerts", params=params).status_code == 422, params
    assert viewer.get("/api/v1/alerts", params={"integration": "nope"}).status_code == 404
    assert viewer.get("/api/v1/alert-groups", params={"limit": 0}).status_code == 422
    for path in ("/api/v1/alerts", "/api/v1/alert-groups"):
        assert factory.client.get(path).status_code == 401


def test_the_lists_filter_on_built_in_integrations_and_name_the_parameter(
    factory: Factory, runtime: Runtime
) -> None:
    from firetower.monitors import probes, slos
    from firetower.signals import service as signals

    admin = factory.user(Role.admin)
    _post(factory, _integration(admin, "prom")["key"], "p")
    for name, kind, fingerprint in (
        (probes.INTEGRATION, probes.SIGNAL_KIND, "probe:home"),
        (slos.INTEGRATION, slos.SIGNAL_KIND, "slo:latency"),
    ):
        with runtime.transaction() as session:
            signals.raise_internal(
                session,
                runtime.settings.severity_policy,
                integration_name=name,
                kind=kind,
                signal=signals.Signal(fingerprint=fingerprint, status="firing", labels={"a": "b"}),
            )
    viewer = factory.user(Role.viewer)
    for name, fingerprint in (("@probes", "probe:home"), ("@slos", "slo:latency")):
        alerts = viewer.get("/api/v1/alerts", params={"integration": name})
        assert alerts.status_code == 200, alerts.text
        assert [a["fingerprint"] for a in alerts.json()] == [fingerprint]
        groups = viewer.get("/api/v1/alert-groups", params={"integration": name})
        assert groups.status_code == 200, groups.text
        assert [g["integration"] for g in groups.json()] == [name]
    for path in ("/api/v1/alerts", "/api/v1/alert-groups"):
        missing = viewer.get(path, params={"integration": "@nosuch"})
        assert missing.status_code == 404, missing.text
        assert missing.json()["field"] == "integration"


def _incident_status(runtime: Runtime, incident_id: int) -> str:
    with runtime.read() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident.status


def test_a_flapping_alert_that_settles_resolved_clears_its_incident_without_another_signal(
    factory: Factory, runtime: Runtime
) -> None:
    """Alertmanager sends a resolve once: the worker's minutely job lifts the mark once the
    alert has stayed resolved for a whole window, and the incident clears as its rule says."""
    key = _flapping_integration_resolving_on_clear(factory)
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        _post(factory, key, "f")  # opens the incident
        _post(factory, key, "steady")  # joins it, and keeps firing
        incident_id = alert_by_fingerprint(runtime, "f").incident_id
        assert incident_id is not None
        for status in ("resolved", "firing", "resolved"):  # flapping from change 3: held
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        assert alert_by_fingerprint(runtime, "f").flapping
        _post(factory, key, "steady", "resolved")
        assert _incident_status(runtime, incident_id) == "triage"  # f's resolve is held

        frozen.advance(seconds=240)  # the job runs, but f changed within the window
        run_due_jobs(worker)
        assert alert_by_fingerprint(runtime, "f").flapping
        assert _incident_status(runtime, incident_id) == "triage"

        frozen.advance(seconds=120)  # 363 s without a change, and no signal since
        run_due_jobs(worker)
        assert not alert_by_fingerprint(runtime, "f").flapping
        assert _incident_status(runtime, incident_id) == "resolved"
        with runtime.read() as session:
            entries = session.execute(
                select(TimelineEvent.actor, TimelineEvent.text).where(
                    TimelineEvent.incident_id == incident_id
                )
            ).all()
        resolve = "Resolved by routing rule all (on_clear: resolve): all 2 alerts attached"
        assert [actor for actor, text in entries if text.startswith(resolve)] == ["integration:am"]


def test_the_flapping_job_notes_a_cleared_incident_once_with_the_default_on_clear(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=3, flap_window_seconds=60
    )["key"]
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        _post(factory, key, "f")  # opens INC-1
        incident_id = alert_by_fingerprint(runtime, "f").incident_id
        assert incident_id is not None
        frozen.advance(seconds=1)
        _post(factory, key, "f", "resolved")  # change 1: every alert resolved, noted
        for status in ("firing", "resolved"):  # flapping from change 3: its resolve held
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        assert alert_by_fingerprint(runtime, "f").flapping
        assert _all_resolved_notes(runtime, incident_id) == 1

        frozen.advance(seconds=120)
        run_due_jobs(worker)
        assert not alert_by_fingerprint(runtime, "f").flapping
        assert _all_resolved_notes(runtime, incident_id) == 2  # the lifted resolve's note
        assert _incident_status(runtime, incident_id) == "triage"  # note, not resolve

        frozen.advance(seconds=120)  # nothing flaps: later runs add nothing
        run_due_jobs(worker)
        assert _all_resolved_notes(runtime, incident_id) == 2


def test_an_alert_that_stops_flapping_while_firing_routes_without_another_signal(
    factory: Factory, runtime: Runtime
) -> None:
    """A sender may not repeat a firing alert for hours (Alertmanager's repeat_interval), or
    ever: once the alert has fired unchanged for a whole window, the job routes it."""
    admin = factory.user(Role.admin)
    key = _integration(
        admin, "am", factory.service("checkout"), flap_threshold=3, flap_window_seconds=300
    )["key"]
    rule = {"name": "checkout-sev1", "action": "open", "severity": "SEV1"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    notify = {"name": "pager", "action": "notify", "continue": True}
    assert admin.post("/api/v1/routing-rules", json={**notify, "position": 0}).status_code == 201
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        _post(factory, key, "f")  # opens INC-1
        for status in ("resolved", "firing", "resolved"):  # flapping from change 3
            frozen.advance(seconds=1)
            _post(factory, key, "f", status)
        _close_incidents(runtime)
        frozen.advance(seconds=1)
        _post(factory, key, "f")  # fires again while flapping: held
        assert alert_by_fingerprint(runtime, "f").flapping
        assert incident_count(runtime) == 1

        frozen.advance(seconds=240)  # changed within the window: still held
        run_due_jobs(worker)
        assert alert_by_fingerprint(runtime, "f").flapping
        assert incident_count(runtime) == 1

        frozen.advance(seconds=120)
        with runtime.read() as session:
            notified_before = session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == NOTIFY_KIND)
            )
        run_due_jobs(worker)
        alert = alert_by_fingerprint(runtime, "f")
        assert not alert.flapping and alert.incident_id is not None
        assert incident_count(runtime) == 2
        with runtime.read() as session:
            incident = session.get(Incident, alert.incident_id)
            assert incident is not None and incident.severity == "SEV1"  # routed by its rule
            notified = session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == NOTIFY_KIND)
            )
        assert notified == notified_before + 1  # the notify rule fired for it, once

        frozen.advance(seconds=10)
        answer = _post(factory, key, "f")  # the sender's repeat: routed already, no new one
        assert answer["opened"] == []
        assert incident_count(runtime) == 2


def test_the_flapping_job_reads_only_the_flapping_alerts(
    factory: Factory, runtime: Runtime
) -> None:
    """SQLite: the job's read goes through the partial index of flapping alerts, not a walk
    of every alert, each minute."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("a SQLite plan; PostgreSQL's planner picks by its statistics")
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", factory.service("checkout"))["key"]
    _post(factory, key, "f")
    with sql_run(runtime.database.engine) as ran, runtime.read() as session:
        assert not signals_service.find_held(session, signals_service.MuteWatch())
    reads = [(s, p) for s, p in ran if s.startswith("SELECT") and "flapping" in s]
    assert len(reads) == 1, ran
    with runtime.database.engine.connect() as connection:
        plan = sqlite_plan(connection, *reads[0])
    assert plan == "SCAN alerts USING INDEX ix_alerts_flapping", plan


def test_a_small_incidents_alerts_are_read_by_incident_not_by_walking_a_status(
    factory: Factory, runtime: Runtime
) -> None:
    """SQLite keeps no statistics: asked for an incident's newest firing alerts, it walked
    every firing alert by last-seen time (a storm's, for a small incident). An incident with
    few alerts of a status has them read through its own index entries and sorted."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("a SQLite plan; PostgreSQL's planner picks by its statistics")
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", factory.service("checkout"))["key"]
    _post(factory, key, "f", severity="critical")
    ref = f"INC-{alert_by_fingerprint(runtime, 'f').incident_id}"
    with sql_run(runtime.database.engine) as ran, runtime.read() as session:
        listed = signals_service.list_alerts(session, status="firing", incident=ref)
    assert [a.fingerprint for a in listed] == ["f"]
    reads = [(s, p) for s, p in ran if s.startswith("SELECT alerts.id")]
    assert len(reads) == 1, ran
    with runtime.database.engine.connect() as connection:
        plan = sqlite_plan(connection, *reads[0])
    assert "ix_alerts_incident_status (incident_id=?)" in plan, plan
    assert "ix_alerts_status_last_seen" not in plan, plan


def test_labels_that_spell_another_groups_key_fall_into_their_own_group(
    factory: Factory, runtime: Runtime
) -> None:
    """{a: "x,b=y"} and {a: "x", b: "y"} once both had the key "a=x,b=y": one group."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "am", group_by=["a", "b"])["key"]
    _post(factory, key, "joined", a="x,b=y")
    _post(factory, key, "apart", a="x", b="y")
    _post(factory, key, "slashed", a="x\\", b="y")
    assert alert_by_fingerprint(runtime, "apart").group_key == "a=x,b=y"  # ordinary: unchanged
    viewer = factory.user(Role.viewer)
    groups = viewer.get("/api/v1/alert-groups", params={"integration": "am"})
    assert groups.status_code == 200, groups.text
    keys = sorted(g["group_key"] for g in groups.json())
    assert keys == ["a=x,b=y", "a=x\\,b\\=y", "a=x\\\\,b=y"]
    assert all(g["firing"] == 1 for g in groups.json())
    for group_key, fingerprint in (
        ("a=x,b=y", "apart"),
        ("a=x\\,b\\=y", "joined"),
        ("a=x\\\\,b=y", "slashed"),
    ):
        alerts = viewer.get("/api/v1/alerts", params={"group_key": group_key})
        assert alerts.status_code == 200, alerts.text
        assert [a["fingerprint"] for a in alerts.json()] == [fingerprint]


label_names = st.sampled_from(["a", "b", "c", "a_b"])
# Values made of the characters that build a key, so that collisions are likely to be tried.
label_values = st.text(alphabet="ab,=\\#", max_size=8) | st.text(alphabet="x,=", max_size=700)
assignments = st.dictionaries(label_names, label_values, max_size=4)


def _meaning(keys: tuple[str, ...], labels: dict[str, str]) -> dict[str, str]:
    """What a group key stands for: the group-by labels an alert carries with a value."""
    return {k: v for k, v in labels.items() if k in keys and v != ""}


def _read_back(group_key: str) -> dict[str, str]:
    """The labels a group key (not a shortened one) spells: split at the "," and "=" that no
    backslash escapes, and drop the escapes."""
    labels: dict[str, str] = {}
    if not group_key:
        return labels
    parts: list[str] = [""]
    escaped = False
    for char in group_key + ",":
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and len(parts) == 1:
            parts.append("")
        elif char == ",":
            assert len(parts) == 2, group_key
            labels[parts[0]] = parts[1]
            parts = [""]
        else:
            parts[-1] += char
    return labels


@settings(max_examples=400, deadline=None)
@given(
    keys=st.sets(label_names, max_size=4).map(lambda s: tuple(sorted(s))),
    first=assignments,
    second=assignments,
)
def test_distinct_label_assignments_give_distinct_group_keys(
    keys: tuple[str, ...], first: dict[str, str], second: dict[str, str]
) -> None:
    """A key reads back as the labels it was made of, so no two assignments share one."""
    group_key = group_key_of(keys, first)
    assert len(group_key) <= GROUP_KEY_LENGTH
    if len(group_key) < GROUP_KEY_LENGTH:
        assert _read_back(group_key) == _meaning(keys, first)
    same_key = group_key == group_key_of(keys, second)
    assert same_key == (_meaning(keys, first) == _meaning(keys, second))


def test_a_key_spelled_like_a_shortened_one_stays_apart_from_it() -> None:
    """A key over the limit is cut and ends in "#" and a digest; labels that spell exactly
    that text are another group."""
    long_key = group_key_of(("a",), {"a": "x" * 2000})
    assert len(long_key) == GROUP_KEY_LENGTH and long_key.startswith("a=xxx")
    spelled = {"a": long_key.removeprefix("a=")}
    assert group_key_of(("a",), spelled) != long_key
    ordinary = {"a": "y" * (GROUP_KEY_LENGTH - 2)}  # exactly at the limit: kept as it is
    assert group_key_of(("a",), ordinary) == "a=" + "y" * (GROUP_KEY_LENGTH - 2)
