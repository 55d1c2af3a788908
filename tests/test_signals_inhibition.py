"""Inhibition rules: while a source alert fires, matching targets with equal labels are muted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.runtime import Runtime
from tests.factories import ApiUser, Factory, row_counts
from tests.signals_support import (
    alert_by_fingerprint,
    incident_count,
    matcher,
    run_due_jobs,
    scheduled_worker,
    send_batch,
)


def _key(admin: ApiUser, name: str = "prom", service: str = "infra") -> str:
    answer = admin.post(
        "/api/v1/integrations",
        json={"name": name, "kind": "alertmanager", "service_name": service},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _alert(fingerprint: str, alertname: str, status: str = "firing", **labels: str) -> Any:
    return {
        "status": status,
        "labels": {"alertname": alertname, **labels},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T10:05:00Z",
        "fingerprint": fingerprint,
    }


T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NODE_DOWN = {
    "name": "node-down",
    "source_matchers": [matcher("alertname", "=", "NodeDown")],
    "target_matchers": [matcher("severity", "=", "warning")],
    "equal": ["cluster"],
}


def _inhibit(admin: ApiUser, rule: dict[str, Any] = NODE_DOWN) -> Any:
    answer = admin.post("/api/v1/inhibit-rules", json=rule)
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture
def setup(factory: Factory) -> tuple[ApiUser, str]:
    admin = factory.user(Role.admin)
    factory.service("infra")
    _inhibit(admin)
    return admin, _key(admin)


def test_a_firing_source_mutes_targets_with_equal_labels(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str]
) -> None:
    admin, key = setup
    assert len(send_batch(factory, key, _alert("src", "NodeDown", cluster="eu"))["opened"]) == 1
    source = alert_by_fingerprint(runtime, "src")

    assert send_batch(
        factory, key, _alert("t-eu", "DiskSlow", severity="warning", cluster="eu")
    ) == {
        "status": "success",
        "alerts": 1,
        "opened": [],
    }
    send_batch(factory, key, _alert("t-eu", "DiskSlow", severity="warning", cluster="eu"))
    muted = alert_by_fingerprint(runtime, "t-eu")
    assert muted.inhibited and muted.count == 2 and muted.incident_id is None
    assert (muted.inhibited_by, muted.inhibit_rule) == (source.id, "node-down")
    [read] = admin.get("/api/v1/alerts", params={"inhibited": "true"}).json()
    assert (read["fingerprint"], read["inhibited_by"], read["inhibit_rule"]) == (
        "t-eu",
        source.id,
        "node-down",
    )

    send_batch(factory, key, _alert("t-us", "DiskSlow", severity="warning", cluster="us"))
    other_cluster = alert_by_fingerprint(runtime, "t-us")
    assert not other_cluster.inhibited and other_cluster.incident_id == source.incident_id
    send_batch(factory, key, _alert("crit", "DiskSlow", severity="critical", cluster="eu"))
    assert not alert_by_fingerprint(runtime, "crit").inhibited  # not a target
    assert incident_count(runtime) == 1


def test_a_label_missing_on_both_sides_counts_as_equal(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str]
) -> None:
    _admin, key = setup
    send_batch(factory, key, _alert("src", "NodeDown"))
    send_batch(factory, key, _alert("t-none", "DiskSlow", severity="warning"))
    send_batch(factory, key, _alert("t-eu", "DiskSlow", severity="warning", cluster="eu"))
    assert alert_by_fingerprint(runtime, "t-none").inhibited
    assert not alert_by_fingerprint(runtime, "t-eu").inhibited


def test_a_target_routes_when_it_sends_again_after_the_source_resolved(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str]
) -> None:
    _admin, key = setup
    send_batch(factory, key, _alert("src", "NodeDown", cluster="eu"))
    incident_id = alert_by_fingerprint(runtime, "src").incident_id
    send_batch(factory, key, _alert("t", "DiskSlow", severity="warning", cluster="eu"))
    assert alert_by_fingerprint(runtime, "t").inhibited
    send_batch(factory, key, _alert("src", "NodeDown", "resolved", cluster="eu"))
    send_batch(factory, key, _alert("t", "DiskSlow", severity="warning", cluster="eu"))
    target = alert_by_fingerprint(runtime, "t")
    assert not target.inhibited and target.inhibited_by is None and target.inhibit_rule is None
    assert target.incident_id == incident_id and target.routing_action == "open"


def test_a_target_routes_once_its_source_resolved_without_sending_again(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str]
) -> None:
    """The worker's minutely job frees a target whose source resolved: it need not wait for
    the target's next repeat (hours, with Alertmanager's repeat_interval)."""
    _admin, key = setup
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        send_batch(factory, key, _alert("src", "NodeDown", cluster="eu"))
        incident_id = alert_by_fingerprint(runtime, "src").incident_id
        send_batch(factory, key, _alert("t", "DiskSlow", severity="warning", cluster="eu"))
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        assert alert_by_fingerprint(runtime, "t").inhibited  # the source still fires
        send_batch(factory, key, _alert("src", "NodeDown", "resolved", cluster="eu"))
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        target = alert_by_fingerprint(runtime, "t")
        assert not target.inhibited and target.inhibited_by is None
        assert target.incident_id == incident_id and target.count == 1


def test_an_alert_never_inhibits_itself(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("infra")
    _inhibit(
        admin,
        {
            "name": "critical-mutes-warning",
            "source_matchers": [matcher("severity", "=~", "critical|warning")],
            "target_matchers": [matcher("severity", "=", "warning")],
            "equal": ["cluster"],
        },
    )
    key = _key(admin)
    send_batch(factory, key, _alert("alone", "DiskSlow", severity="warning", cluster="eu"))
    alone = alert_by_fingerprint(runtime, "alone")
    assert not alone.inhibited and alone.incident_id is not None
    # Alertmanager's rule: an alert matching both sides is not muted by another that does too
    send_batch(factory, key, _alert("twin", "DiskFull", severity="warning", cluster="eu"))
    assert not alert_by_fingerprint(runtime, "twin").inhibited
    # ... but it is by a source that is not itself a target
    send_batch(factory, key, _alert("big", "NodeDown", severity="critical", cluster="eu"))
    send_batch(factory, key, _alert("third", "DiskFull", severity="warning", cluster="eu"))
    third = alert_by_fingerprint(runtime, "third")
    assert third.inhibited and third.inhibited_by == alert_by_fingerprint(runtime, "big").id


@pytest.mark.parametrize("source_first", [True, False])
def test_a_source_inhibits_a_target_of_the_same_batch_in_any_order(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str], source_first: bool
) -> None:
    _admin, key = setup
    source = _alert("src", "NodeDown", cluster="eu")
    target = _alert("t", "DiskSlow", severity="warning", cluster="eu")
    batch = [source, target] if source_first else [target, source]
    answer = send_batch(factory, key, *batch)
    assert len(answer["opened"]) == 1  # the source's
    muted = alert_by_fingerprint(runtime, "t")
    assert muted.inhibited and muted.inhibited_by == alert_by_fingerprint(runtime, "src").id
    assert muted.incident_id is None


@pytest.mark.parametrize("source_first", [True, False])
def test_a_source_resolving_in_the_same_batch_inhibits_nothing(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str], source_first: bool
) -> None:
    _admin, key = setup
    send_batch(factory, key, _alert("src", "NodeDown", cluster="eu"))
    source = _alert("src", "NodeDown", "resolved", cluster="eu")
    target = _alert("t", "DiskSlow", severity="warning", cluster="eu")
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [source, target] if source_first else [target, source],
    }
    assert factory.client.post(f"/ingest/alertmanager/{key}", json=body).status_code == 200
    routed = alert_by_fingerprint(runtime, "t")
    assert not routed.inhibited and routed.incident_id is not None


def test_inhibition_spans_integrations_and_can_match_the_integration(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("infra")
    _inhibit(
        admin,
        {
            "name": "from-infra",
            "source_matchers": [matcher("@integration", "=", "infra-prom")],
            "target_matchers": [matcher("@integration", "!=", "infra-prom")],
            "equal": ["cluster"],
        },
    )
    infra = _key(admin, "infra-prom")
    apps = _key(admin, "apps-prom")
    send_batch(factory, infra, _alert("net", "NetworkDown", cluster="eu"))
    send_batch(factory, apps, _alert("app", "Errors", cluster="eu"))
    assert alert_by_fingerprint(runtime, "app").inhibit_rule == "from-infra"
    assert not alert_by_fingerprint(runtime, "net").inhibited


def test_inhibit_rules_crud(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    created = _inhibit(admin)
    assert created["name"] == "node-down" and created["equal"] == ["cluster"]
    assert admin.get("/api/v1/inhibit-rules/node-down").json() == created
    changed = admin.put(
        "/api/v1/inhibit-rules/node-down",
        json={**NODE_DOWN, "name": "node-down-2", "equal": ["cluster", "namespace"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["equal"] == ["cluster", "namespace"]
    assert [r["name"] for r in admin.get("/api/v1/inhibit-rules").json()] == ["node-down-2"]
    assert admin.get("/api/v1/inhibit-rules/node-down").status_code == 404
    whole = admin.put(
        "/api/v1/inhibit-rules",
        json={"rules": [NODE_DOWN, {**NODE_DOWN, "name": "b", "equal": []}]},
    )
    assert whole.status_code == 200, whole.text
    assert [r["name"] for r in whole.json()] == ["b", "node-down"]
    assert admin.delete("/api/v1/inhibit-rules/b").status_code == 204
    assert admin.delete("/api/v1/inhibit-rules/b").status_code == 404
    assert [r["name"] for r in admin.get("/api/v1/inhibit-rules").json()] == ["node-down"]
    responder = factory.user(Role.responder)
    assert responder.post("/api/v1/inhibit-rules", json=NODE_DOWN).status_code == 403


@pytest.mark.parametrize(
    ("how", "body", "status", "field"),
    [
        ("post", NODE_DOWN, 409, "name"),
        ("post", {**NODE_DOWN, "name": "x", "source_matchers": []}, 422, "source_matchers"),
        ("post", {**NODE_DOWN, "name": "x", "target_matchers": []}, 422, "target_matchers"),
        (
            "post",
            {**NODE_DOWN, "name": "x", "target_matchers": [matcher("a", "!~", "[z-a]")]},
            422,
            "target_matchers.0.value",
        ),
        ("post", {**NODE_DOWN, "name": "x", "equal": ["a", "a"]}, 422, "equal"),
        ("post", {**NODE_DOWN, "name": "x", "equal": ["not a label"]}, 422, "equal.0"),
        ("put-list", {"rules": [NODE_DOWN, NODE_DOWN]}, 409, "rules.1.name"),
        ("put-one", {**NODE_DOWN, "name": "other"}, 409, "name"),
    ],
)
def test_bad_inhibit_rules_are_refused_and_change_nothing(
    factory: Factory, runtime: Runtime, how: str, body: dict[str, Any], status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    _inhibit(admin)
    _inhibit(admin, {**NODE_DOWN, "name": "other"})
    before = row_counts(runtime)
    if how == "post":
        answer = admin.post("/api/v1/inhibit-rules", json=body)
    elif how == "put-list":
        answer = admin.put("/api/v1/inhibit-rules", json=body)
    else:
        answer = admin.put("/api/v1/inhibit-rules/node-down", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert row_counts(runtime) == before


@pytest.mark.parametrize("change", ["delete", "replace-all", "edit"])
def test_a_target_routes_once_the_rule_that_muted_it_is_gone(
    factory: Factory, runtime: Runtime, setup: tuple[ApiUser, str], change: str
) -> None:
    """A rule deleted (or changed so that it no longer mutes the target) frees its targets
    within a minute, as a silence that ends does: the source may fire for hours, and a
    PagerDuty target never repeats."""
    admin, key = setup
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        send_batch(factory, key, _alert("src", "NodeDown", cluster="eu"))
        incident_id = alert_by_fingerprint(runtime, "src").incident_id
        send_batch(factory, key, _alert("t", "DiskSlow", severity="warning", cluster="eu"))
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        assert alert_by_fingerprint(runtime, "t").inhibited
        if change == "delete":
            assert admin.delete("/api/v1/inhibit-rules/node-down").status_code == 204
        elif change == "replace-all":
            assert admin.put("/api/v1/inhibit-rules", json={"rules": []}).status_code == 200
        else:
            edited = {**NODE_DOWN, "target_matchers": [matcher("severity", "=", "info")]}
            answer = admin.put("/api/v1/inhibit-rules/node-down", json=edited)
            assert answer.status_code == 200, answer.text
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        target = alert_by_fingerprint(runtime, "t")
        assert not target.inhibited and target.inhibit_rule is None
        assert target.incident_id == incident_id and target.count == 1
