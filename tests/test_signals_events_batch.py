"""Events v2 requests that wait for the writer together are recorded together, and each is
still answered as if it had been alone: accepted, refused or a change event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.incidents.models import Incident
from firetower.runtime import Runtime
from firetower.signals import service as signals
from firetower.signals.models import Alert, AttachTally, ChangeEvent, RejectedPayload
from firetower.signals.schemas import PagerDutyEvent
from tests.factories import Factory
from tests.signals_support import matcher, sql_run
from tests.test_group_commit import hold_writers, run_async


def _key(factory: Factory, name: str) -> str:
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/integrations", json={"name": name, "kind": "pagerduty"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _trigger(key: str, dedup_key: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": f"{dedup_key} is down", "source": "db", "severity": "error"},
    }
    if dedup_key:
        event["dedup_key"] = dedup_key
    return event


def _sent_together(
    app: FastAPI, runtime: Runtime, requests: list[tuple[str, dict[str, Any]]]
) -> list[httpx.Response]:
    """POST each (path, body) while the writers are held, so that all of them wait for the
    writer and are committed as one group; the answers, in order."""

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://firetower") as client:
            held = await hold_writers(runtime)
            tasks = [asyncio.create_task(client.post(path, json=body)) for path, body in requests]
            await asyncio.sleep(0.5)  # every request waits for the writer by now
            await held.release()
            return await asyncio.gather(*tasks)

    return run_async(main)


def test_events_queued_together_are_each_answered_as_alone(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    first, second = _key(factory, "pd-one"), _key(factory, "pd-two")
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v2/enqueue", _trigger(first, "disk")),
        ("/v2/enqueue", {"routing_key": first, "event_action": "trigger"}),  # no payload
        ("/v2/enqueue", _trigger(second, "cpu")),
        ("/v2/enqueue", _trigger(first, None)),  # the dedup key is made up
        ("/v2/enqueue", _trigger("x" * 32, "nobody")),  # a routing key nobody has
        (
            "/v2/change/enqueue",
            {"routing_key": first, "payload": {"summary": "deploy 42", "source": "ci"}},
        ),
    ]

    disk, refused, cpu, made_up, unknown, change = _sent_together(app, runtime, bodies)
    assert (disk.status_code, disk.json()["dedup_key"]) == (202, "disk")
    assert refused.status_code == 400
    assert refused.json()["status"] == "invalid event"
    assert (cpu.status_code, cpu.json()["dedup_key"]) == (202, "cpu")
    assert made_up.status_code == 202 and len(made_up.json()["dedup_key"]) == 32
    assert unknown.status_code == 401
    assert change.status_code == 202 and change.json()["message"] == "Change event processed"

    with runtime.read() as session:
        alerts = {a.fingerprint: a.status for a in session.scalars(select(Alert))}
        changes = session.scalar(select(func.count()).select_from(ChangeEvent))
        dead = session.scalar(select(func.count()).select_from(RejectedPayload))
    assert alerts == {"disk": "firing", "cpu": "firing", made_up.json()["dedup_key"]: "firing"}
    assert (changes, dead) == (1, 1)


def test_events_of_one_integration_are_recorded_in_their_order(
    factory: Factory, runtime: Runtime
) -> None:
    """Triggers in a row share one batch; a resolve in between sees the triggers before it."""
    key = _key(factory, "pd-order")
    events = [
        PagerDutyEvent.model_validate(body)
        for body in (
            _trigger(key, "disk"),
            _trigger(key, "cpu"),
            {"routing_key": key, "event_action": "resolve", "dedup_key": "disk"},
            _trigger(key, "disk"),  # fires again
            {"routing_key": key, "event_action": "acknowledge", "dedup_key": "cpu"},
        )
    ]
    with runtime.transaction() as session:
        intake = signals.Intake(
            signals.authenticate(session, key, "pagerduty"), runtime.settings.severity_policy
        )
        keys = signals.ingest_pagerduty_events(session, intake, events)
    assert keys == ["disk", "cpu", "disk", "disk", "cpu"]
    with runtime.read() as session:
        alerts = {a.fingerprint: (a.status, a.count) for a in session.scalars(select(Alert))}
    assert alerts == {"disk": ("firing", 3), "cpu": ("acknowledged", 2)}


def test_events_of_one_request_keep_an_acknowledged_alert_acknowledged(
    factory: Factory, runtime: Runtime
) -> None:
    """In one batch as in several requests: a trigger after an acknowledge leaves the alert
    acknowledged, and an acknowledge after a resolve is ignored (not counted either)."""
    key = _key(factory, "pd-acked")

    def event(action: str, dedup_key: str) -> dict[str, Any]:
        if action == "trigger":
            return _trigger(key, dedup_key)
        return {"routing_key": key, "event_action": action, "dedup_key": dedup_key}

    sent = [("trigger", "disk"), ("acknowledge", "disk"), ("trigger", "disk")]
    sent += [("trigger", "cpu"), ("resolve", "cpu"), ("acknowledge", "cpu")]
    events = [PagerDutyEvent.model_validate(event(*pair)) for pair in sent]
    with runtime.transaction() as session:
        intake = signals.Intake(
            signals.authenticate(session, key, "pagerduty"), runtime.settings.severity_policy
        )
        signals.ingest_pagerduty_events(session, intake, events)
    with runtime.read() as session:
        alerts = {a.fingerprint: (a.status, a.count) for a in session.scalars(select(Alert))}
    assert alerts == {"disk": ("acknowledged", 3), "cpu": ("resolved", 2)}


def test_a_group_over_several_routing_keys_finds_each_integrations_stored_alerts(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """The group's known alerts are read at once for all its integrations: a stored dedup key
    repeats in its own integration only, though another integration has the same key."""
    first, second, third = (_key(factory, f"pd-{n}") for n in ("a", "b", "c"))
    for key, dedup_key in ((first, "disk"), (second, "cpu"), (third, "disk")):
        assert factory.client.post("/v2/enqueue", json=_trigger(key, dedup_key)).status_code == 202
    bodies = [
        _trigger(first, "disk"),  # a repeat
        _trigger(second, "disk"),  # new here, though the first and third have it
        {"routing_key": second, "event_action": "acknowledge", "dedup_key": "cpu"},
        _trigger(third, "net"),
        {"routing_key": third, "event_action": "resolve", "dedup_key": "disk"},
    ]

    with sql_run(runtime.database.engine) as ran:
        answers = _sent_together(app, runtime, [("/v2/enqueue", body) for body in bodies])
    assert [answer.status_code for answer in answers] == [202] * len(bodies)
    assert len([s for s, _ in ran if "FROM alerts WHERE id IN" in s]) == 1  # one known read
    with runtime.read() as session:
        stored = {
            (a.integration.name, a.fingerprint): (a.status, a.count)
            for a in session.scalars(select(Alert))
        }
    assert stored == {
        ("pd-a", "disk"): ("firing", 2),
        ("pd-b", "cpu"): ("acknowledged", 2),
        ("pd-b", "disk"): ("firing", 1),
        ("pd-c", "disk"): ("resolved", 2),
        ("pd-c", "net"): ("firing", 1),
    }


def test_triggers_without_a_dedup_key_read_no_known_alerts(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """A key firetower makes up is new: no alert is looked up for it, alone or in a group
    with a trigger that has a key (whose known alerts are still read)."""
    key = _key(factory, "pd")
    keyed = factory.client.post("/v2/enqueue", json=_trigger(key, "disk"))
    assert keyed.status_code == 202

    def known_reads(bodies: list[dict[str, Any]]) -> tuple[list[str], int]:
        with sql_run(runtime.database.engine) as ran:
            answers = _sent_together(app, runtime, [("/v2/enqueue", body) for body in bodies])
        assert [answer.status_code for answer in answers] == [202] * len(bodies)
        reads = len([s for s, _ in ran if "FROM alerts WHERE id IN" in s])
        return [answer.json()["dedup_key"] for answer in answers], reads

    made, reads = known_reads([_trigger(key, None), _trigger(key, None)])
    assert reads == 0
    assert len(set(made)) == 2
    acknowledged = {"routing_key": key, "event_action": "acknowledge", "dedup_key": made[0]}
    mixed = [_trigger(key, None), _trigger(key, "disk"), acknowledged]
    made_too, reads = known_reads(mixed)
    assert reads == 1  # "disk" and the acknowledged key, at once
    with runtime.read() as session:
        stored = {a.fingerprint: (a.status, a.count) for a in session.scalars(select(Alert))}
    assert stored == {
        made[0]: ("acknowledged", 2),
        made[1]: ("firing", 1),
        made_too[0]: ("firing", 1),
        "disk": ("firing", 2),
    }


def test_a_group_locks_its_integrations_services_in_name_order(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """PostgreSQL: two processes' groups that locked the services' rows in the order their
    requests came deadlocked each other, and each group then ran again one request at a time
    (Events v2 over 50 routing keys fell from about 1,000 to about 100 events/s). They are
    locked by one statement, in name order."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer and locks no rows")
    admin = factory.user(Role.admin)
    keys = []
    for name in ("zeta", "alpha", "mid"):
        factory.service(name)
        answer = admin.post(
            "/api/v1/integrations",
            json={"name": f"pd-{name}", "kind": "pagerduty", "service_name": name},
        )
        assert answer.status_code == 201, answer.text
        keys.append(answer.json()["key"])

    triggers = [("/v2/enqueue", _trigger(key, "disk")) for key in keys]
    with sql_run(runtime.database.engine) as ran:
        answers = _sent_together(app, runtime, triggers)
    assert [answer.status_code for answer in answers] == [202, 202, 202]
    locking = [(s, p) for s, p in ran if "FROM services" in s and "FOR NO KEY UPDATE" in s]
    assert len(locking) == 1, locking  # all at once, not a statement each
    statement, parameters = locking[0]
    assert "ORDER BY services.name" in statement  # rows are locked in the order returned
    assert sorted(parameters.values()) == ["alpha", "mid", "zeta"]


def test_triggers_over_many_routing_keys_are_written_together(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """A group of single triggers over many routing keys took a few statements for each
    integration (twice the work per event over 24 keys as over one): their alerts are
    inserted together and their incidents' tallies added by one statement, and every alert
    joins its own service's incident, tallied there as event by event."""
    admin = factory.user(Role.admin)
    keys = []
    for n in range(12):
        factory.service(f"svc-{n:02d}")
        answer = admin.post(
            "/api/v1/integrations",
            json={"name": f"pd-{n:02d}", "kind": "pagerduty", "service_name": f"svc-{n:02d}"},
        )
        assert answer.status_code == 201, answer.text
        keys.append(answer.json()["key"])
    with FrozenClock(datetime(2026, 11, 30, 12, 0, 10, tzinfo=UTC)) as frozen:
        for key in keys:  # opens the service's incident, then is the minute's attach note
            for dedup_key in ("opens", "noted"):
                answer = factory.client.post("/v2/enqueue", json=_trigger(key, dedup_key))
                assert answer.status_code == 202, answer.text
        frozen.advance(seconds=5)
        group = [("/v2/enqueue", _trigger(key, "tallied")) for key in keys]
        with sql_run(runtime.database.engine) as ran:
            answers = _sent_together(app, runtime, group)
    assert [answer.status_code for answer in answers] == [202] * len(keys)

    inserts = [s for s, _ in ran if s.startswith("INSERT INTO alerts")]
    # SQLite: statements of 10, 1 and 1 rows (intake_rows.SQLITE_INSERT_SIZES); PostgreSQL:
    # one executemany. One by one, each integration took its own.
    assert len(inserts) == (3 if runtime.database.dialect == "sqlite" else 1)
    assert len([s for s, _ in ran if "attach_tallies" in s]) == 1
    with runtime.read() as session:
        services = {
            incident.id: [service.name for service in incident.services]
            for incident in session.scalars(select(Incident))
        }
        joined = {
            (alert.integration.name, *services[alert.incident_id or 0])
            for alert in session.scalars(select(Alert).where(Alert.fingerprint == "tallied"))
        }
        tallies = {
            (tally.incident_id, tally.alerts, tuple(tally.latest))
            for tally in session.scalars(select(AttachTally))
        }
    assert joined == {(f"pd-{n:02d}", f"svc-{n:02d}") for n in range(12)}
    assert tallies == {(incident_id, 1, ("tallied is down",)) for incident_id in services}


def test_a_trigger_is_inhibited_by_another_integrations_trigger_of_its_group(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """The group's triggers are settled before any is written whole: a source earlier in
    the group still inhibits a target of another integration, as one by one."""
    admin = factory.user(Role.admin)
    rule = {
        "name": "db-down",
        "source_matchers": [matcher("severity", "=", "critical")],
        "target_matchers": [matcher("severity", "=", "warning")],
        "equal": ["group"],
    }
    assert admin.post("/api/v1/inhibit-rules", json=rule).status_code == 201
    source_key, target_key = _key(factory, "pd-source"), _key(factory, "pd-target")

    def trigger(key: str, dedup_key: str, severity: str) -> dict[str, Any]:
        event = _trigger(key, dedup_key)
        event["payload"] |= {"severity": severity, "group": "db"}
        return event

    answers = _sent_together(
        app,
        runtime,
        [
            ("/v2/enqueue", trigger(source_key, "primary-down", "critical")),
            ("/v2/enqueue", trigger(target_key, "replica-lag", "warning")),
        ],
    )
    assert [answer.status_code for answer in answers] == [202, 202]
    with runtime.read() as session:
        alerts = {a.fingerprint: a for a in session.scalars(select(Alert))}
        source, target = alerts["primary-down"], alerts["replica-lag"]
        assert (source.inhibited, target.inhibited) == (False, True)
        assert (target.inhibited_by, target.inhibit_rule) == (source.id, "db-down")


def test_a_group_of_triggers_leaves_its_alerts_as_the_same_events_one_by_one(
    factory: Factory, app: FastAPI, runtime: Runtime
) -> None:
    """Two mirrored sets of integrations get the same triggers, one set as one group and
    the other one request at a time: a repeat within the group, a key another integration
    also has, an alert that fires again after resolving, a service with an incident, one
    without, and an integration with no service all end alike."""
    admin = factory.user(Role.admin)

    def integrations(side: str) -> list[str]:
        keys = []
        for n, service in ((1, f"{side}-db"), (2, f"{side}-web"), (3, None)):
            if service:
                factory.service(service)
            body = {"name": f"pd-{side}{n}", "kind": "pagerduty", "service_name": service}
            answer = admin.post("/api/v1/integrations", json=body)
            assert answer.status_code == 201, answer.text
            keys.append(answer.json()["key"])
        return keys

    def send(key: str, event: dict[str, Any]) -> None:
        answer = factory.client.post("/v2/enqueue", json={"routing_key": key, **event})
        assert answer.status_code == 202, answer.text

    grouped, alone = integrations("a"), integrations("b")
    for first, _, _ in (grouped, alone):  # db has its incident; web's "back" has resolved
        send(first, _trigger(first, "old"))
    for _, second, _ in (grouped, alone):
        send(second, _trigger(second, "back"))
        send(second, {"event_action": "resolve", "dedup_key": "back"})
    script = [(0, "x"), (1, "back"), (0, "x"), (2, "y"), (1, "z"), (0, "w"), (2, "x")]

    answers = _sent_together(
        app, runtime, [("/v2/enqueue", _trigger(grouped[n], key)) for n, key in script]
    )
    assert [answer.status_code for answer in answers] == [202] * len(script)
    for n, key in script:
        send(alone[n], _trigger(alone[n], key))

    def state(side: str) -> dict[tuple[str, str], tuple[Any, ...]]:
        with runtime.read() as session:
            services = {
                incident.id: sorted(s.name.split("-", 1)[1] for s in incident.services)
                for incident in session.scalars(select(Incident))
            }
            return {
                (alert.integration.name[-1], alert.fingerprint): (
                    alert.status,
                    alert.count,
                    alert.severity,
                    alert.service_name and alert.service_name.split("-", 1)[1],
                    services.get(alert.incident_id or 0),
                )
                for alert in session.scalars(select(Alert))
                if alert.integration.name.startswith(f"pd-{side}")
            }

    assert state("a") == state("b")
    assert state("a")[("2", "back")][:2] == ("firing", 3)  # trigger, resolve, trigger
