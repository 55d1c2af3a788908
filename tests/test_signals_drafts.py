"""Alert rows drafted before a batch's transaction (``service.Drafts``): taken when every
alert of the batch is new, set aside when the guess does not hold, and taken only once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.schemas import Role
from firetower.incidents.lifecycle import Severity
from firetower.jobs import Job
from firetower.runtime import Runtime
from firetower.signals import intake_rows, service
from firetower.signals.intake_rows import AlertRow
from firetower.signals.models import Alert, AlertKey, Integration
from tests.factories import Factory
from tests.signals_support import matcher, sql_run


def _key(factory: Factory, service_name: str, group_by: list[str] | None = None) -> str:
    admin = factory.user(Role.admin)
    answer = admin.post(
        "/api/v1/integrations",
        json={
            "name": f"am-{service_name}",
            "kind": "alertmanager",
            "service_name": service_name,
            "group_by": group_by if group_by is not None else ["alertname"],
        },
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _signals(*fingerprints: str, service_name: str | None = None) -> list[service.Signal]:
    return [
        service.Signal(
            fingerprint=fingerprint,
            status="firing",
            title=f"Errors on {fingerprint}",
            severity=Severity.SEV2,
            service_name=service_name,
            labels={"alertname": "HighErrorRate", "instance": fingerprint},
            annotations={"summary": f"Errors on {fingerprint}"},
        )
        for fingerprint in fingerprints
    ]


def _views_read(runtime: Runtime) -> None:
    """Let this process read its intake views once (a first request does the same)."""
    with runtime.transaction() as session:
        service.Shared.of(session)


def _draft_or_none(
    runtime: Runtime, key: str, signals: list[service.Signal]
) -> service.Drafts | None:
    """Draft as the endpoint does before its transaction."""
    engine = runtime.database.engine
    encoder = intake_rows.Encoder(engine.dialect.name)
    encoder.prepare(signals)
    policy = runtime.settings.severity_policy
    return service.draft_new_alerts(engine, key, signals, policy, encoder)


def _draft(runtime: Runtime, key: str, signals: list[service.Signal]) -> service.Drafts:
    drafts = _draft_or_none(runtime, key, signals)
    assert drafts is not None
    return drafts


def _receive(
    runtime: Runtime, key: str, signals: list[service.Signal], drafts: service.Drafts | None
) -> list[AlertRow]:
    with runtime.transaction() as session:
        intake = service.Intake(
            service.authenticate(session, key), runtime.settings.severity_policy, drafts=drafts
        )
        return service.receive_all(session, intake, signals)


def _stored(runtime: Runtime) -> dict[str, dict[str, Any]]:
    with runtime.read() as session:
        return {
            alert.fingerprint: {c.key: getattr(alert, c.key) for c in Alert.__table__.columns}
            for alert in session.scalars(select(Alert))
        }


def test_a_batch_of_new_alerts_takes_its_drafts_and_stores_what_recording_would(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("payments"))
    _views_read(runtime)
    recorded = _receive(runtime, key, _signals("r1", "r2", service_name="payments"), None)
    signals = _signals("d1", "d2", service_name="payments")
    drafts = _draft(runtime, key, signals)
    drafted = list(drafts.rows or [])

    rows = _receive(runtime, key, signals, drafts)

    assert all(row is draft for row, draft in zip(rows, drafted, strict=True))
    assert all(row is not draft for row, draft in zip(recorded, drafted, strict=True))
    stored = _stored(runtime)
    differ = {"id", "fingerprint", "title", "labels", "annotations", "first_seen_at"}
    differ |= {"last_seen_at", "attached_at"}
    for made, recorded_one in (("d1", "r1"), ("d2", "r2")):
        same = {c: v for c, v in stored[made].items() if c not in differ}
        assert same == {c: v for c, v in stored[recorded_one].items() if c not in differ}
    assert stored["d1"]["incident_id"] is not None  # routed like the recorded ones
    assert stored["d1"]["first_seen_at"] == drafts.now


def test_a_known_alert_in_the_batch_sets_the_drafts_aside(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("search"))
    _views_read(runtime)
    _receive(runtime, key, _signals("known"), drafts=None)
    signals = _signals("known", "new")
    drafts = _draft(runtime, key, signals)
    drafted = list(drafts.rows or [])

    rows = _receive(runtime, key, signals, drafts)

    assert not any(row is draft for row, draft in zip(rows, drafted, strict=True))
    stored = _stored(runtime)
    assert sorted(stored) == ["known", "new"]
    assert stored["known"]["count"] == 2  # a repeat, not a second row


def test_drafts_grouped_by_keys_the_integration_no_longer_has_are_set_aside(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("billing"), group_by=["alertname"])
    _views_read(runtime)
    signals = _signals("g1")
    drafts = _draft(runtime, key, signals)
    with runtime.transaction() as session:
        integration = session.scalars(select(Integration)).one()
        integration.group_by = ["instance"]

    _receive(runtime, key, signals, drafts)

    assert drafts.rows is not None  # not taken
    assert _stored(runtime)["g1"]["group_key"] == "instance=g1"


def test_drafts_are_taken_once_so_an_operation_run_again_makes_its_rows_afresh(
    factory: Factory, runtime: Runtime
) -> None:
    """A failed group runs each operation again alone: rows the first run stored and routed
    (in a transaction since rolled back) must not be taken as new ones."""
    key = _key(factory, factory.service("checkout"))
    _views_read(runtime)
    signals = _signals("once", service_name="checkout")
    drafts = _draft(runtime, key, signals)
    with pytest.raises(RuntimeError), runtime.transaction() as session:
        intake = service.Intake(
            service.authenticate(session, key), runtime.settings.severity_policy, drafts=drafts
        )
        service.receive_all(session, intake, signals)
        raise RuntimeError("the group failed")

    _receive(runtime, key, signals, drafts)

    stored = _stored(runtime)
    assert list(stored) == ["once"]
    assert stored["once"]["incident_id"] is not None
    assert stored["once"]["count"] == 1


def test_no_drafts_where_the_guess_cannot_hold(factory: Factory, runtime: Runtime) -> None:
    key = _key(factory, factory.service("ledger"))
    _views_read(runtime)
    assert _draft_or_none(runtime, key, _signals("twice", "twice")) is None
    assert _draft_or_none(runtime, "x" * len(key), _signals("a")) is None
    assert _draft_or_none(runtime, key, _signals("a")) is not None


# -- settled ahead (SQLite) --------------------------------------------------------------------
def _ingest(
    runtime: Runtime,
    key: str,
    signals: list[service.Signal],
    drafts: service.Drafts | None,
    session: Session | None = None,
) -> service.Intake:
    """The Alertmanager endpoint's operation on these signals (``finish`` included), in
    ``session``'s transaction if given, else in one of its own."""
    if session is None:
        with runtime.transaction() as own:
            return _ingest(runtime, key, signals, drafts, own)
    intake = service.Intake(
        service.authenticate(session, key), runtime.settings.severity_policy, drafts=drafts
    )
    service.ingest_alertmanager(session, intake, signals)
    return intake


def _settles_ahead(runtime: Runtime) -> bool:
    """SQLite settles ahead; PostgreSQL reads a service's active incident under its lock."""
    return runtime.database.engine.dialect.name == "sqlite"


def _rule(factory: Factory, name: str, **fields: Any) -> None:
    answer = factory.user(Role.admin).post("/api/v1/routing-rules", json={"name": name, **fields})
    assert answer.status_code == 201, answer.text


def _incident_of(runtime: Runtime, fingerprint: str) -> int | None:
    return _stored(runtime)[fingerprint]["incident_id"]


def test_new_alerts_joining_an_active_incident_are_settled_ahead_as_the_transaction_would(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("payments"))
    opened = _ingest(runtime, key, _signals("opener", service_name="payments"), None).opened
    _views_read(runtime)  # after the incident opened, as the next request's would be
    _ingest(runtime, key, _signals("r1", "r2", service_name="payments"), None)
    signals = _signals("d1", "d2", service_name="payments")
    drafts = _draft(runtime, key, signals)
    drafted = list(drafts.rows or [])
    assert (drafts.settled is not None) == _settles_ahead(runtime)

    intake = _ingest(runtime, key, signals, drafts)

    [incident] = opened
    assert intake.attached == {incident.id: ["Errors on d1", "Errors on d2"]}
    assert intake.joined == {incident.id: {"d1", "d2"}}
    assert drafts.rows is None  # taken
    assert all(row.stored and not row.dirty for row in drafted)  # these rows were written
    stored = _stored(runtime)
    differ = {"id", "fingerprint", "title", "labels", "annotations", "first_seen_at"}
    differ |= {"last_seen_at", "attached_at"}
    for made, recorded in (("d1", "r1"), ("d2", "r2")):
        same = {c: v for c, v in stored[made].items() if c not in differ}
        assert same == {c: v for c, v in stored[recorded].items() if c not in differ}
        assert stored[made]["incident_id"] == incident.id
        assert stored[made]["attached_at"] == drafts.now


def _ingest_watched(
    runtime: Runtime, key: str, signals: list[service.Signal], drafts: service.Drafts
) -> list[tuple[str, Any]]:
    """``_ingest``, and the SQL it ran with its parameters."""
    with sql_run(runtime.database.engine) as ran:
        _ingest(runtime, key, signals, drafts)
    return ran


def _payments_storing(factory: Factory, runtime: Runtime, *stored: str) -> tuple[str, Any]:
    """An integration for "payments" whose first alert opened an incident, with these alerts
    stored after it, and the views read: the key and the incident."""
    key = _key(factory, factory.service("payments"))
    [incident] = _ingest(runtime, key, _signals("opener", service_name="payments"), None).opened
    for fingerprint in stored:
        _ingest(runtime, key, _signals(fingerprint, service_name="payments"), None)
    _views_read(runtime)
    return key, incident


def test_a_settled_batch_is_inserted_without_reading_which_alerts_are_stored(
    factory: Factory, runtime: Runtime
) -> None:
    """Only its first alert is looked up; the key tables would refuse any other stored one."""
    key, _ = _payments_storing(factory, runtime)
    signals = _signals("d1", "d2", "d3", service_name="payments")
    drafts = _draft(runtime, key, signals)
    ran = _ingest_watched(runtime, key, signals, drafts)
    [(_, asked)] = [(s, p) for s, p in ran if s.startswith("SELECT") and "FROM alert_keys" in s]
    assert "d1" in repr(asked)
    assert ("d2" in repr(asked)) != _settles_ahead(runtime)  # only SQLite settles ahead
    assert {f: row["count"] for f, row in _stored(runtime).items()} == {
        "opener": 1,
        "d1": 1,
        "d2": 1,
        "d3": 1,
    }


def test_a_settled_batch_with_a_stored_alert_after_its_first_is_refused_whole(
    factory: Factory, runtime: Runtime
) -> None:
    """57 alerts take five INSERTs of ten and seven of one: the last one's stored key refuses
    its statement, and the savepoint undoes the earlier ones before the batch goes the usual
    way (else the 56 new alerts would be found stored, and counted twice)."""
    key, incident = _payments_storing(factory, runtime, "known")
    fresh = [f"new{n}" for n in range(56)]
    signals = _signals(*fresh, "known", service_name="payments")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)
    drafted = list(drafts.rows or [])

    intake = _ingest(runtime, key, signals, drafts)

    assert {id(row) for row in intake.known.values()}.isdisjoint(map(id, drafted))
    stored = _stored(runtime)
    assert {f: stored[f]["count"] for f in fresh} == dict.fromkeys(fresh, 1)
    assert stored["known"]["count"] == 2
    assert {stored[f]["incident_id"] for f in fresh} == {incident.id}
    assert intake.attached == {incident.id: [f"Errors on {f}" for f in fresh]}
    with runtime.read() as session:
        keys = session.scalar(select(func.count()).select_from(AlertKey))
    assert keys == len(stored)


def test_a_settled_batch_whose_first_alert_is_stored_tries_no_insert(
    factory: Factory, runtime: Runtime
) -> None:
    """A batch of repeats (a storm's) would pay for an insert it then undoes."""
    key, _ = _payments_storing(factory, runtime, "known")
    signals = _signals("known", "new", service_name="payments")
    drafts = _draft(runtime, key, signals)
    ran = _ingest_watched(runtime, key, signals, drafts)
    [inserted] = [p for s, p in ran if s.startswith("INSERT INTO alerts ")]  # "new" alone
    assert "new" in repr(inserted) and "known" not in repr(inserted)
    stored = _stored(runtime)
    assert (stored["known"]["count"], stored["new"]["count"]) == (2, 1)


def test_a_silence_made_after_settling_ahead_sets_what_was_settled_aside(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("search"))
    _ingest(runtime, key, _signals("opener", service_name="search"), None)
    _views_read(runtime)
    signals = _signals("quiet", service_name="search")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)
    responder = factory.user(Role.responder)
    silence = {
        "matchers": [{"label": "instance", "op": "=", "value": "quiet"}],
        "ends_at": (clock.now() + timedelta(hours=1)).isoformat(),
        "comment": "deploying",
    }
    assert responder.post("/api/v1/silences", json=silence).status_code == 201

    intake = _ingest(runtime, key, signals, drafts)

    assert intake.attached == {}
    assert _stored(runtime)["quiet"]["silenced"] is True
    assert _incident_of(runtime, "quiet") is None


def test_an_incident_resolved_earlier_in_the_transaction_sets_what_was_settled_aside(
    factory: Factory, runtime: Runtime
) -> None:
    """Group commit runs several requests in one transaction, with the views read at its
    start: one request's alerts may resolve the incident the next one's were settled into."""
    factory.service("ledger")
    _rule(factory, "clears", service="ledger", on_clear="resolve")
    key = _key(factory, "ledger")
    [first] = _ingest(runtime, key, _signals("source", service_name="ledger"), None).opened
    _views_read(runtime)
    signals = _signals("late", service_name="ledger")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)
    [resolve] = _signals("source", service_name="ledger")
    resolve.status = "resolved"

    with runtime.transaction() as session:
        _ingest(runtime, key, [resolve], None, session)
        later = _ingest(runtime, key, signals, drafts, session)

    [second] = later.opened
    assert second.id != first.id
    assert _incident_of(runtime, "late") == second.id


def test_an_incident_opened_earlier_in_the_transaction_sets_what_was_settled_aside(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("mail")
    _rule(factory, "opens", matchers=[matcher("kind", "=", "opener")], service="mail")
    _rule(factory, "joins", service="mail", action="attach")
    key = _key(factory, "mail")
    _views_read(runtime)
    signals = _signals("joiner", service_name="mail")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)  # unrouted: none to join
    [opener] = _signals("opener", service_name="mail")
    opener.labels = {**opener.labels, "kind": "opener"}

    with runtime.transaction() as session:
        [incident] = _ingest(runtime, key, [opener], None, session).opened
        _ingest(runtime, key, signals, drafts, session)

    assert _incident_of(runtime, "joiner") == incident.id


def test_a_batch_that_opens_an_incident_is_drafted_and_settled_in_the_transaction(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("billing"))
    _views_read(runtime)
    signals = _signals("b1", "b2", service_name="billing")
    drafts = _draft(runtime, key, signals)

    assert drafts.settled is None
    assert all(  # drafted afresh after the attempt, as recording makes them
        (row.routing_action, row.incident_id, row.attached_at) == (None, None, None)
        for row in drafts.rows or []
    )
    [incident] = _ingest(runtime, key, signals, drafts).opened
    assert _incident_of(runtime, "b1") == _incident_of(runtime, "b2") == incident.id


def test_inhibition_rules_are_settled_in_the_transaction(
    factory: Factory, runtime: Runtime
) -> None:
    key = _key(factory, factory.service("infra"))
    _ingest(runtime, key, _signals("opener", service_name="infra"), None)
    rule = {
        "name": "node-down",
        "source_matchers": [matcher("alertname", "=", "NodeDown")],
        "target_matchers": [matcher("alertname", "=", "HighErrorRate")],
        "equal": [],
    }
    assert factory.user(Role.admin).post("/api/v1/inhibit-rules", json=rule).status_code == 201
    _views_read(runtime)

    drafts = _draft(runtime, key, _signals("i1", service_name="infra"))

    assert drafts.settled is None
    assert drafts.rows is not None


def test_notify_rules_settled_ahead_queue_their_jobs_for_the_stored_alerts(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("web")
    _rule(factory, "tell", action="notify", **{"continue": True})
    _rule(factory, "opens", service="web")
    key = _key(factory, "web")
    _ingest(runtime, key, _signals("opener", service_name="web"), None)
    _views_read(runtime)
    signals = _signals("n1", "n2", service_name="web")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)

    _ingest(runtime, key, signals, drafts)

    stored = _stored(runtime)
    with runtime.read() as session:
        jobs = session.scalars(select(Job).where(Job.kind == service.NOTIFY_KIND))
        told = {job.payload["alert_id"]: job.payload["rule"] for job in jobs}
    assert {stored["n1"]["id"], stored["n2"]["id"]} <= set(told)
    assert stored["n1"]["incident_id"] == stored["opener"]["incident_id"] is not None


def test_new_resolved_alerts_settled_ahead_get_the_service_recording_gives_them(
    factory: Factory, runtime: Runtime
) -> None:
    """A resolved alert is not routed, so settling it ahead never set its service: one seen
    first as resolved, naming no service or one the catalog lacks, got the name it was sent
    with (or none) instead of its integration's service, unlike the same alert recorded."""
    key = _key(factory, factory.service("payments"))
    opened = _ingest(runtime, key, _signals("opener", service_name="payments"), None).opened
    assert opened
    _views_read(runtime)

    def resolved(*fingerprints: str, named: str | None) -> list[service.Signal]:
        return [replace(s, status="resolved") for s in _signals(*fingerprints, service_name=named)]

    _ingest(runtime, key, resolved("r1", named=None) + resolved("r2", named="nosuch"), None)
    signals = resolved("d1", named=None) + resolved("d2", named="nosuch")
    drafts = _draft(runtime, key, signals)
    assert (drafts.settled is not None) == _settles_ahead(runtime)
    _ingest(runtime, key, signals, drafts)

    stored = _stored(runtime)
    assert [stored[f]["service_name"] for f in ("r1", "r2", "d1", "d2")] == ["payments"] * 4
