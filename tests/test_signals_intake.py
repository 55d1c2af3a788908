"""Alert intake: Alertmanager and PagerDuty Events v2 in, deduplicated alerts and incidents out."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from firetower.auth.schemas import Role
from firetower.clock import FrozenClock
from firetower.incidents.models import Incident, TimelineEvent
from firetower.logs import configure_logging
from firetower.runtime import Runtime
from firetower.signals import service as signals
from firetower.signals.models import Alert, ChangeEvent, RejectedPayload
from firetower.signals.schemas import IntegrationKind
from tests.factories import ApiUser, Factory, row_counts
from tests.test_web_pages import PASSWORD, Console, login
from tests.test_web_signals import row_of


def _integration(admin: ApiUser, name: str, kind: str, service: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "kind": kind}
    if service:
        body["service_name"] = service
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _am_alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": f"High error rate {fingerprint}", **labels},
        "annotations": {"summary": f"Errors above 5% ({fingerprint})"},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T10:05:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def _am_batch(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "firetower",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def _alerts(runtime: Runtime) -> list[Alert]:
    with runtime.read() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def _incidents(runtime: Runtime) -> list[Incident]:
    with runtime.read() as session:
        incidents = list(session.scalars(select(Incident).order_by(Incident.id)))
        for incident in incidents:
            _ = incident.services
        return incidents


def _notes(runtime: Runtime, incident_id: int) -> list[TimelineEvent]:
    with runtime.read() as session:
        return list(
            session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id)
                .where(TimelineEvent.kind == "note")
                .order_by(TimelineEvent.id)
            )
        )


# -- Alertmanager ------------------------------------------------------------------------------
def test_a_firing_alert_opens_an_incident_and_a_repeat_counts(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _integration(admin, "prom", "alertmanager", "checkout")
    url = f"/ingest/alertmanager/{key}"

    first = admin.client.post(url, json=_am_batch(_am_alert("a1", severity="critical")))
    assert first.status_code == 200, first.text
    [incident] = _incidents(runtime)
    assert [s.name for s in incident.services] == ["checkout"]
    assert incident.source == "alert"
    assert incident.severity == "SEV1"
    assert incident.title == "Errors above 5% (a1)"
    assert first.json()["opened"] == [incident.ref]

    assert (
        admin.client.post(url, json=_am_batch(_am_alert("a1", severity="critical"))).status_code
        == 200
    )
    [alert] = _alerts(runtime)
    assert alert.count == 2
    assert alert.status == "firing"
    assert alert.incident_id == incident.id
    assert alert.ends_at is None
    assert alert.last_seen_at >= alert.first_seen_at
    assert len(_incidents(runtime)) == 1

    resolved = _am_batch(_am_alert("a1", "resolved", severity="critical"), status="resolved")
    assert admin.client.post(url, json=resolved).status_code == 200
    [alert] = _alerts(runtime)
    assert alert.status == "resolved"
    assert alert.count == 3
    [incident] = _incidents(runtime)
    assert incident.status == "triage"  # noted, never resolved automatically
    [note] = _notes(runtime, incident.id)
    assert note.text == "The 1 alert attached to this incident has resolved."
    assert note.actor == "integration:prom"


def test_an_alertmanager_alert_keeps_its_generator_url_with_its_annotations(
    factory: Factory, client: TestClient, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "prom", "alertmanager")
    alert = _am_alert("g1")
    alert["annotations"]["runbook_url"] = "https://runbooks.example.com/errors"
    answer = admin.client.post(f"/ingest/alertmanager/{key}", json=_am_batch(alert))
    assert answer.status_code == 200, answer.text

    [listed] = factory.user(Role.viewer).get("/api/v1/alerts").json()
    assert listed["annotations"] == {
        "summary": "Errors above 5% (g1)",
        "runbook_url": "https://runbooks.example.com/errors",
        "generatorURL": "http://prometheus:9090/graph",
    }
    # the console links to the Prometheus graph of the rule
    factory.user(Role.viewer, email="viewer-web@example.com", password=PASSWORD)
    assert login(client, "viewer-web@example.com").status_code == 303
    [alert_row] = _alerts(runtime)
    row = row_of(Console(client).get("/alerts").text, alert_row.id)
    assert re.search(
        r'<a href="http://prometheus:9090/graph" class="annotation-link"[^>]*>generatorURL</a>',
        row,
    ), row


def test_severity_label_maps_and_defaults_to_sev3(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    for name in ("a", "b", "c"):
        factory.service(name)
    key = _integration(admin, "prom", "alertmanager")
    batch = _am_batch(
        _am_alert("x1", service="a", severity="warning"),
        _am_alert("x2", service="b", severity="info"),
        _am_alert("x3", service="c"),
    )
    assert admin.client.post(f"/ingest/alertmanager/{key}", json=batch).status_code == 200
    found = {i.services[0].name: i.severity for i in _incidents(runtime)}
    assert found == {"a": "SEV3", "b": "SEV4", "c": "SEV3"}


def test_an_alert_attaches_to_the_active_incident_of_its_service(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    ref = factory.incident(title="Database slow", services=["db"])
    key = _integration(admin, "prom", "alertmanager", "db")
    url = f"/ingest/alertmanager/{key}"
    assert (
        admin.client.post(url, json=_am_batch(_am_alert("d1"), _am_alert("d2"))).status_code == 200
    )
    [incident] = _incidents(runtime)
    assert incident.ref == ref
    assert {a.incident_id for a in _alerts(runtime)} == {incident.id}
    [note] = _notes(runtime, incident.id)
    assert note.text.startswith("2 alerts from prom attached: ")

    # Only when every attached alert has resolved is that noted.
    admin.client.post(url, json=_am_batch(_am_alert("d1", "resolved"), status="resolved"))
    assert len(_notes(runtime, incident.id)) == 1
    admin.client.post(url, json=_am_batch(_am_alert("d2", "resolved"), status="resolved"))
    notes = _notes(runtime, incident.id)
    assert notes[-1].text == "All 2 alerts attached to this incident have resolved."


def test_an_alert_storm_opens_one_incident_per_service(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    factory.service("web")
    key = _integration(admin, "prom", "alertmanager")
    url = f"/ingest/alertmanager/{key}"
    alerts = [_am_alert(f"s{n}", service="api" if n % 2 else "web") for n in range(200)]
    for start in range(0, 200, 50):
        answer = admin.client.post(url, json=_am_batch(*alerts[start : start + 50]))
        assert answer.status_code == 200, answer.text
    incidents = _incidents(runtime)
    assert sorted(i.services[0].name for i in incidents) == ["api", "web"]
    stored = _alerts(runtime)
    assert len(stored) == 200
    by_incident = {i.id: i.services[0].name for i in incidents}
    for alert in stored:
        assert by_incident[alert.incident_id or 0] == alert.labels["service"]


def test_an_alert_without_a_known_service_is_kept_without_an_incident(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "prom", "alertmanager")
    batch = _am_batch(_am_alert("n1", service="not-in-catalog"))
    assert admin.client.post(f"/ingest/alertmanager/{key}", json=batch).status_code == 200
    [alert] = _alerts(runtime)
    assert alert.incident_id is None
    assert _incidents(runtime) == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b'{"version": "4", "status": "firing"}', 422, "alerts"),
        (b'{"version": "4", "status": "burning", "alerts": []}', 422, "status"),
        (
            b'{"status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}}]}',
            422,
            "alerts.0.labels.a",
        ),
        (
            b'{"status": "firing", "alerts": [{"status": "firing", "labels": {}, '
            b'"startsAt": "2026-01-01T00:00:00"}]}',
            422,
            "alerts.0.startsAt",
        ),
        (
            b'{"status": "firing", "alerts": [{"status": "firing", "labels": {"a": "\\u0000"}}]}',
            400,
            "body",
        ),
        (  # half a surrogate pair: neither database can store it
            b'{"status": "firing", "alerts": [{"status": "firing", "labels": {"a": "\\ud800"}}]}',
            400,
            "body",
        ),
    ],
)
def test_a_malformed_batch_is_refused_and_only_dead_lettered(
    factory: Factory, runtime: Runtime, body: bytes, status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    factory.service("svc")
    key = _integration(admin, "prom", "alertmanager", "svc")
    before = row_counts(runtime)
    answer = admin.client.post(
        f"/ingest/alertmanager/{key}", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 1
    assert after == before
    with runtime.read() as session:
        [row] = session.scalars(select(RejectedPayload))
        assert row.body == body
        assert row.reason
    listed = admin.get("/api/v1/rejected-payloads").json()
    assert listed[0]["body"] == body.decode()


def test_an_unknown_or_wrong_kind_key_is_401_and_stores_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    pd_key = _integration(admin, "pd", "pagerduty")
    before = row_counts(runtime)
    for key in ("0" * 32, "short", pd_key):
        answer = admin.client.post(f"/ingest/alertmanager/{key}", json=_am_batch(_am_alert("u")))
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    # A key sent to the wrong endpoint says where it belongs (in plain English).
    assert answer.json()["detail"] == (
        "this key belongs to a pagerduty integration, not an alertmanager one: "
        "send its events to /v2/enqueue"
    )
    am_key = _integration(admin, "am", "alertmanager")
    before = row_counts(runtime)
    answer = admin.client.post(f"/ingest/grafana/{am_key}", json=_am_batch(_am_alert("u")))
    assert answer.status_code == 401, answer.text
    assert answer.json()["detail"] == (
        "this key belongs to an alertmanager integration, not a grafana one: "
        "send its alerts to /ingest/alertmanager/<key>"
    )
    assert row_counts(runtime) == before


@pytest.mark.parametrize("kind", [kind.value for kind in IntegrationKind])
def test_a_key_of_each_kind_sent_to_another_kinds_endpoint_says_where_it_goes(
    factory: Factory, kind: str
) -> None:
    """Every kind's refusal names the endpoint its keys go to, and a key sent there is read
    (a kind added later without its own words still gets a refusal, not a 500: this test
    fails for it until it has them)."""
    admin = factory.user(Role.admin)
    body: dict[str, Any] = {"name": "src", "kind": kind}
    if kind == "generic":
        body["mapping"] = {"title": "title"}
    created = admin.post("/api/v1/integrations", json=body)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    other = "alertmanager" if kind == "generic" else "generic"
    answer = admin.client.post(f"/ingest/{other}/{key}", json={})
    assert answer.status_code == 401, answer.text
    detail = answer.json()["detail"]
    said = re.fullmatch(
        rf"this key belongs to an? {kind} integration, not an? {other} one: send its \w+ to "
        r"(/\S+)",
        detail,
    )
    assert said is not None, detail
    path = said.group(1)
    if "<key>" in path:
        there = admin.client.post(path.replace("<key>", key), json={})
    else:
        there = admin.client.post(path, json={"routing_key": key})
    assert there.status_code not in (401, 404, 405), there.text


def test_an_oversized_body_is_refused_before_parsing(factory: Factory, runtime: Runtime) -> None:
    """In each endpoint's own error shape: problem details, or PagerDuty's on /v2/."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "prom", "alertmanager")
    pd_key = _integration(admin, "pd", "pagerduty")
    limit = runtime.settings.max_request_body_bytes
    before = row_counts(runtime)
    body = b'{"routing_key": "KEY", "pad": "'.replace(b"KEY", pd_key.encode())
    body += b"x" * limit + b'"}'
    for url in (f"/ingest/alertmanager/{key}", "/v2/enqueue", "/v2/change/enqueue"):
        answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})

        def chunks() -> Any:
            yield body[: len(body) // 2]
            yield body[len(body) // 2 :]

        streamed = admin.client.post(url, content=chunks())  # no Content-Length: chunked
        detail = f"the body is {len(body)} bytes or more; at most {limit} are accepted"
        for refused in (answer, streamed):
            assert refused.status_code == 413, (url, refused.text)
            if url.startswith("/v2/"):
                assert refused.headers["content-type"] == "application/json"
                assert refused.json() == {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": [detail],
                }, url
            else:
                assert refused.headers["content-type"] == "application/problem+json"
                assert (refused.json()["field"], refused.json()["detail"]) == ("body", detail)
    assert row_counts(runtime) == before


@pytest.mark.parametrize("coding", ["gzip", "gzip, gzip", "identity, gzip", "br", "x-zip"])
def test_a_body_in_a_content_coding_is_refused_naming_the_coding(
    factory: Factory, runtime: Runtime, coding: str
) -> None:
    """Intake reads bodies as sent: a compressed one was read as JSON anyway, refused as
    "not valid JSON: can't decode byte 0x8b" and kept as a dead letter, and one only labelled
    compressed was taken as plain. Any coding but identity is refused (415, RFC 9110) in
    each endpoint's own error shape, naming the coding, and nothing is stored."""
    admin = factory.user(Role.admin)
    keys = {kind: _integration(admin, kind, kind) for kind in ("alertmanager", "grafana")}
    keys["pagerduty"] = _integration(admin, "pd", "pagerduty")
    made = admin.post(
        "/api/v1/integrations",
        json={"name": "hook", "kind": "generic", "mapping": {"title": "title"}},
    )
    keys["generic"] = made.json()["key"]
    body = {"routing_key": keys["pagerduty"], **_am_batch(_am_alert("z"))}
    compressed = gzip.compress(json.dumps(body).encode())
    refused = next(c.strip() for c in coding.split(",") if c.strip() != "identity")
    detail = f"the body's Content-Encoding {refused!r} is not accepted; send it uncompressed"
    before = row_counts(runtime)
    for url in (
        f"/ingest/alertmanager/{keys['alertmanager']}",
        f"/ingest/grafana/{keys['grafana']}",
        f"/ingest/generic/{keys['generic']}",
        "/v2/enqueue",
        "/v2/change/enqueue",
    ):
        headers = {"content-type": "application/json", "content-encoding": coding}
        answer = admin.client.post(url, content=compressed, headers=headers)
        assert answer.status_code == 415, (url, answer.text)
        assert answer.headers["accept-encoding"] == "identity"
        if url.startswith("/v2/"):
            assert answer.json()["errors"] == [detail], url
        else:
            assert answer.headers["content-type"] == "application/problem+json"
            assert (answer.json()["field"], answer.json()["detail"]) == ("content-encoding", detail)
    assert row_counts(runtime) == before


def test_a_body_labelled_identity_is_read_as_sent(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "prom", "alertmanager")
    for coding in ("identity", "Identity, identity", ""):
        answer = admin.client.post(
            f"/ingest/alertmanager/{key}",
            content=json.dumps(_am_batch(_am_alert("i"))).encode(),
            headers={"content-type": "application/json", "content-encoding": coding},
        )
        assert answer.status_code == 200, (coding, answer.text)


def test_dead_letters_keep_only_the_newest(factory: Factory, runtime: Runtime) -> None:
    with runtime.transaction() as session:
        for n in range(7):
            signals.reject(session, None, f"reason {n}", b"x" * (70 * 1024), keep=5)
    with runtime.read() as session:
        rows = list(session.scalars(select(RejectedPayload).order_by(RejectedPayload.id)))
    assert [r.reason for r in rows] == [f"reason {n}" for n in range(2, 7)]
    assert all(len(r.body) == signals.DEAD_LETTER_BODY_BYTES for r in rows)


# -- PagerDuty Events API v2 -------------------------------------------------------------------
def _pd(
    key: str, action: str = "trigger", dedup_key: str | None = None, **payload: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": key, "event_action": action}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    if action == "trigger":
        event["payload"] = {
            "summary": "Disk full on db-1",
            "source": "db-1",
            "severity": "error",
            **payload,
        }
    return event


def test_pagerduty_trigger_acknowledge_resolve(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "pd", "pagerduty", "db")
    client = admin.client

    answer = client.post("/v2/enqueue", json=_pd(key, dedup_key="disk-db-1"))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "disk-db-1",
    }
    [incident] = _incidents(runtime)
    assert incident.severity == "SEV2"
    assert incident.title == "Disk full on db-1"

    assert client.post("/v2/enqueue", json=_pd(key, dedup_key="disk-db-1")).status_code == 202
    ack = client.post("/v2/enqueue", json=_pd(key, "acknowledge", "disk-db-1"))
    assert ack.status_code == 202
    assert ack.json()["dedup_key"] == "disk-db-1"
    [alert] = _alerts(runtime)
    assert (alert.status, alert.count, alert.fingerprint) == ("acknowledged", 3, "disk-db-1")

    assert client.post("/v2/enqueue", json=_pd(key, "resolve", "disk-db-1")).status_code == 202
    [alert] = _alerts(runtime)
    assert alert.status == "resolved"
    assert alert.ends_at is not None
    assert _notes(runtime, incident.id)[-1].text.startswith("The 1 alert attached")
    assert len(_incidents(runtime)) == 1


def test_an_acknowledge_of_a_resolved_alert_is_ignored(factory: Factory, runtime: Runtime) -> None:
    """PagerDuty discards it: the alert stays resolved and uncounted, and the acknowledge is
    no change towards flapping (trigger, resolve, acknowledge, resolve is one change)."""
    admin = factory.user(Role.admin)
    factory.service("db")
    body = {"name": "pd", "kind": "pagerduty", "service_name": "db", "flap_threshold": 3}
    key = admin.post("/api/v1/integrations", json=body).json()["key"]
    for action in ("trigger", "resolve"):
        assert admin.client.post("/v2/enqueue", json=_pd(key, action, "d1")).status_code == 202
    [before] = _alerts(runtime)
    ack = admin.client.post("/v2/enqueue", json=_pd(key, "acknowledge", "d1"))
    assert ack.status_code == 202 and ack.json()["dedup_key"] == "d1"
    [after] = _alerts(runtime)
    seen = ("status", "count", "last_seen_at", "ends_at", "state_changes", "flapping")
    assert [getattr(after, name) for name in seen] == [getattr(before, name) for name in seen]
    assert after.status == "resolved" and after.count == 2
    assert admin.client.post("/v2/enqueue", json=_pd(key, "resolve", "d1")).status_code == 202
    [alert] = _alerts(runtime)
    assert not alert.flapping and len(alert.state_changes) == 1


def test_a_repeated_trigger_keeps_an_alert_acknowledged(factory: Factory, runtime: Runtime) -> None:
    """PagerDuty folds a trigger into the acknowledged alert it repeats; a resolve still
    resolves it."""
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "pd", "pagerduty", "db")
    for action in ("trigger", "acknowledge", "trigger"):
        assert admin.client.post("/v2/enqueue", json=_pd(key, action, "d1")).status_code == 202
    [alert] = _alerts(runtime)
    assert (alert.status, alert.count) == ("acknowledged", 3)
    assert len(_incidents(runtime)) == 1
    assert admin.client.post("/v2/enqueue", json=_pd(key, "resolve", "d1")).status_code == 202
    [alert] = _alerts(runtime)
    assert alert.status == "resolved"


T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_a_repeated_resolve_keeps_when_the_alert_resolved(
    factory: Factory, runtime: Runtime
) -> None:
    """PagerDuty clients retry a resolve that timed out: the repeat is counted, but the alert
    resolved at the first one. A resolve after the alert fired again is a new resolution."""
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "pd", "pagerduty", "db")

    def send(action: str) -> Alert:
        answer = admin.client.post("/v2/enqueue", json=_pd(key, action, "d1"))
        assert answer.status_code == 202, answer.text
        [alert] = _alerts(runtime)
        return alert

    with FrozenClock(T0) as frozen:
        send("trigger")
        first = frozen.advance(minutes=1)
        assert send("resolve").ends_at == first
        later = frozen.advance(minutes=5)
        repeated = send("resolve")
        assert (repeated.status, repeated.ends_at) == ("resolved", first)
        assert (repeated.count, repeated.last_seen_at) == (3, later)  # the repeat is counted
        assert send("acknowledge").ends_at == first  # ignored: it stays resolved
        frozen.advance(minutes=1)
        assert send("trigger").ends_at is None  # firing again
        second = frozen.advance(minutes=1)
        assert send("resolve").ends_at == second
        frozen.advance(minutes=1)
        assert send("resolve").ends_at == second


def test_the_alert_list_shows_when_an_alert_started_and_resolved(factory: Factory) -> None:
    """The docs say a repeated resolve keeps the alert's ``ends_at``: the API shows it, and
    ``starts_at`` (Alertmanager's ``startsAt``), so a responder can see both."""
    admin = factory.user(Role.admin)
    factory.service("api")
    key = _integration(admin, "prom", "alertmanager", "api")

    def listed() -> dict[str, Any]:
        [alert] = admin.get("/api/v1/alerts").json()
        return {name: alert[name] for name in ("status", "starts_at", "ends_at")}

    fired = admin.client.post(f"/ingest/alertmanager/{key}", json=_am_batch(_am_alert("a1")))
    assert fired.status_code == 200, fired.text
    assert listed() == {"status": "firing", "starts_at": "2026-11-28T10:00:00Z", "ends_at": None}
    resolved = _am_batch(_am_alert("a1", "resolved"), status="resolved")
    assert admin.client.post(f"/ingest/alertmanager/{key}", json=resolved).status_code == 200
    assert listed() == {
        "status": "resolved",
        "starts_at": "2026-11-28T10:00:00Z",
        "ends_at": "2026-11-28T10:05:00Z",
    }


def test_a_repeated_generic_resolve_keeps_when_the_alert_resolved(
    factory: Factory, runtime: Runtime
) -> None:
    """A generic sender that repeats its "OK" (a checker posting each run) does not move
    when the alert resolved either."""
    admin = factory.user(Role.admin)
    mapping = {"title": "name", "dedup_key": "id", "status": "state"}
    body = {"name": "bot", "kind": "generic", "mapping": mapping}
    key = admin.post("/api/v1/integrations", json=body).json()["key"]

    def send(state: str) -> Alert:
        document = {"name": "Checkout check failing", "id": "chk-7", "state": state}
        answer = admin.client.post(f"/ingest/generic/{key}", json=document)
        assert answer.status_code == 200, answer.text
        [alert] = _alerts(runtime)
        return alert

    with FrozenClock(T0) as frozen:
        send("down")
        first = frozen.advance(minutes=1)
        assert send("OK").ends_at == first
        frozen.advance(minutes=5)
        assert send("OK").ends_at == first
        frozen.advance(minutes=1)
        assert send("down").ends_at is None
        second = frozen.advance(minutes=1)
        assert send("ok").ends_at == second
        frozen.advance(minutes=1)
        assert send("ok").ends_at == second


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_acknowledge_or_resolve_ignores_what_only_a_trigger_uses(
    factory: Factory, runtime: Runtime, action: str
) -> None:
    """PagerDuty reads a payload, links, images and client only from a trigger: a client
    that sends a partial payload (or odd links) with a resolve still resolves."""
    admin = factory.user(Role.admin)
    factory.service("db")
    key = _integration(admin, "pd", "pagerduty", "db")
    assert admin.client.post("/v2/enqueue", json=_pd(key, "trigger", "d1")).status_code == 202
    event = {
        **_pd(key, action, "d1"),
        "payload": {"summary": "db-1 is back"},
        "links": "not a list",
        "client": 42,
    }
    answer = admin.client.post("/v2/enqueue", json=event)
    assert answer.status_code == 202, answer.text
    [alert] = _alerts(runtime)
    assert alert.status == ("acknowledged" if action == "acknowledge" else "resolved")
    assert alert.title != "db-1 is back"


def test_pagerduty_generates_the_dedup_key_when_absent(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    first = admin.client.post("/v2/enqueue", json=_pd(key, severity="critical"))
    second = admin.client.post("/v2/enqueue", json=_pd(key, severity="critical"))
    assert first.status_code == second.status_code == 202
    keys = {first.json()["dedup_key"], second.json()["dedup_key"]}
    assert len(keys) == 2
    assert {a.fingerprint for a in _alerts(runtime)} == keys
    resolve = admin.client.post("/v2/enqueue", json=_pd(key, "resolve", first.json()["dedup_key"]))
    assert resolve.status_code == 202
    statuses = {a.fingerprint: a.status for a in _alerts(runtime)}
    assert statuses == {first.json()["dedup_key"]: "resolved", second.json()["dedup_key"]: "firing"}
    # Resolving what was never seen is accepted and ignored, as PagerDuty does.
    assert admin.client.post("/v2/enqueue", json=_pd(key, "resolve", "never")).status_code == 202
    assert len(_alerts(runtime)) == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"event_action": "explode"}, "event_action"),
        ({"payload": {"summary": "x", "source": "y", "severity": "fatal"}}, "payload.severity"),
        ({"payload": {"source": "y", "severity": "info"}}, "payload.summary"),
        ({"payload": None}, "'payload'"),
        ({"event_action": "resolve", "payload": None}, "'dedup_key'"),
        (
            {
                "payload": {
                    "summary": "x",
                    "source": "y",
                    "severity": "info",
                    "timestamp": "yesterday",
                }
            },
            "payload.timestamp",
        ),
    ],
)
def test_an_invalid_pagerduty_event_gets_its_error_shape_and_a_dead_letter(
    factory: Factory, runtime: Runtime, change: dict[str, Any], error: str
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    event = {**_pd(key), **change}
    before = row_counts(runtime)
    answer = admin.client.post("/v2/enqueue", json=event)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any(e.startswith(error) for e in body["errors"]), body
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 1
    assert after == before


@pytest.mark.parametrize("url", ["/v2/enqueue", "/v2/change/enqueue"])
def test_pagerduty_refuses_bad_json_and_bad_routing_keys(
    factory: Factory, runtime: Runtime, url: str
) -> None:
    admin = factory.user(Role.admin)
    am_key = _integration(admin, "am", "alertmanager")
    revoked = _integration(admin, "old", "pagerduty")
    assert admin.delete("/api/v1/integrations/old").status_code == 204
    before = row_counts(runtime)
    cases = [
        (b"{nope", 400),
        (b"[]", 400),
        (b'{"routing_key": "abc", "event_action": "trigger"}', 400),
        (f'{{"routing_key": "{"f" * 32}", "event_action": "trigger"}}'.encode(), 401),
        (f'{{"routing_key": "{am_key}", "event_action": "trigger"}}'.encode(), 401),
        (f'{{"routing_key": "{revoked}", "event_action": "trigger"}}'.encode(), 401),
    ]
    for body, status in cases:
        answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["status"] == "invalid event"
        assert answer.json()["errors"]
    assert row_counts(runtime) == before


def test_change_events_are_stored_and_never_open_incidents(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _integration(admin, "deploys", "pagerduty", "checkout")
    event = {
        "routing_key": key,
        "payload": {
            "summary": "Deployed checkout v42",
            "source": "ci",
            "timestamp": "2026-11-28T09:00:00+01:00",
            "custom_details": {"build": 42},
        },
        "links": [{"href": "https://ci.example.com/42", "text": "build"}],
    }
    answer = admin.client.post("/v2/change/enqueue", json=event)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "success"
    with runtime.read() as session:
        [change] = session.scalars(select(ChangeEvent))
        assert change.summary == "Deployed checkout v42"
        assert change.timestamp.isoformat() == "2026-11-28T08:00:00+00:00"
        assert change.custom_details == {"build": 42}
        assert change.links[0]["href"] == "https://ci.example.com/42"
        assert session.scalar(select(func.count()).select_from(Alert)) == 0
    assert _incidents(runtime) == []
    bad = admin.client.post("/v2/change/enqueue", json={"routing_key": key, "payload": {}})
    assert bad.status_code == 400
    assert bad.json()["errors"][0].startswith("payload.summary")


def test_a_refused_text_says_where_it_is(factory: Factory, runtime: Runtime) -> None:
    """NUL and half surrogate pairs are refused for the whole body; the reason names the
    place, as schema errors do, so the sender can find it in a 100-alert batch."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "prom", "alertmanager")
    body = (
        b'{"status": "firing", "alerts": [{"status": "firing", "labels": {"a": "x"}}, '
        b'{"status": "firing", "labels": {"team": "db\\ud800"}}]}'
    )
    answer = admin.client.post(
        f"/ingest/alertmanager/{key}", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("alerts.1.labels.team: text must be valid Unicode")
    with runtime.read() as session:
        [row] = session.scalars(select(RejectedPayload))
    assert row.reason.startswith("alerts.1.labels.team:")


@pytest.mark.parametrize(
    ("url", "event"),
    [
        ("/v2/enqueue", {"event_action": "trigger", "payload": {"summary": "x"}}),
        ("/v2/enqueue", {"event_action": "resolve"}),
        ("/v2/change/enqueue", {"payload": {}}),
    ],
)
def test_pagerduty_dead_letters_keep_no_routing_key_and_name_their_integration(
    factory: Factory, runtime: Runtime, url: str, event: dict[str, Any]
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    # Compact JSON with the key twice: every copy goes, whatever the body's spacing.
    body = json.dumps({"routing_key": key, **event, "client": key}).encode()
    answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    with runtime.read() as session:
        [row] = session.scalars(select(RejectedPayload))
    assert key.encode() not in row.body
    assert json.loads(row.body)["routing_key"] == "[routing key]"
    assert row.body == body.replace(key.encode(), b"[routing key]")
    with runtime.transaction() as session:
        signals.reject(session, None, "no integration", b"{}")
    listed = admin.get("/api/v1/rejected-payloads").json()
    assert [(d["integration"], d["integration_id"]) for d in listed] == [
        (None, None),
        ("pd", row.integration_id),
    ]
    assert key not in listed[1]["body"]


def _escaped(text: str, escape: Callable[[int], bool]) -> str:
    """``text`` as a JSON string's inside, its characters at the places ``escape`` picks
    spelled as ``\\u`` escapes."""
    return "".join(f"\\u{ord(c):04x}" if escape(n) else c for n, c in enumerate(text))


@pytest.mark.parametrize(
    ("url", "event"),
    [
        ("/v2/enqueue", '"event_action": "trigger", "payload": {"summary": "x"}'),
        ("/v2/enqueue", '"event_action": "resolve", "note": "a\\/b \\u00e9"'),
        ("/v2/change/enqueue", '"payload": {}'),
    ],
)
def test_a_routing_key_spelled_with_json_escapes_is_redacted_in_dead_letters(
    factory: Factory, runtime: Runtime, url: str, event: str
) -> None:
    """A client may escape any character of a JSON string (``\\u0061`` for ``a``): the key
    is redacted whichever way it is spelled, and the rest of the body is kept as sent."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    spellings = [
        _escaped(key, lambda n: True),
        _escaped(key, lambda n: n % 3 == 1),
        _escaped(key, lambda n: n == len(key) - 1),
    ]
    body = (
        f'{{"routing_key": "{spellings[0]}", {event}, '
        f'"client": "{spellings[1]}", "client_url": "https://x/{spellings[2]}"}}'
    ).encode()
    assert key.encode() not in body and json.loads(body)["routing_key"] == key
    answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    with runtime.read() as session:
        [row] = session.scalars(select(RejectedPayload))
    kept = json.loads(row.body)
    assert (kept["routing_key"], kept["client"]) == ("[routing key]", "[routing key]")
    assert kept["client_url"] == "https://x/[routing key]"
    expected = body
    for spelling in spellings:
        expected = expected.replace(spelling.encode(), b"[routing key]")
    assert row.body == expected  # the rest as sent, escapes and all
    [listed] = admin.get("/api/v1/rejected-payloads").json()
    assert key not in json.dumps(json.loads(listed["body"]))


def _without_key(url: str) -> dict[str, Any]:
    """An event of ``url`` with no ``routing_key``: a header carries it."""
    if url == "/v2/change/enqueue":
        return {"payload": {"summary": "Deployed checkout v42", "source": "ci"}}
    event = _pd("unused", dedup_key="h1")
    del event["routing_key"]
    return event


@pytest.mark.parametrize("url", ["/v2/enqueue", "/v2/change/enqueue"])
def test_the_routing_key_may_come_in_the_x_routing_key_header(
    factory: Factory, runtime: Runtime, url: str
) -> None:
    """Older pdpyras and several JS clients send the key as ``X-Routing-Key`` and leave it
    out of the body, as PagerDuty accepts. A header that disagrees with the body is refused
    (nothing says which one the sender meant); an unknown key is refused as in the body."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    other = _integration(admin, "pd2", "pagerduty")
    event = _without_key(url)

    accepted = admin.client.post(url, json=event, headers={"X-Routing-Key": key})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "success"
    same = admin.client.post(
        url, json={**event, "routing_key": key}, headers={"x-routing-key": key}
    )
    assert same.status_code == 202, same.text
    with runtime.read() as session:
        if url == "/v2/enqueue":
            [alert] = session.scalars(select(Alert))
            assert (alert.fingerprint, alert.count) == ("h1", 2)
        else:
            assert len(list(session.scalars(select(ChangeEvent)))) == 2

    before = row_counts(runtime)
    refusals = [
        ({**event, "routing_key": key}, other, 400, "'routing_key' in the body and the "),
        ({**event, "routing_key": other}, key, 400, "'routing_key' in the body and the "),
        (event, "f" * 32, 401, "Invalid routing key"),
        (event, "abc", 400, "Length of 'routing_key' is incorrect"),
    ]
    for body, header, status, error in refusals:
        answer = admin.client.post(url, json=body, headers={"X-Routing-Key": header})
        assert answer.status_code == status, (header, answer.text)
        assert answer.json()["status"] == "invalid event"
        assert answer.json()["errors"][0].startswith(error), answer.json()
    assert row_counts(runtime) == before


@pytest.mark.parametrize("url", ["/v2/enqueue", "/v2/change/enqueue"])
def test_a_key_from_the_header_is_kept_in_no_dead_letter_and_no_log(
    factory: Factory, runtime: Runtime, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    refused = {"event_action": "trigger"} if url == "/v2/enqueue" else {"payload": {}}
    configure_logging(log_format="json", level="debug")
    try:
        capsys.readouterr()
        answer = admin.client.post(
            url,
            content=json.dumps(refused),
            headers={"content-type": "application/json", "X-Routing-Key": key},
        )
        logged = capsys.readouterr()
    finally:
        configure_logging(log_format="console", level="warning")
    assert answer.status_code == 400, answer.text
    assert logged.err and key not in logged.err + logged.out
    with runtime.read() as session:
        [row] = session.scalars(select(RejectedPayload))
    assert key.encode() not in row.body
    listed = admin.get("/api/v1/rejected-payloads").json()
    assert [(d["integration"], d["body"]) for d in listed] == [("pd", json.dumps(refused))]


@pytest.mark.parametrize("written", ["2026-11-30T10:00:00", "2026-11-30T10:00:00.123"])
def test_a_payload_timestamp_without_a_zone_is_read_as_utc(
    factory: Factory, runtime: Runtime, written: str
) -> None:
    """PagerDuty takes any ISO 8601 time; one without an offset is UTC. Garbage is still
    refused by name."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    trigger = _pd(key, dedup_key="t1", timestamp=written)
    answer = admin.client.post("/v2/enqueue", json=trigger)
    assert answer.status_code == 202, answer.text
    change = {"routing_key": key, "payload": {"summary": "Deployed", "timestamp": written}}
    answer = admin.client.post("/v2/change/enqueue", json=change)
    assert answer.status_code == 202, answer.text
    expected = datetime.fromisoformat(written).replace(tzinfo=UTC)
    with runtime.read() as session:
        [alert] = session.scalars(select(Alert))
        [stored] = session.scalars(select(ChangeEvent))
        assert alert.starts_at == expected and stored.timestamp == expected
    before = row_counts(runtime)
    for url, event in (
        ("/v2/enqueue", _pd(key, dedup_key="t2", timestamp="2026-11-30T25:00:00")),
        (
            "/v2/change/enqueue",
            {"routing_key": key, "payload": {"summary": "x", "timestamp": "soon"}},
        ),
    ):
        answer = admin.client.post(url, json=event)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"][0].startswith("payload.timestamp: "), answer.json()
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 2
    assert after == before


# A time UTC cannot hold: year 0 or 10000 once its offset is applied.
BEFORE_YEAR_1 = "0001-01-01T00:00:00+01:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-01:00"


@pytest.mark.parametrize("when", [BEFORE_YEAR_1, AFTER_YEAR_9999])
def test_a_time_utc_cannot_hold_is_refused_by_name_at_intake(
    factory: Factory, runtime: Runtime, when: str
) -> None:
    admin = factory.user(Role.admin)
    pd_key = _integration(admin, "pd", "pagerduty")
    am_key = _integration(admin, "prom", "alertmanager")
    before = row_counts(runtime)
    trigger = _pd(pd_key, dedup_key="t1", timestamp=when)
    change = {"routing_key": pd_key, "payload": {"summary": "Deployed", "timestamp": when}}
    for url, event, field in (
        ("/v2/enqueue", trigger, "payload.timestamp"),
        ("/v2/change/enqueue", change, "payload.timestamp"),
    ):
        answer = admin.client.post(url, json=event)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"] == [
            f"{field}: must fall within the years 1 to 9999 once in UTC"
        ]
    alert = {"status": "firing", "labels": {"alertname": "x"}, "startsAt": when}
    answer = admin.client.post(
        f"/ingest/alertmanager/{am_key}", json={"status": "firing", "alerts": [alert]}
    )
    if when == BEFORE_YEAR_1:  # Alertmanager's "no time" (year 1): read as none
        assert answer.status_code == 200, answer.text
        with runtime.read() as session:
            [stored] = session.scalars(select(Alert))
            assert stored.starts_at is None
        return
    assert answer.status_code == 422, answer.text  # as every other shape error of the batch
    assert answer.json()["detail"] == (
        "alerts.0.startsAt: must fall within the years 1 to 9999 once in UTC"
    )
    after = row_counts(runtime)
    assert after["alerts"] == before["alerts"] and after["change_events"] == 0


@pytest.mark.parametrize("when", [BEFORE_YEAR_1, AFTER_YEAR_9999])
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", "/api/v1/change-events", "since"),
        ("get", "/api/v1/change-events", "until"),
        ("post", "/api/v1/incidents", "impact_started_at"),
        ("post", "/api/v1/silences", "ends_at"),
    ],
)
def test_a_time_utc_cannot_hold_is_refused_by_name_in_the_api(
    factory: Factory, runtime: Runtime, method: str, path: str, field: str, when: str
) -> None:
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    if method == "get":
        answer = admin.get(path, params={field: when})
    elif field == "ends_at":
        body = {"matchers": [{"label": "a", "op": "=", "value": "b"}], "ends_at": when}
        answer = admin.post(path, json={**body, "comment": "c"})
    else:
        answer = admin.post(path, json={"title": "Slow", field: when})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["errors"] == [
        {"field": field, "message": "must fall within the years 1 to 9999 once in UTC"}
    ]
    assert row_counts(runtime) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_as_not_json_on_both_databases(
    factory: Factory, runtime: Runtime, constant: str
) -> None:
    """Python's JSON reader takes them, SQLite stored them, PostgreSQL's JSON refused them
    with another answer: now every intake refuses them alike, as PagerDuty's 400."""
    admin = factory.user(Role.admin)
    pd_key = _integration(admin, "pd", "pagerduty")
    made = admin.post(
        "/api/v1/integrations",
        json={"name": "hook", "kind": "generic", "mapping": {"title": "title"}},
    )
    assert made.status_code == 201, made.text
    generic_key = made.json()["key"]
    before = row_counts(runtime)

    def with_constant(document: dict[str, Any]) -> str:  # json.dumps writes no NaN here
        return json.dumps(document).replace('"CONSTANT"', constant)

    trigger = _pd(pd_key, dedup_key="c1", custom_details={"v": "CONSTANT"})
    change = {
        "routing_key": pd_key,
        "payload": {"summary": "x", "custom_details": {"v": "CONSTANT"}},
    }
    bodies = {"/v2/enqueue": with_constant(trigger), "/v2/change/enqueue": with_constant(change)}
    for url, body in bodies.items():
        answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"] == [
            f"the body is not valid JSON: {constant} is not a JSON number"
        ]
    answer = admin.client.post(
        f"/ingest/generic/{generic_key}",
        content=with_constant({"title": "x", "value": "CONSTANT"}),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == f"the body is not valid JSON: {constant} is not a JSON number"
    after = row_counts(runtime)
    # The generic one is a dead letter; PagerDuty's bad JSON is not, as before (its
    # routing key is read from the body it cannot read).
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 1
    assert after == before


def test_the_word_nan_in_a_text_is_only_text(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    summary = "Error ratio is NaN (Infinity requests)"
    answer = admin.client.post("/v2/enqueue", json=_pd(key, dedup_key="n1", summary=summary))
    assert answer.status_code == 202, answer.text
    with runtime.read() as session:
        [alert] = session.scalars(select(Alert))
        assert alert.title == summary


def _nested(levels: int) -> Any:
    """Arrays nested ``levels`` deep: ``[[[]]]`` for 3."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


TOO_DEEP = "the body nests arrays and objects more than 200 deep"


@pytest.mark.parametrize(
    "levels",
    [
        210,  # Python's reader reads it; pydantic's does not
        5000,  # Python's reader raised RecursionError: a 500, even without a valid key
    ],
)
def test_a_body_nested_too_deep_is_refused_by_name_on_every_intake(
    factory: Factory, runtime: Runtime, levels: int
) -> None:
    admin = factory.user(Role.admin)
    keys = {kind: _integration(admin, kind, kind) for kind in ("alertmanager", "grafana")}
    pd_key = _integration(admin, "pd", "pagerduty")
    made = admin.post(
        "/api/v1/integrations",
        json={"name": "hook", "kind": "generic", "mapping": {"title": "title"}},
    )
    keys["generic"] = made.json()["key"]
    nested = "[" * levels + "]" * levels
    before = row_counts(runtime)
    batch = '{"status": "firing", "alerts": [], "title": "x", "deep": DEEP}'.replace("DEEP", nested)
    for kind, key in keys.items():
        answer = admin.client.post(
            f"/ingest/{kind}/{key}",
            content=batch.encode(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 400, (kind, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert (answer.json()["field"], answer.json()["detail"]) == ("body", TOO_DEEP)
    trigger = json.dumps(_pd(pd_key, custom_details={"deep": "DEEP"}))
    change = json.dumps({"routing_key": pd_key, "payload": {"summary": "x", "deep": "DEEP"}})
    for url, body in (
        ("/v2/enqueue", trigger.replace('"DEEP"', nested)),
        ("/v2/change/enqueue", change.replace('"DEEP"', nested)),
        ("/v2/enqueue", nested),  # no routing key at all
    ):
        answer = admin.client.post(url, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json() == {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [TOO_DEEP],
        }
    # A user report is refused by the same name (its reader's own answer was a generic 400).
    report = '{"what": "checkout is down", "where": "DEEP"}'.replace('"DEEP"', nested)
    as_json = {**admin.headers, "content-type": "application/json"}
    for body in (nested, report):
        answer = admin.client.post("/api/v1/reports", content=body, headers=as_json)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        refusal = answer.json()
        assert (refusal["title"], refusal["field"], refusal["detail"]) == (
            "Bad request",
            "body",
            TOO_DEEP,
        )
    after = row_counts(runtime)
    # The three with a key in the path are dead letters; PagerDuty's are not (its routing
    # key is in the body that is refused), as for any body that is not JSON.
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 3
    assert after == before


def test_a_report_may_nest_200_deep_and_no_deeper(factory: Factory, runtime: Runtime) -> None:
    """The report's object (1) and 199 arrays in it are read (and refused for what they
    are); one more array is the named refusal. Nothing is stored either way."""
    viewer = factory.user(Role.viewer)
    as_json = {**viewer.headers, "content-type": "application/json"}
    before = row_counts(runtime)
    for lists, status, field in ((199, 422, "where"), (200, 400, "body")):
        body = '{"what": "checkout is down", "where": ' + "[" * lists + "]" * lists + "}"
        answer = viewer.client.post("/api/v1/reports", content=body, headers=as_json)
        assert answer.status_code == status, answer.text
        assert answer.json()["field"] == field
    assert row_counts(runtime) == before


@pytest.mark.parametrize("slow", [False, True], ids=["fast-reader", "python-reader"])
def test_custom_details_may_nest_200_deep_and_no_deeper(
    factory: Factory, runtime: Runtime, slow: bool
) -> None:
    """The limit is the document's depth, whichever reader reads it: the event (1), its
    payload (2), custom_details (3) and what custom_details holds. The word NaN in the
    summary sends an event to Python's reader."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "pd", "pagerduty")
    summary = "Ratio is NaN" if slow else "Ratio is high"
    deepest = _pd(key, dedup_key="d1", summary=summary, custom_details={"d": _nested(197)})
    answer = admin.client.post("/v2/enqueue", json=deepest)
    assert answer.status_code == 202, answer.text
    [alert] = admin.get("/api/v1/alerts").json()
    assert json.loads(alert["annotations"]["custom_details"]) == {"d": _nested(197)}
    change = {"routing_key": key, "payload": {"summary": summary, "custom_details": {}}}
    change["payload"]["custom_details"] = {"d": _nested(197)}
    assert admin.client.post("/v2/change/enqueue", json=change).status_code == 202
    [listed] = admin.get("/api/v1/change-events").json()
    assert listed["custom_details"] == {"d": _nested(197)}
    before = row_counts(runtime)
    too_deep = _pd(key, dedup_key="d2", summary=summary, custom_details={"d": _nested(198)})
    change["payload"]["custom_details"] = {"d": _nested(198)}
    for url, event in (("/v2/enqueue", too_deep), ("/v2/change/enqueue", change)):
        answer = admin.client.post(url, json=event)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"] == [TOO_DEEP]
    links = _pd(key, dedup_key="d3", summary=summary)
    links["links"] = [{"href": "https://example.com", "d": _nested(198)}]  # 1 + 1 + 1 + 198
    answer = admin.client.post("/v2/enqueue", json=links)
    assert answer.status_code == 400, answer.text
    assert row_counts(runtime) == before


@pytest.mark.parametrize("slow", [False, True], ids=["fast-reader", "python-reader"])
def test_a_number_too_large_for_a_float_is_refused_like_infinity(
    factory: Factory, runtime: Runtime, slow: bool
) -> None:
    """Both readers made 1e400 infinite, which the NaN/Infinity guard did not see: SQLite
    stored ``Infinity`` (not JSON), PostgreSQL refused it. Now it is refused by place."""
    admin = factory.user(Role.admin)
    pd_key = _integration(admin, "pd", "pagerduty")
    am_key = _integration(admin, "prom", "alertmanager")
    made = admin.post(
        "/api/v1/integrations",
        json={"name": "hook", "kind": "generic", "mapping": {"title": "title"}},
    )
    generic_key = made.json()["key"]
    before = row_counts(runtime)
    summary = "Ratio is NaN" if slow else "Ratio is high"

    def numbers(document: dict[str, Any]) -> str:
        return json.dumps(document).replace('"BIG"', "1e400").replace('"SMALL"', "-1e999")

    trigger = _pd(pd_key, dedup_key="c1", summary=summary, custom_details={"x": "BIG"})
    linked = _pd(pd_key, dedup_key="c2", summary=summary)
    linked["links"] = [{"href": "https://example.com", "weight": "SMALL"}]
    change = {
        "routing_key": pd_key,
        "payload": {"summary": summary, "custom_details": {"build": 1, "x": "BIG"}},
    }
    for url, event, where in (
        ("/v2/enqueue", trigger, "payload.custom_details.x"),
        ("/v2/enqueue", linked, "links.0.weight"),
        ("/v2/change/enqueue", change, "payload.custom_details.x"),
    ):
        answer = admin.client.post(
            url, content=numbers(event), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"] == [f"{where}: number out of range (beyond ±1.8e308)"]
    for url, document, where in (
        (f"/ingest/generic/{generic_key}", {"title": "x", "value": "SMALL"}, "value"),
        (
            f"/ingest/alertmanager/{am_key}",
            {"status": "firing", "alerts": [{"status": "firing", "labels": {"v": "BIG"}}]},
            "alerts.0.labels.v",
        ),
    ):
        answer = admin.client.post(
            url, content=numbers(document), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, (url, answer.text)
        assert (answer.json()["field"], answer.json()["detail"]) == (
            "body",
            f"{where}: number out of range (beyond ±1.8e308)",
        )
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 2
    assert after == before
    # The largest float and the smallest (a denormal) are numbers like any other.
    fine = _pd(pd_key, dedup_key="c3", summary=summary, custom_details={"x": 1.7e308, "y": 5e-324})
    assert admin.client.post("/v2/enqueue", json=fine).status_code == 202
    [alert] = admin.get("/api/v1/alerts").json()
    details = json.loads(alert["annotations"]["custom_details"])
    # PostgreSQL's jsonb gives 1.7e308 back written out in digits, an integer to Python
    assert (float(details["x"]), details["y"]) == (1.7e308, 5e-324)
