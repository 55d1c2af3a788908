"""Alert rows drafted before a batch's transaction (``service.Drafts``): taken when every
alert of the batch is new, set aside when the guess does not hold, and taken only once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.incidents.lifecycle import Severity
from firetower.runtime import Runtime
from firetower.signals import service
from firetower.signals.intake_rows import AlertRow
from firetower.signals.models import Alert, Integration
from tests.factories import Factory


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


def _draft(runtime: Runtime, key: str, signals: list[service.Signal]) -> service.Drafts:
    drafts = service.draft_new_alerts(runtime.database.engine, key, signals)
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
    engine = runtime.database.engine
    _views_read(runtime)
    assert service.draft_new_alerts(engine, key, _signals("twice", "twice")) is None
    assert service.draft_new_alerts(engine, "x" * len(key), _signals("a")) is None
    assert service.draft_new_alerts(engine, key, _signals("a")) is not None
