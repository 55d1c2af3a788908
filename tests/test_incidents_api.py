"""Incidents over the API: declare, roles, participants, tasks, notes, pins and the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from firetower import clock
from firetower.auth import service as auth_service
from firetower.auth.schemas import Role
from firetower.incidents import service
from firetower.runtime import Runtime
from tests.factories import SYSTEM, ApiUser, Factory, row_counts

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _timeline(user: ApiUser, ref: str, **params: Any) -> list[dict[str, Any]]:
    answer = user.get(f"/api/v1/incidents/{ref}/timeline", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_declare_with_every_field(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("search", tier=3)
    factory.service("search-index", tier=3)
    with clock.FrozenClock(T0):
        answer = responder.post(
            "/api/v1/incidents",
            json={
                "title": "  Search returns nothing  ",
                "severity": "SEV4",
                "services": ["search", "search-index"],
                "summary": "Empty results since the last index build.",
                "source": "user-report",
                "impact_started_at": "2026-03-01T11:30:00+01:00",
                "detected_at": "2026-03-01T11:50:00Z",
            },
        )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["ref"].startswith("INC-")
    assert body["title"] == "Search returns nothing"
    assert body["severity"] == "SEV4"
    assert body["status"] == "triage"
    assert body["source"] == "user-report"
    assert body["services"] == ["search", "search-index"]
    assert body["summary"] == "Empty results since the last index build."
    assert body["impact_started_at"] == "2026-03-01T10:30:00Z"
    assert body["detected_at"] == "2026-03-01T11:50:00Z"
    assert body["declared_at"] == "2026-03-01T12:00:00Z"
    assert body["acknowledged_at"] is None
    assert body["participants"] == [responder.email]
    assert body["allowed_transitions"][0] == "investigating"
    declared = _timeline(responder, body["ref"])[0]
    assert declared["kind"] == "declared"
    assert declared["actor"] == responder.email
    assert declared["after"]["severity"] == "SEV4"


def test_every_source_is_accepted(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    for source in ("manual", "alert", "probe", "slo", "user-report", "dependency"):
        answer = responder.post("/api/v1/incidents", json={"title": "t", "source": source})
        assert answer.status_code == 201, answer.text
        assert answer.json()["source"] == source


def test_refs_count_up_and_are_found_case_insensitively(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    first = responder.post("/api/v1/incidents", json={"title": "one"}).json()["ref"]
    second = responder.post("/api/v1/incidents", json={"title": "two"}).json()["ref"]
    assert int(second.removeprefix("INC-")) == int(first.removeprefix("INC-")) + 1
    assert responder.get(f"/api/v1/incidents/{first.lower()}").json()["title"] == "one"
    missing = responder.get("/api/v1/incidents/INC-999999")
    assert missing.status_code == 404
    assert missing.json()["field"] == "ref"
    bad = responder.get("/api/v1/incidents/42")
    assert bad.status_code == 422
    assert bad.json()["field"] == "ref"


def test_declare_refusals_name_the_field_and_write_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    factory.service("api")
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({"title": ""}, "title", 422),
        ({"title": "   "}, "title", 422),
        ({"title": "x", "severity": "SEV5"}, "severity", 422),
        ({"title": "x", "source": "pager"}, "source", 422),
        ({"title": "x", "services": ["nope"]}, "services", 404),
        ({"title": "x", "services": ["api"], "unknown": 1}, "unknown", 422),
        ({"title": "x", "impact_started_at": "2026-01-01T00:00:00"}, "impact_started_at", 422),
        (
            {
                "title": "x",
                "impact_started_at": "2026-01-02T00:00:00Z",
                "detected_at": "2026-01-01T00:00:00Z",
            },
            "impact_started_at",
            422,
        ),
        ({"title": "x", "detected_at": "2999-01-01T00:00:00Z"}, "detected_at", 422),
        ({"title": "nul \x00 byte"}, "title", 422),
    ]
    before = row_counts(runtime)
    for payload, field, status in cases:
        answer = responder.post("/api/v1/incidents", json=payload)
        assert answer.status_code == status, (payload, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["field"] == field, (payload, answer.json())
    assert row_counts(runtime) == before


def test_duplicate_services_are_listed_once(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("db")
    answer = responder.post("/api/v1/incidents", json={"title": "x", "services": ["db", "db"]})
    assert answer.status_code == 201, answer.text
    assert answer.json()["services"] == ["db"]


def test_update_each_field_lands_on_the_timeline_with_before_and_after(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("a")
    factory.service("b")
    ref = factory.incident(responder.actor, title="old", services=["a"], severity="SEV4")
    answer = responder.patch(
        f"/api/v1/incidents/{ref}",
        json={
            "title": "new",
            "summary": "what we know",
            "severity": "SEV3",
            "services": ["a", "b"],
            "impact_started_at": "2020-01-01T00:00:00Z",
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["title"], body["severity"], body["services"]) == ("new", "SEV3", ["a", "b"])
    assert body["impact_started_at"] == "2020-01-01T00:00:00Z"
    changes = {e["kind"]: e for e in _timeline(responder, ref)}
    assert changes["title_changed"]["before"] == {"title": "old"}
    assert changes["title_changed"]["after"] == {"title": "new"}
    assert changes["severity_changed"]["before"] == {"severity": "SEV4"}
    assert changes["services_changed"]["after"] == {"services": ["a", "b"]}
    assert changes["impact_started_changed"]["after"] == {
        "impact_started_at": "2020-01-01T00:00:00+00:00"
    }
    assert all(e["actor"] == responder.email for e in changes.values() if e["kind"] != "declared")


def test_the_same_services_in_another_order_are_no_change(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    factory.service("a")
    factory.service("b")
    ref = factory.incident(responder.actor, title="x", services=["a", "b"])
    answer = responder.patch(f"/api/v1/incidents/{ref}", json={"services": ["b", "a"]})
    assert answer.status_code == 200, answer.text
    assert [e["kind"] for e in _timeline(responder, ref)] == ["declared"]


def test_update_refusals_write_nothing(factory: Factory, runtime: Runtime) -> None:
    responder = factory.user(Role.responder)
    ref = factory.incident(responder.actor, title="x")
    with clock.FrozenClock(clock.now() + timedelta(hours=1)):
        before = row_counts(runtime)
        for payload, field, status in [
            ({"title": None}, "title", 422),
            ({"title": "   "}, "title", 422),
            ({"title": "ok", "status": "closed"}, "status", 409),
            ({"title": "ok", "merged_into": "INC-1"}, "merged_into", 422),
            ({"impact_started_at": "2999-01-01T00:00:00Z"}, "impact_started_at", 422),
            ({"title": "ok", "services": ["ghost"]}, "services", 404),
        ]:
            answer = responder.patch(f"/api/v1/incidents/{ref}", json=payload)
            assert answer.status_code == status, (payload, answer.text)
            assert answer.json()["field"] == field, (payload, answer.json())
        assert row_counts(runtime) == before
    assert responder.get(f"/api/v1/incidents/{ref}").json()["title"] == "x"


def test_impact_cannot_start_after_detection_on_update(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    ref = factory.incident(responder.actor, title="x", detected_at=T0)
    later = (T0 + timedelta(minutes=1)).isoformat()
    answer = responder.patch(f"/api/v1/incidents/{ref}", json={"impact_started_at": later})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "impact_started_at"


def test_roles_are_assigned_and_handed_over(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    bob = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    for role in ("commander", "communications_lead", "scribe", "operations_lead"):
        answer = alice.put(f"/api/v1/incidents/{ref}/roles/{role}", json={"user": alice.email})
        assert answer.status_code == 200, answer.text
        assert answer.json()["role"] == role
    handover = alice.put(f"/api/v1/incidents/{ref}/roles/commander", json={"user": bob.email})
    assert handover.json()["user"] == bob.email
    shown = alice.get(f"/api/v1/incidents/{ref}").json()
    holders = {r["role"]: r["user"] for r in shown["roles"]}
    assert holders == {
        "commander": bob.email,
        "communications_lead": alice.email,
        "scribe": alice.email,
        "operations_lead": alice.email,
    }
    assert bob.email in shown["participants"]
    last = _timeline(alice, ref)[-1]
    assert last["kind"] == "role_assigned"
    assert last["before"] == {"user": alice.email}
    assert last["after"] == {"role": "commander", "user": bob.email}
    unknown = alice.put(f"/api/v1/incidents/{ref}/roles/commander", json={"user": "no@x.org"})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "user"
    bad_role = alice.put(f"/api/v1/incidents/{ref}/roles/janitor", json={"user": bob.email})
    assert bad_role.status_code == 422
    assert bad_role.json()["field"] == "role"


def test_join_acknowledge_and_participants(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    bob = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    assert bob.post(f"/api/v1/incidents/{ref}/join").status_code == 200
    assert bob.post(f"/api/v1/incidents/{ref}/join").status_code == 200
    acked = bob.post(f"/api/v1/incidents/{ref}/acknowledge").json()
    assert acked["acknowledged_at"] is not None
    assert acked["participants"] == [alice.email, bob.email]
    kinds = [e["kind"] for e in _timeline(alice, ref)]
    assert kinds == ["declared", "participant_joined", "acknowledged"]
    bob.post(f"/api/v1/incidents/{ref}/acknowledge")
    assert [e["kind"] for e in _timeline(alice, ref)].count("acknowledged") == 1


def test_tasks_are_a_checklist(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    bob = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    made = alice.post(
        f"/api/v1/incidents/{ref}/tasks", json={"title": "Roll back", "assignee": bob.email}
    )
    assert made.status_code == 201, made.text
    task = made.json()
    assert (task["status"], task["assignee"]) == ("open", bob.email)
    done = alice.patch(f"/api/v1/incidents/{ref}/tasks/{task['id']}", json={"status": "done"})
    assert done.json()["status"] == "done"
    assert done.json()["completed_at"] is not None
    reassigned = alice.patch(
        f"/api/v1/incidents/{ref}/tasks/{task['id']}", json={"assignee": None, "status": "open"}
    ).json()
    assert (reassigned["assignee"], reassigned["completed_at"]) == (None, None)
    events = [e for e in _timeline(alice, ref) if e["kind"].startswith("task_")]
    assert [e["kind"] for e in events] == ["task_added", "task_updated", "task_updated"]
    assert events[1]["before"] == {"task_id": task["id"], "status": "open"}
    assert events[1]["after"] == {"task_id": task["id"], "status": "done"}
    assert [e["text"] for e in events[1:]] == [
        "Task done: Roll back",
        "Task reopened, unassigned: Roll back",
    ]
    shown = alice.get(f"/api/v1/incidents/{ref}").json()
    assert [t["title"] for t in shown["tasks"]] == ["Roll back"]
    for payload, field, status in [
        ({"title": "t", "assignee": "ghost@example.com"}, "assignee", 404),
        ({"title": "   "}, "title", 422),
    ]:
        answer = alice.post(f"/api/v1/incidents/{ref}/tasks", json=payload)
        assert answer.status_code == status, answer.text
        assert answer.json()["field"] == field
    bad_status = alice.patch(f"/api/v1/incidents/{ref}/tasks/{task['id']}", json={"status": "x"})
    assert bad_status.json()["field"] == "status"
    other = factory.incident(alice.actor, title="other")
    assert alice.patch(f"/api/v1/incidents/{other}/tasks/{task['id']}", json={}).status_code == 404


def test_notes_and_pins(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    ref = factory.incident(alice.actor, title="x")
    note = alice.post(f"/api/v1/incidents/{ref}/notes", json={"text": "  cache is cold "})
    assert note.status_code == 201, note.text
    assert note.json()["text"] == "cache is cold"
    assert note.json()["pinned"] is False
    pinned = alice.put(f"/api/v1/incidents/{ref}/timeline/{note.json()['id']}/pin")
    assert pinned.json()["pinned"] is True
    assert [e["text"] for e in _timeline(viewer, ref, pinned="true")] == ["cache is cold"]
    unpinned = alice.delete(f"/api/v1/incidents/{ref}/timeline/{note.json()['id']}/pin")
    assert unpinned.json()["pinned"] is False
    assert _timeline(viewer, ref, pinned="true") == []
    # Pinning is a change like any other: who pinned or unpinned what is on the timeline.
    trail = [e for e in _timeline(viewer, ref) if e["kind"] in ("pinned", "unpinned")]
    assert [(e["kind"], e["actor"], e["after"]["event_id"]) for e in trail] == [
        ("pinned", alice.email, note.json()["id"]),
        ("unpinned", alice.email, note.json()["id"]),
    ]
    again = alice.delete(f"/api/v1/incidents/{ref}/timeline/{note.json()['id']}/pin")
    assert again.status_code == 200
    assert len([e for e in _timeline(viewer, ref) if e["kind"] == "unpinned"]) == 1
    other = factory.incident(alice.actor, title="other")
    foreign = alice.put(f"/api/v1/incidents/{other}/timeline/{note.json()['id']}/pin")
    assert foreign.status_code == 404
    assert foreign.json()["field"] == "event_id"
    assert alice.post(f"/api/v1/incidents/{ref}/notes", json={"text": " "}).status_code == 422


def test_timeline_is_append_only_and_paged_by_id(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    for n in range(3):
        alice.post(f"/api/v1/incidents/{ref}/notes", json={"text": f"note {n}"})
    everything = _timeline(alice, ref)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    alice.patch(f"/api/v1/incidents/{ref}", json={"title": "y"})
    assert _timeline(alice, ref)[: len(everything)] == everything
    newer = _timeline(alice, ref, after_id=ids[-1])
    assert [e["kind"] for e in newer] == ["title_changed"]


def test_huge_ids_in_paths_are_refused_not_crashed(factory: Factory) -> None:
    alice = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    huge = 2**70
    for answer in (
        alice.put(f"/api/v1/incidents/{ref}/timeline/{huge}/pin"),
        alice.patch(f"/api/v1/incidents/{ref}/tasks/{huge}", json={}),
        alice.get(f"/api/v1/incidents/{ref}/timeline", params={"after_id": huge}),
    ):
        assert answer.status_code in (404, 422), answer.text
        assert answer.headers["content-type"] == "application/problem+json"


def test_a_body_nested_past_what_json_can_read_is_refused_by_name(
    factory: Factory, runtime: Runtime
) -> None:
    """Python's JSON reader recurses once per level; FastAPI answered a body nested past its
    limit with "There was an error parsing the body", which names nothing."""
    admin = factory.user(Role.admin)
    factory.service("checkout")
    before = row_counts(runtime)
    deep = "[" * 100_000 + "]" * 100_000
    for url in ("/api/v1/incidents", "/api/v1/silences", "/api/v1/services"):
        answer = admin.client.post(
            url,
            content=f'{{"title": "x", "matchers": {deep}}}',
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, (url, answer.text)
        problem = answer.json()
        assert problem["field"] == "body", problem
        assert problem["detail"] == "body: arrays or objects nest too deeply to read", problem
    assert row_counts(runtime) == before


def test_a_merged_incident_refuses_changes_from_people(factory: Factory, runtime: Runtime) -> None:
    """People work on the survivor; a change to the merged incident would be lost there."""
    alice = factory.user(Role.responder)
    bob = factory.user(Role.responder)
    survivor = factory.incident(alice.actor, title="survivor")
    duplicate = factory.incident(alice.actor, title="duplicate")
    note = alice.post(f"/api/v1/incidents/{duplicate}/notes", json={"text": "seen twice"}).json()
    task = alice.post(f"/api/v1/incidents/{duplicate}/tasks", json={"title": "Roll back"}).json()
    merged = alice.post(
        f"/api/v1/incidents/{duplicate}/transitions",
        json={"to": "merged", "merged_into": survivor},
    )
    assert merged.status_code == 200, merged.text
    url = f"/api/v1/incidents/{duplicate}"
    before = row_counts(runtime)
    stories = {ref: _timeline(alice, ref) for ref in (duplicate, survivor)}
    shown = alice.get(url).json()
    for send, path, body in [
        (alice.patch, "", {"title": "renamed"}),
        (alice.patch, "", {"severity": "SEV1"}),
        (alice.post, "/transitions", {"to": "investigating"}),
        (bob.post, "/acknowledge", None),
        (bob.post, "/join", None),
        (alice.put, "/roles/commander", {"user": bob.email}),
        (alice.post, "/notes", {"text": "still here?"}),
        (alice.put, f"/timeline/{note['id']}/pin", None),
        (alice.post, "/tasks", {"title": "Check caches"}),
        (alice.patch, f"/tasks/{task['id']}", {"status": "done"}),
    ]:
        answer = send(url + path, json=body) if body is not None else send(url + path)
        assert answer.status_code == 409, (path, body, answer.text)
        problem = answer.json()
        assert problem["merged_into"] == survivor, (path, problem)
        assert survivor in problem["detail"], problem
    assert row_counts(runtime) == before
    assert {ref: _timeline(alice, ref) for ref in stories} == stories
    assert alice.get(url).json() == shown
    # Firetower itself still writes there, e.g. the note that the incident's alerts cleared.
    with runtime.transaction() as session:
        service.add_note(session, SYSTEM, service.get_incident(session, duplicate), "cleared")
    last = _timeline(alice, duplicate)[-1]
    assert (last["kind"], last["text"], last["actor"]) == ("note", "cleared", SYSTEM.label)


def _deactivate(runtime: Runtime, email: str) -> None:
    """As an admin does it (``PATCH /api/v1/users/{id}`` goes through this function)."""
    with runtime.transaction() as session:
        auth_service.set_active(
            session, SYSTEM, auth_service.get_user_by_email(session, email), False
        )


def test_a_deactivated_user_gets_no_new_role_or_task(factory: Factory, runtime: Runtime) -> None:
    """Nobody can log in as them to do the work; re-sending what they already hold still
    succeeds without a change, so a retried request or a resubmitted form does not fail."""
    alice = factory.user(Role.responder)
    carol = factory.user(Role.responder)
    gone = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    url = f"/api/v1/incidents/{ref}"
    held = alice.put(f"{url}/roles/commander", json={"user": carol.email})
    assert held.status_code == 200, held.text
    task = alice.post(f"{url}/tasks", json={"title": "Roll back", "assignee": carol.email}).json()
    _deactivate(runtime, gone.email)
    before = row_counts(runtime)
    story = _timeline(alice, ref)
    for send, path, body, field in [
        (alice.put, "/roles/commander", {"user": gone.email}, "user"),
        (alice.put, "/roles/scribe", {"user": gone.email.upper()}, "user"),
        (alice.post, "/tasks", {"title": "Page DBA", "assignee": gone.email}, "assignee"),
        (alice.patch, f"/tasks/{task['id']}", {"assignee": gone.email}, "assignee"),
    ]:
        answer = send(url + path, json=body)
        assert answer.status_code == 409, (path, answer.text)
        problem = answer.json()
        assert problem["field"] == field, problem
        assert gone.email in problem["detail"] and "deactivated" in problem["detail"], problem
    assert row_counts(runtime) == before
    assert _timeline(alice, ref) == story
    shown = alice.get(url).json()
    assert {r["role"]: r["user"] for r in shown["roles"]} == {"commander": carol.email}
    assert [t["assignee"] for t in shown["tasks"]] == [carol.email]
    # Carol leaves too; sending her again as she is holds nothing new and is no refusal.
    _deactivate(runtime, carol.email)
    again = alice.put(f"{url}/roles/commander", json={"user": f" {carol.email.upper()} "})
    assert again.status_code == 200, again.text
    assert again.json()["user"] == carol.email
    same = alice.patch(
        f"{url}/tasks/{task['id']}", json={"assignee": carol.email.upper(), "status": "done"}
    )
    assert same.status_code == 200, same.text
    assert (same.json()["assignee"], same.json()["status"]) == (carol.email, "done")
    assert [e["kind"] for e in _timeline(alice, ref)[len(story) :]] == ["task_updated"]
    # Work moves off her to someone active as before.
    moved = alice.patch(f"{url}/tasks/{task['id']}", json={"assignee": alice.email})
    assert moved.json()["assignee"] == alice.email


def test_roles_and_tasks_say_whether_their_holder_is_still_active(
    factory: Factory, runtime: Runtime
) -> None:
    """Work held by someone deactivated since stays theirs until handed over; the incident
    says so (``user_active``, ``assignee_active``), as the console's "(deactivated)" does."""
    alice = factory.user(Role.responder)
    bo = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    url = f"/api/v1/incidents/{ref}"
    held = alice.put(f"{url}/roles/commander", json={"user": bo.email})
    assert held.json()["user_active"] is True
    assert alice.put(f"{url}/roles/scribe", json={"user": alice.email}).is_success
    task = alice.post(f"{url}/tasks", json={"title": "Roll back", "assignee": bo.email}).json()
    assert task["assignee_active"] is True
    loose = alice.post(f"{url}/tasks", json={"title": "Write it up"}).json()
    assert (loose["assignee"], loose["assignee_active"]) == (None, None)

    _deactivate(runtime, bo.email)
    shown = alice.get(url).json()
    assert [(r["role"], r["user"], r["user_active"]) for r in shown["roles"]] == [
        ("commander", bo.email, False),
        ("scribe", alice.email, True),
    ]
    assert [(t["assignee"], t["assignee_active"]) for t in shown["tasks"]] == [
        (bo.email, False),
        (None, None),
    ]
    # Re-sent as they are (a retry), they still say so; handed over, the mark goes.
    again = alice.put(f"{url}/roles/commander", json={"user": bo.email})
    assert (again.status_code, again.json()["user_active"]) == (200, False)
    same = alice.patch(f"{url}/tasks/{task['id']}", json={"assignee": bo.email})
    assert same.json()["assignee_active"] is False
    assert alice.put(f"{url}/roles/commander", json={"user": alice.email}).json()["user_active"]
    moved = alice.patch(f"{url}/tasks/{task['id']}", json={"assignee": alice.email}).json()
    assert (moved["assignee"], moved["assignee_active"]) == (alice.email, True)


def test_participants_say_whether_they_are_still_active(factory: Factory, runtime: Runtime) -> None:
    """As roles and tasks do: ``deactivated_participants`` names those of ``participants``
    deactivated since they joined, so the console and the CLI can mark them."""
    alice = factory.user(Role.responder)
    bo = factory.user(Role.responder)
    ref = factory.incident(alice.actor, title="x")
    url = f"/api/v1/incidents/{ref}"
    joined = bo.post(f"{url}/join").json()
    assert (joined["participants"], joined["deactivated_participants"]) == (
        [alice.email, bo.email],
        [],
    )
    _deactivate(runtime, bo.email)
    shown = alice.get(url).json()
    assert (shown["participants"], shown["deactivated_participants"]) == (
        [alice.email, bo.email],
        [bo.email],
    )
