"""The lifecycle: allowed transitions, 409 naming the allowed ones, timestamps from the timeline."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.schemas import Role
from firetower.errors import Conflict, InvalidInput
from firetower.incidents import service
from firetower.incidents.lifecycle import ACTIVE, TRANSITIONS, Lifecycle, Status, derive_lifecycle
from firetower.incidents.models import Incident, TimelineEvent
from firetower.runtime import Runtime
from tests.factories import SYSTEM, Factory, row_counts

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
FINAL = {Status.closed, Status.declined, Status.merged, Status.canceled}


def _columns(incident: Incident) -> Lifecycle:
    return Lifecycle(
        incident.impact_started_at,
        incident.detected_at,
        incident.declared_at,
        incident.acknowledged_at,
        incident.mitigated_at,
        incident.resolved_at,
        incident.closed_at,
    )


def _stored_timeline(session: Session, incident: Incident) -> list[TimelineEvent]:
    return list(
        session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == incident.id)
            .order_by(TimelineEvent.id)
        )
    )


def test_the_table_is_closed_and_final_states_have_no_way_out() -> None:
    assert set(TRANSITIONS) == set(Status)
    for source, targets in TRANSITIONS.items():
        assert source not in targets
        assert len(set(targets)) == len(targets)
    for final in FINAL:
        assert TRANSITIONS[final] == ()
    # Every state can be reached from triage.
    seen, frontier = {Status.triage}, [Status.triage]
    while frontier:
        for target in TRANSITIONS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(Status)


@pytest.mark.parametrize("start", [Status.triage, Status.resolved, Status.closed])
def test_a_refused_transition_is_409_listing_the_allowed_ones(
    factory: Factory, runtime: Runtime, start: Status
) -> None:
    responder = factory.user(Role.responder)
    ref = factory.incident(responder.actor, title="x")
    path = {
        Status.triage: [],
        Status.resolved: ["resolved"],
        Status.closed: ["resolved", "closed"],
    }[start]
    for to in path:
        assert responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": to}).is_success
    refused = [s for s in Status if s not in TRANSITIONS[start]]
    before = row_counts(runtime)
    for to in refused:
        answer = responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": to.value})
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert body["field"] == "status"
        assert body["allowed"] == [s.value for s in TRANSITIONS[start]]
        for allowed in TRANSITIONS[start]:
            assert allowed.value in body["detail"]
    assert row_counts(runtime) == before


def test_the_full_story_sets_every_timestamp(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    with clock.FrozenClock(T0) as frozen:
        ref = factory.incident(
            responder.actor,
            title="x",
            impact_started_at=T0 - timedelta(minutes=30),
            detected_at=T0 - timedelta(minutes=10),
        )
        steps = ["investigating", "identified", "mitigated", "resolved", "closed"]
        for to in steps:
            frozen.advance(minutes=1)
            answer = responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": to})
            assert answer.status_code == 200, answer.text
    body = responder.get(f"/api/v1/incidents/{ref}").json()
    assert body["status"] == "closed"
    assert body["allowed_transitions"] == []
    assert body["impact_started_at"] == "2026-05-04T08:30:00Z"
    assert body["detected_at"] == "2026-05-04T08:50:00Z"
    assert body["declared_at"] == "2026-05-04T09:00:00Z"
    assert body["acknowledged_at"] == "2026-05-04T09:01:00Z"
    assert body["mitigated_at"] == "2026-05-04T09:03:00Z"
    assert body["resolved_at"] == "2026-05-04T09:04:00Z"
    assert body["closed_at"] == "2026-05-04T09:05:00Z"


def test_reopen_clears_resolved_and_keeps_first_mitigation(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    with clock.FrozenClock(T0) as frozen:
        ref = factory.incident(responder.actor, title="x")
        for to in ["mitigated", "resolved", "investigating"]:
            frozen.advance(minutes=1)
            responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": to})
    body = responder.get(f"/api/v1/incidents/{ref}").json()
    assert body["status"] == "investigating"
    assert body["resolved_at"] is None
    assert body["mitigated_at"] == "2026-05-04T09:01:00Z"
    assert body["acknowledged_at"] == "2026-05-04T09:01:00Z"


def test_merge_needs_an_open_other_incident(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    survivor = factory.incident(responder.actor, title="survivor")
    duplicate = factory.incident(responder.actor, title="duplicate")
    closed = factory.incident(responder.actor, title="closed")
    responder.post(f"/api/v1/incidents/{closed}/transitions", json={"to": "canceled"})
    before = row_counts(runtime)
    for payload, status in [
        ({"to": "merged"}, 422),
        ({"to": "merged", "merged_into": duplicate}, 422),
        ({"to": "merged", "merged_into": closed}, 409),
        ({"to": "merged", "merged_into": "INC-999999"}, 404),
        ({"to": "investigating", "merged_into": survivor}, 422),
    ]:
        answer = responder.post(f"/api/v1/incidents/{duplicate}/transitions", json=payload)
        assert answer.status_code == status, (payload, answer.text)
        assert answer.json()["field"] == "merged_into"
    assert row_counts(runtime) == before
    merged = responder.post(
        f"/api/v1/incidents/{duplicate}/transitions",
        json={"to": "merged", "merged_into": survivor},
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged_into"] == survivor
    survivor_kinds = [
        e["kind"] for e in responder.get(f"/api/v1/incidents/{survivor}/timeline").json()["items"]
    ]
    assert survivor_kinds[-1] == "incident_merged"


def test_a_mitigated_duplicate_merges_and_its_alert_follows_to_the_survivor(
    factory: Factory,
) -> None:
    """Found to be a duplicate after its mitigation: merged as it is, not first sent back to
    investigating. Its alert moves to the survivor, where a repeat then joins; it keeps its
    services, its mitigation time and the story of both moves."""
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    factory.service("db")
    made = admin.post(
        "/api/v1/integrations", json={"name": "pd", "kind": "pagerduty", "service_name": "db"}
    )
    assert made.status_code == 201, made.text
    event = {
        "routing_key": made.json()["key"],
        "event_action": "trigger",
        "dedup_key": "disk-db-1",
        "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "error"},
    }
    assert admin.client.post("/v2/enqueue", json=event).status_code == 202
    [duplicate] = responder.get("/api/v1/incidents").json()["items"]
    duplicate_ref = duplicate["ref"]
    moved = responder.post(
        f"/api/v1/incidents/{duplicate_ref}/transitions", json={"to": "mitigated"}
    )
    assert moved.status_code == 200, moved.text
    assert "merged" in moved.json()["allowed_transitions"]
    mitigated_at = moved.json()["mitigated_at"]
    survivor = factory.incident(responder.actor, title="Database degraded", services=["db"])

    merged = responder.post(
        f"/api/v1/incidents/{duplicate_ref}/transitions",
        json={"to": "merged", "merged_into": survivor},
    )
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert (body["status"], body["merged_into"], body["allowed_transitions"]) == (
        "merged",
        survivor,
        [],
    )
    assert (body["mitigated_at"], body["resolved_at"]) == (mitigated_at, None)
    assert body["services"] == ["db"]
    [change] = [
        e
        for e in responder.get(f"/api/v1/incidents/{duplicate_ref}/timeline").json()["items"]
        if e["kind"] == "status_changed"
    ][-1:]
    assert (change["before"], change["after"]) == (
        {"status": "mitigated"},
        {"status": "merged", "merged_into": survivor},
    )
    [alert] = responder.get("/api/v1/alerts", params={"incident": survivor}).json()
    assert (alert["fingerprint"], alert["status"]) == ("disk-db-1", "firing")
    texts = [
        e["text"] for e in responder.get(f"/api/v1/incidents/{survivor}/timeline").json()["items"]
    ]
    assert f"1 alert moved from {duplicate_ref}" in texts
    assert admin.client.post("/v2/enqueue", json=event).status_code == 202
    [alert] = responder.get("/api/v1/alerts", params={"incident": survivor}).json()
    assert alert["count"] == 2


def test_a_resolved_incident_is_not_merged_and_an_identified_one_can_be_canceled(
    factory: Factory, runtime: Runtime
) -> None:
    """Merging is for what is still open; a false alarm found once its cause was identified
    is canceled there, not first sent back to investigating."""
    responder = factory.user(Role.responder)
    survivor = factory.incident(responder.actor, title="survivor")
    resolved = factory.incident(responder.actor, title="resolved")
    assert responder.post(
        f"/api/v1/incidents/{resolved}/transitions", json={"to": "resolved"}
    ).is_success
    before = row_counts(runtime)
    refused = responder.post(
        f"/api/v1/incidents/{resolved}/transitions",
        json={"to": "merged", "merged_into": survivor},
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["allowed"] == ["investigating", "closed"]
    assert row_counts(runtime) == before
    false_alarm = factory.incident(responder.actor, title="false alarm")
    for to in ("identified", "canceled"):
        answer = responder.post(f"/api/v1/incidents/{false_alarm}/transitions", json={"to": to})
        assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "canceled"


def test_a_viewer_cannot_move_an_incident(factory: Factory, runtime: Runtime) -> None:
    viewer = factory.user(Role.viewer)
    ref = factory.incident(title="x")
    with runtime.transaction() as session, pytest.raises(Exception) as refused:
        service.transition(
            session, viewer.actor, service.get_incident(session, ref), Status.resolved
        )
    assert getattr(refused.value, "status_code", None) == 403


def test_writers_lock_the_incident_row(factory: Factory, runtime: Runtime) -> None:
    """A change locks the incident row until commit, so a second writer waits, then re-reads."""
    ref = factory.incident(title="x")
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE); row locks are PostgreSQL's")
    with runtime.transaction() as first:
        service.transition(
            first, SYSTEM, service.get_incident(first, ref, lock=True), Status.resolved
        )
        with runtime.database.sessions() as second:
            second.execute(text("SET LOCAL lock_timeout = '1ms'"))
            with pytest.raises(Exception, match="lock"):
                second.execute(
                    select(Incident).where(Incident.id == int(ref[4:])).with_for_update(nowait=True)
                )


def test_concurrent_transitions_on_postgresql_leave_a_valid_story(
    factory: Factory, runtime: Runtime
) -> None:
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE); row locks are PostgreSQL's")
    ref = factory.incident(title="x")
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def move(to: Status) -> None:
        start.wait()
        try:
            with runtime.transaction() as session:
                service.transition(
                    session, SYSTEM, service.get_incident(session, ref, lock=True), to
                )
            outcomes.append(f"ok:{to.value}")
        except Conflict:
            outcomes.append(f"conflict:{to.value}")

    threads = [threading.Thread(target=move, args=(s,)) for s in (Status.resolved, Status.declined)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "ok"]
    with runtime.read() as session:
        incident = service.get_incident(session, ref)
        statuses = [
            e.after["status"]
            for e in _stored_timeline(session, incident)
            if e.kind == "status_changed"
        ]
    assert len(statuses) == 1


def test_a_note_waiting_for_a_merge_is_refused_once_the_merge_commits(
    factory: Factory, runtime: Runtime, server_url: str
) -> None:
    """The note's request reads the incident (still in triage), then waits for the row lock
    a merge holds. What it decides on must be the status read after the lock, the merged
    one: a stale copy would land the note on a merged incident."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE); row locks are PostgreSQL's")
    responder = factory.user(Role.responder)
    survivor = factory.incident(title="survivor")
    ref = factory.incident(title="duplicate")
    answers: list[httpx.Response] = []

    def add_note() -> None:
        with httpx.Client(base_url=server_url, headers=responder.headers, timeout=60) as client:
            answers.append(client.post(f"/api/v1/incidents/{ref}/notes", json={"text": "late"}))

    noting = threading.Thread(target=add_note)
    with runtime.transaction() as session:
        service.transition(
            session, SYSTEM, service.get_incident(session, ref), Status.merged,
            merged_into=survivor,
        )  # fmt: skip
        noting.start()
        with runtime.read() as watcher:  # hold the merge open until the note waits on it
            while noting.is_alive() and not watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ):
                watcher.rollback()
    noting.join(60)
    assert [a.status_code for a in answers] == [409], [a.text for a in answers]
    assert answers[0].json()["merged_into"] == survivor
    with runtime.read() as session:
        kinds = [e.kind for e in _stored_timeline(session, service.get_incident(session, ref))]
    assert "note" not in kinds


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["transition", "acknowledge", "note"]),
        st.sampled_from(list(Status)),
        # Minutes the clock moves before the step; zero and negative steps model equal
        # timestamps and a clock that stepped back (NTP, two servers with skew).
        st.integers(min_value=-3, max_value=30),
    ),
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_any_sequence_of_attempts_keeps_the_story_consistent(
    runtime: Runtime, steps: list[tuple[str, Status, int]]
) -> None:
    policy = runtime.settings.severity_policy
    with clock.FrozenClock(T0) as frozen:
        with runtime.transaction() as session:
            from firetower.incidents.schemas import IncidentCreate

            target = service.declare(session, SYSTEM, IncidentCreate(title="target"), policy).ref
            ref = service.declare(session, SYSTEM, IncidentCreate(title="subject"), policy).ref
        expected = Status.triage
        for action, to, minutes in steps:
            frozen.advance(minutes=minutes)
            with runtime.read() as session:
                events_before = len(_stored_timeline(session, service.get_incident(session, ref)))
            try:
                with runtime.transaction() as session:
                    incident = service.get_incident(session, ref)
                    if action == "transition":
                        service.transition(
                            session,
                            SYSTEM,
                            incident,
                            to,
                            merged_into=target if to == Status.merged else None,
                        )
                    elif action == "acknowledge":
                        service.acknowledge(session, SYSTEM, incident)
                    else:
                        service.add_note(session, SYSTEM, incident, "step")
            except (Conflict, InvalidInput):
                assert action == "transition" and to not in TRANSITIONS[expected]
                with runtime.read() as session:
                    incident = service.get_incident(session, ref)
                    assert incident.status == expected
                    assert len(_stored_timeline(session, incident)) == events_before
                continue
            if action == "transition":
                assert to in TRANSITIONS[expected]
                expected = to
        with runtime.read() as session:
            incident = service.get_incident(session, ref)
            assert incident.status == expected
            stored = _stored_timeline(session, incident)
            derived = derive_lifecycle(stored)
            assert derived == _columns(incident)
            replayed = [e.after["status"] for e in stored if e.kind == "status_changed"]
            assert (replayed[-1] if replayed else Status.triage) == expected
            # The columns tell the same story as the status.
            assert (incident.resolved_at is not None) == (
                expected in (Status.resolved, Status.closed)
            )
            assert (incident.closed_at is not None) == (expected == Status.closed)
            if expected in ACTIVE and expected != Status.triage:
                assert incident.acknowledged_at is not None
            if expected in (Status.mitigated, Status.resolved, Status.closed):
                assert incident.mitigated_at is not None


def test_derive_lifecycle_replays_in_append_order() -> None:
    """Equal or backwards timestamps must not reorder the story."""

    class E:
        def __init__(self, id: int, at: datetime, kind: str, before: object, after: object):
            self.id, self.at, self.kind, self.before, self.after = id, at, kind, before, after

    events = [
        E(1, T0, "declared", None, {"detected_at": None}),
        E(
            2,
            T0 + timedelta(minutes=5),
            "status_changed",
            {"status": "triage"},
            {"status": "resolved"},
        ),
        # A second server whose clock is a minute behind reopens it.
        E(
            3,
            T0 + timedelta(minutes=4),
            "status_changed",
            {"status": "resolved"},
            {"status": "investigating"},
        ),
    ]
    derived = derive_lifecycle(reversed(events))
    assert derived.resolved_at is None
    assert derived.acknowledged_at == T0 + timedelta(minutes=5)
