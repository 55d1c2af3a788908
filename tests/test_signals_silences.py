"""Silences and maintenance windows: muted alerts are kept and counted but open nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firetower import clock
from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.runtime import Runtime
from firetower.signals.models import Silence
from firetower.signals.queries import format_matcher, parse_matcher
from firetower.signals.routing import compile_matchers, silence_holds
from firetower.signals.schemas import Matcher, MatchOp
from firetower.signals.service import MuteWatch, find_held
from tests.factories import ApiUser, Factory, row_counts
from tests.signals_support import (
    alert_by_fingerprint,
    incident_count,
    run_due_jobs,
    scheduled_worker,
    sql_run,
    sqlite_plan,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _key(admin: ApiUser, service: str) -> str:
    answer = admin.post(
        "/api/v1/integrations",
        json={"name": f"am-{service}", "kind": "alertmanager", "service_name": service},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _post(
    factory: Factory, key: str, fingerprint: str, status: str = "firing", **labels: str
) -> Any:
    alert = {
        "status": status,
        "labels": {"alertname": "HighErrorRate", **labels},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T10:05:00Z",
        "fingerprint": fingerprint,
    }
    body = {"version": "4", "status": status, "alerts": [alert]}
    answer = factory.client.post(f"/ingest/alertmanager/{key}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _silence(user: ApiUser, *matchers: tuple[str, str, str], minutes: int = 60) -> Any:
    answer = user.post(
        "/api/v1/silences",
        json={
            "matchers": [{"label": k, "op": op, "value": v} for k, op, v in matchers],
            "ends_at": _iso(clock.now() + timedelta(minutes=minutes)),
            "comment": "deploying",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.mark.parametrize(
    ("op", "value", "labels", "expected"),
    [
        ("=", "api", {"job": "api"}, True),
        ("=", "api", {"job": "api-gateway"}, False),
        ("=", "", {}, True),  # a missing label reads as ""
        ("!=", "api", {"job": "web"}, True),
        ("!=", "api", {"job": "api"}, False),
        ("!=", "api", {}, True),
        ("=~", "api", {"job": "api"}, True),
        ("=~", "api", {"job": "api-gateway"}, False),  # anchored at both ends
        ("=~", "api", {"job": "my-api"}, False),
        ("=~", "api.*", {"job": "api-gateway"}, True),
        ("=~", "a|b", {"job": "b"}, True),
        ("=~", "a|b", {"job": "ab"}, False),  # the whole alternation is anchored
        ("!~", "api", {"job": "api-gateway"}, True),
        ("!~", "api.*", {"job": "api-gateway"}, False),
        ("!~", "api", {"job": "api"}, False),
    ],
)
def test_every_matcher_op(op: str, value: str, labels: dict[str, str], expected: bool) -> None:
    silence = compile_matchers([{"label": "job", "op": op, "value": value}])
    assert silence_holds(silence, labels) is expected


def test_every_matcher_must_hold() -> None:
    silence = compile_matchers(
        [
            {"label": "job", "op": "=", "value": "api"},
            {"label": "env", "op": "!=", "value": "staging"},
        ]
    )
    assert silence_holds(silence, {"job": "api", "env": "prod"})
    assert not silence_holds(silence, {"job": "api", "env": "staging"})


def test_a_silenced_alert_opens_nothing_while_an_unsilenced_one_does(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    service = factory.service("checkout")
    key = _key(admin, service)
    _silence(factory.user(Role.responder), ("job", "=~", "api"))

    answer = _post(factory, key, "muted", job="api")
    assert answer["opened"] == []
    _post(factory, key, "muted", job="api")  # a repeat is still deduplicated
    muted = alert_by_fingerprint(runtime, "muted")
    assert muted.silenced and muted.count == 2 and muted.incident_id is None
    assert incident_count(runtime) == 0

    answer = _post(factory, key, "loud", job="api-gateway")  # not matched: anchored
    assert len(answer["opened"]) == 1
    loud = alert_by_fingerprint(runtime, "loud")
    assert not loud.silenced and loud.incident_id is not None

    _post(factory, key, "muted2", job="api")  # would attach to the open incident: it does not
    assert alert_by_fingerprint(runtime, "muted2").incident_id is None
    assert incident_count(runtime) == 1

    _post(factory, key, "muted", status="resolved", job="api")  # resolving still works
    assert alert_by_fingerprint(runtime, "muted").status == "resolved"


def test_expiry_and_end_let_alerts_through_again(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    key = _key(admin, factory.service("payments"))
    with FrozenClock(T0) as frozen:
        silence = _silence(responder, ("team", "=", "pay"), minutes=30)
        assert [s["id"] for s in responder.get("/api/v1/silences").json()] == [silence["id"]]
        _post(factory, key, "a", team="pay")
        assert alert_by_fingerprint(runtime, "a").silenced

        frozen.advance(minutes=31)  # the silence ended on its own
        assert responder.get("/api/v1/silences").json() == []
        assert len(responder.get("/api/v1/silences", params={"all": "true"}).json()) == 1
        answer = _post(factory, key, "a", team="pay")  # the same alert, still firing
        assert len(answer["opened"]) == 1
        alert = alert_by_fingerprint(runtime, "a")
        assert not alert.silenced and alert.incident_id is not None and alert.count == 2

        second = _silence(responder, ("team", "=", "pay"))
        _post(factory, key, "b", team="pay")
        assert alert_by_fingerprint(runtime, "b").silenced
        expired = responder.post(f"/api/v1/silences/{second['id']}/expire")
        assert expired.status_code == 200, expired.text
        assert expired.json()["expired_at"] is not None
        assert responder.get("/api/v1/silences").json() == []
        _post(factory, key, "c", team="pay")
        assert not alert_by_fingerprint(runtime, "c").silenced
        assert alert_by_fingerprint(runtime, "c").incident_id == alert.incident_id


def test_the_default_list_shows_pending_silences_with_their_state(
    factory: Factory, runtime: Runtime
) -> None:
    """A silence scheduled for later used to be listed only with ``?all=true``."""
    responder = factory.user(Role.responder)
    with FrozenClock(T0) as frozen:
        now = _silence(responder, ("team", "=", "pay"), minutes=30)
        later = responder.post(
            "/api/v1/silences",
            json={
                "matchers": [{"label": "team", "op": "=", "value": "db"}],
                "starts_at": _iso(T0 + timedelta(minutes=10)),
                "ends_at": _iso(T0 + timedelta(minutes=70)),
            },
        )
        assert later.status_code == 201, later.text
        assert later.json()["state"] == "pending"

        def listed(**params: str) -> list[tuple[int, str]]:
            answer = responder.get("/api/v1/silences", params=params)
            assert answer.status_code == 200, answer.text
            return [(s["id"], s["state"]) for s in answer.json()]

        pending = later.json()["id"]
        assert listed() == [(now["id"], "active"), (pending, "pending")]
        expired = responder.post(f"/api/v1/silences/{now['id']}/expire").json()
        assert expired["state"] == "expired"
        assert listed() == [(pending, "pending")]
        frozen.advance(minutes=10)
        assert listed() == [(pending, "active")]
        frozen.advance(minutes=60)
        assert listed() == []
        assert listed(all="true") == [(pending, "ended"), (now["id"], "expired")]


def test_a_silence_from_an_alert_matches_its_labels(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    key = _key(admin, factory.service("search"))
    with FrozenClock(T0) as frozen:
        _post(factory, key, "x", job="indexer", instance="i-1")
        alert = alert_by_fingerprint(runtime, "x")
        answer = responder.post(
            f"/api/v1/alerts/{alert.id}/silence",
            json={"duration_minutes": 15, "comment": "known, fixing"},
        )
        assert answer.status_code == 201, answer.text
        silence = answer.json()
        assert {(m["label"], m["op"], m["value"]) for m in silence["matchers"]} == {
            ("alertname", "=", "HighErrorRate"),
            ("job", "=", "indexer"),
            ("instance", "=", "i-1"),
        }
        assert silence["created_by"] == responder.email
        assert silence["ends_at"].startswith("2026-11-28T12:15:00")
        _post(factory, key, "y", job="indexer", instance="i-1")
        _post(factory, key, "z", job="indexer", instance="i-2")
        assert alert_by_fingerprint(runtime, "y").silenced
        assert not alert_by_fingerprint(runtime, "z").silenced
        frozen.advance(minutes=16)
        _post(factory, key, "y2", job="indexer", instance="i-1")
        assert not alert_by_fingerprint(runtime, "y2").silenced
    assert (
        responder.post("/api/v1/alerts/999999/silence", json={"duration_minutes": 5}).status_code
        == 404
    )
    viewer = factory.user(Role.viewer)
    assert (
        viewer.post(f"/api/v1/alerts/{alert.id}/silence", json={"duration_minutes": 5}).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("labels", "said"),
    [
        (
            {"query": "q" * 1001},
            "alert {id}'s label 'query' cannot be a matcher: "
            "string should have at most 1000 characters;",
        ),
        (
            {"n" * 101: "x"},
            "alert {id}'s label 'nnnnnnnnnn…' cannot be a matcher: "
            "string should have at most 100 characters;",
        ),
    ],
)
def test_a_silence_from_an_alert_whose_label_no_matcher_holds_is_refused_by_name(
    factory: Factory, runtime: Runtime, labels: dict[str, str], said: str
) -> None:
    """Intake keeps labels of any length; a matcher holds a 100-character name and a
    1,000-character value. Silencing such an alert in one click was a 500."""
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    key = _key(admin, factory.service("search"))
    _post(factory, key, "long", **labels)
    alert = alert_by_fingerprint(runtime, "long")
    before = row_counts(runtime)
    answer = responder.post(f"/api/v1/alerts/{alert.id}/silence", json={"duration_minutes": 15})
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == "id"
    assert problem["detail"].startswith(said.format(id=alert.id)), problem["detail"]
    assert "silence it with matchers on its other labels" in problem["detail"]
    assert row_counts(runtime) == before


def test_a_maintenance_window_mutes_its_service_only(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    db_key = _key(admin, factory.service("db"))
    web_key = _key(admin, factory.service("web"))
    with FrozenClock(T0) as frozen:
        answer = responder.post(
            "/api/v1/maintenance-windows",
            json={
                "service_name": "db",
                "starts_at": _iso(T0 + timedelta(minutes=10)),
                "ends_at": _iso(T0 + timedelta(hours=1)),
                "comment": "upgrade",
            },
        )
        assert answer.status_code == 201, answer.text
        window = answer.json()
        assert responder.get("/api/v1/maintenance-windows").json()[0]["id"] == window["id"]
        assert len(_post(factory, db_key, "early")["opened"]) == 1  # not started yet
        frozen.advance(minutes=15)
        assert _post(factory, db_key, "during")["opened"] == []
        during = alert_by_fingerprint(runtime, "during")
        assert during.silenced and during.incident_id is None  # not attached either
        assert len(_post(factory, web_key, "other")["opened"]) == 1
        deleted = responder.delete(f"/api/v1/maintenance-windows/{window['id']}")
        assert deleted.status_code == 204
        assert responder.get("/api/v1/maintenance-windows").json() == []
        _post(factory, db_key, "after")
        assert not alert_by_fingerprint(runtime, "after").silenced
        assert responder.delete(f"/api/v1/maintenance-windows/{window['id']}").status_code == 404


def test_a_silence_given_a_duration_lasts_it_from_the_servers_now(factory: Factory) -> None:
    """A client that sends ``ends_at`` computed on its own skewed clock makes a silence of the
    wrong length: ``duration_seconds`` is measured on the server, from ``starts_at`` or now."""
    responder = factory.user(Role.responder)
    matchers = [{"label": "team", "op": "=", "value": "pay"}]
    with FrozenClock(T0):
        now = responder.post(
            "/api/v1/silences", json={"matchers": matchers, "duration_seconds": 7200}
        )
        later = responder.post(
            "/api/v1/silences",
            json={
                "matchers": matchers,
                "starts_at": "2026-11-29T00:00:00Z",
                "duration_seconds": 90,
            },
        )
    assert now.status_code == 201, now.text
    made = now.json()
    assert datetime.fromisoformat(made["starts_at"]) == T0
    assert datetime.fromisoformat(made["ends_at"]) == T0 + timedelta(hours=2)
    assert later.status_code == 201, later.text
    made = later.json()
    start = datetime(2026, 11, 29, tzinfo=UTC)
    assert datetime.fromisoformat(made["starts_at"]) == start
    assert datetime.fromisoformat(made["ends_at"]) == start + timedelta(seconds=90)

    for extra in ({}, {"ends_at": "2027-01-01T00:00:00Z", "duration_seconds": 60}):
        refused = responder.post("/api/v1/silences", json={"matchers": matchers, **extra})
        assert refused.status_code == 422, refused.text
        assert "exactly one of ends_at and duration_seconds" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=~", "value": "("}],
                "ends_at": "2027-01-01T00:00:00Z",
            },
            "matchers.0.value",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [
                    {"label": "a", "op": "=", "value": "("},
                    {"label": "b", "op": "!~", "value": "[z-a]"},
                ],
                "ends_at": "2027-01-01T00:00:00Z",
            },
            "matchers.1.value",
        ),
        ("/api/v1/silences", {"matchers": [], "ends_at": "2027-01-01T00:00:00Z"}, "matchers"),
        (  # routing's pseudo-label: no alert has it, so "!=" would silence every alert
            "/api/v1/silences",
            {
                "matchers": [
                    {"label": "alertname", "op": "=", "value": "x"},
                    {"label": "@integration", "op": "!=", "value": "prom"},
                ],
                "ends_at": "2027-01-01T00:00:00Z",
            },
            "matchers.1.label",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "==", "value": "x"}],
                "ends_at": "2027-01-01T00:00:00Z",
            },
            "matchers.0.op",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "starts_at": "2026-12-02T00:00:00Z",
                "ends_at": "2026-12-01T00:00:00Z",
            },
            "ends_at",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "ends_at": "2026-11-28T11:00:00Z",
            },
            "ends_at",
        ),
        (
            "/api/v1/maintenance-windows",
            {"service_name": "nope", "ends_at": "2027-01-01T00:00:00Z"},
            "service_name",
        ),
        (
            "/api/v1/maintenance-windows",
            {
                "service_name": "db",
                "starts_at": "2026-12-02T00:00:00Z",
                "ends_at": "2026-12-01T00:00:00Z",
            },
            "ends_at",
        ),
        ("/api/v1/alerts/1/silence", {"duration_minutes": 0}, "duration_minutes"),
        (  # both an end and a length: which one was meant?
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "ends_at": "2027-01-01T00:00:00Z",
                "duration_seconds": 60,
            },
            "body",
        ),
        ("/api/v1/silences", {"matchers": [{"label": "a", "op": "=", "value": "x"}]}, "body"),
        (
            "/api/v1/silences",
            {"matchers": [{"label": "a", "op": "=", "value": "x"}], "duration_seconds": 0},
            "duration_seconds",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "duration_seconds": 366 * 24 * 3600 + 1,
            },
            "duration_seconds",
        ),
        (  # over before it is made
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "starts_at": "2026-11-28T10:00:00Z",
                "duration_seconds": 3600,
            },
            "duration_seconds",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "=", "value": "x"}],
                "starts_at": "9999-12-31T23:00:00Z",
                "duration_seconds": 7200,
            },
            "duration_seconds",
        ),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    factory: Factory, runtime: Runtime, url: str, body: dict[str, Any], field: str
) -> None:
    responder = factory.user(Role.responder)
    factory.service("db")
    before = row_counts(runtime)
    with FrozenClock(T0):
        answer = responder.post(url, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert row_counts(runtime) == before


def test_expiring_an_unknown_silence_is_404(factory: Factory) -> None:
    responder = factory.user(Role.responder)
    assert responder.post("/api/v1/silences/424242/expire").status_code == 404


def test_expiring_a_silence_twice_is_a_conflict_that_says_when(
    factory: Factory, runtime: Runtime
) -> None:
    responder = factory.user(Role.responder)
    with FrozenClock(T0) as frozen:
        silence = _silence(responder, ("team", "=", "pay"), minutes=30)
        first = responder.post(f"/api/v1/silences/{silence['id']}/expire")
        assert first.status_code == 200, first.text
        frozen.advance(minutes=5)
        before = row_counts(runtime)
        again = responder.post(f"/api/v1/silences/{silence['id']}/expire")
        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        problem = again.json()
        assert problem["field"] == "id"
        assert problem["detail"] == (
            f"silence {silence['id']} was already expired at 2026-11-28T12:00:00+00:00"
        )
        assert row_counts(runtime) == before
        with runtime.read() as session:
            stored = session.get(Silence, silence["id"])
            assert stored is not None and stored.expired_at == T0

        ended = _silence(responder, ("team", "=", "pay"), minutes=10)
        frozen.advance(minutes=11)
        late = responder.post(f"/api/v1/silences/{ended['id']}/expire")
        assert late.status_code == 409, late.text
        assert "already ended at 2026-11-28T12:15:00+00:00" in late.json()["detail"]


@given(
    value=st.text(alphabet=st.sampled_from('ab "\\\\=~!dn\n'), max_size=12),
    op=st.sampled_from([MatchOp.equal, MatchOp.not_equal]),
)
def test_a_formatted_matcher_reads_back_as_itself(value: str, op: MatchOp) -> None:
    """What the CLI and console show of a silence is what --matcher reads, whatever the
    value holds: quotes, backslashes, operators, newlines."""
    matcher = Matcher(label="a", op=op, value=value)
    shown = format_matcher(matcher)
    assert "\n" not in shown  # one line, as the console's form takes one matcher a line
    assert parse_matcher(shown) == matcher


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('a="x\\"y"', 'x"y'),  # an escaped quote
        ('a="x\\\\"', "x\\"),  # an escaped backslash, then the closing quote
        ('a=~"api-\\d+"', "api-\\d+"),  # a regex's backslash stays as written
        ('a="\\n"', "\n"),  # a line break
        ('a="\\t"', "\\t"),  # any other backslash stays
        ("a=x\\y", "x\\y"),  # unquoted: no escapes at all
    ],
)
def test_matcher_escapes_read_as_alertmanager_reads_them(text: str, value: str) -> None:
    assert parse_matcher(text).value == value


def test_a_firing_alert_routes_when_its_silence_ends_without_another_signal(
    factory: Factory, runtime: Runtime
) -> None:
    """Alertmanager repeats a firing alert every repeat_interval (4 hours by default): the
    worker's minutely job routes a muted alert once nothing mutes it, so a page is not
    hours late."""
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    key = _key(admin, factory.service("payments"))
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        _silence(responder, ("team", "=", "pay"), minutes=30)
        _post(factory, key, "a", team="pay")
        _post(factory, key, "b", team="pay", env="staging")
        second = _silence(responder, ("env", "=", "staging"), minutes=120)
        assert alert_by_fingerprint(runtime, "a").silenced

        frozen.advance(minutes=10)  # the silence still holds: nothing changes
        run_due_jobs(worker)
        assert alert_by_fingerprint(runtime, "a").silenced
        assert incident_count(runtime) == 0

        frozen.advance(minutes=21)  # the silence ended; no signal came since
        run_due_jobs(worker)
        alert = alert_by_fingerprint(runtime, "a")
        assert not alert.silenced and alert.incident_id is not None
        assert alert.count == 1  # no signal was made up
        assert incident_count(runtime) == 1
        still = alert_by_fingerprint(runtime, "b")  # the other silence covers it
        assert still.silenced and still.incident_id is None

        expired = responder.post(f"/api/v1/silences/{second['id']}/expire")
        assert expired.status_code == 200, expired.text
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        freed = alert_by_fingerprint(runtime, "b")
        assert not freed.silenced and freed.incident_id == alert.incident_id  # joined it
        answer = _post(factory, key, "a", team="pay")  # the sender's repeat: nothing more
        assert answer["opened"] == []
        assert incident_count(runtime) == 1


def test_an_alert_in_maintenance_routes_when_the_window_is_deleted(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    key = _key(admin, factory.service("db"))
    with FrozenClock(T0) as frozen:
        worker = scheduled_worker(runtime)
        answer = responder.post(
            "/api/v1/maintenance-windows",
            json={"service_name": "db", "ends_at": _iso(T0 + timedelta(hours=1))},
        )
        assert answer.status_code == 201, answer.text
        _post(factory, key, "down")
        _post(factory, key, "gone")
        _post(factory, key, "gone", "resolved")  # resolved meanwhile: stays as it is
        assert alert_by_fingerprint(runtime, "down").silenced
        window_id = answer.json()["id"]
        assert responder.delete(f"/api/v1/maintenance-windows/{window_id}").status_code == 204
        frozen.advance(minutes=1)
        run_due_jobs(worker)
        down = alert_by_fingerprint(runtime, "down")
        assert not down.silenced and down.incident_id is not None
        gone = alert_by_fingerprint(runtime, "gone")
        assert gone.status == "resolved" and gone.incident_id is None
        assert incident_count(runtime) == 1


def test_the_muted_alerts_are_read_through_their_own_index(
    factory: Factory, runtime: Runtime
) -> None:
    """SQLite: the job's read walks the partial index of muted alerts, not every alert."""
    if runtime.database.dialect != "sqlite":
        pytest.skip("a SQLite plan; PostgreSQL's planner picks by its statistics")
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("payments"))
    _silence(factory.user(Role.responder), ("team", "=", "pay"))
    _post(factory, key, "a", team="pay")
    with sql_run(runtime.database.engine) as ran, runtime.read() as session:
        assert not find_held(session, MuteWatch())  # the silence still covers it
    reads = [(s, p) for s, p in ran if s.startswith("SELECT") and "silenced" in s]
    # the inhibited alerts whose source resolved, those whose rule may not hold any more,
    # then the silenced ones
    assert len(reads) == 3, ran
    with runtime.database.engine.connect() as connection:
        plans = [sqlite_plan(connection, *read) for read in reads]
    for plan in plans:
        assert plan.startswith("SEARCH alerts USING INDEX ix_alerts_muted (status=?)"), plan


def test_silenced_alerts_are_read_again_only_once_a_mute_may_have_lifted(
    factory: Factory, runtime: Runtime
) -> None:
    """A storm under a maintenance window leaves every alert silenced: they are read and
    matched again only after a mute ended or the mutes changed, not every minute."""
    admin = factory.user(Role.admin)
    key = _key(admin, factory.service("payments"))
    responder = factory.user(Role.responder)
    watch = MuteWatch()

    def silenced_read() -> bool:
        with sql_run(runtime.database.engine) as ran, runtime.read() as session:
            find_held(session, watch)
        return any("alerts.labels" in statement for statement, _ in ran)

    with FrozenClock(T0) as frozen:
        _silence(responder, ("team", "=", "pay"), minutes=30)
        _post(factory, key, "a", team="pay")
        assert silenced_read()  # the first look
        frozen.advance(minutes=1)
        assert not silenced_read()  # nothing ended, nothing changed
        _silence(responder, ("team", "=", "other"), minutes=5)
        assert silenced_read()  # the mutes changed
        frozen.advance(minutes=6)
        assert silenced_read()  # the second silence ended since the last look
        assert not silenced_read()
        frozen.advance(minutes=30)
        with runtime.read() as session:
            held = find_held(session, watch)
        assert sum(len(f) for f in held.unmuted.values()) == 1  # the first one ended: free
        assert silenced_read()  # found one: looked at again until it is settled
