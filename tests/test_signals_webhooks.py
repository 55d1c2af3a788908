"""Grafana and generic JSON webhooks, and user reports: each becomes a signal like any other."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from firetower.signals.models import Integration, RejectedPayload
from tests.factories import ApiUser, Factory, row_counts
from tests.test_signals_intake import _alerts, _am_alert, _am_batch, _incidents, _notes

MAPPING = {
    "title": "alert.name",
    "severity": "alert.level",
    "dedup_key": "alert.id",
    "service": "tags.service",
    "status": "state",
}


def _integration(admin: ApiUser, name: str, kind: str, **fields: Any) -> str:
    answer = admin.post("/api/v1/integrations", json={"name": name, "kind": kind, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _refused_with_only_a_dead_letter(
    runtime: Runtime, before: dict[str, int], body: bytes | None = None
) -> None:
    after = row_counts(runtime)
    assert after.pop("rejected_payloads") == before.pop("rejected_payloads") + 1
    assert after == before
    if body is not None:
        with runtime.read() as session:
            row = session.scalars(
                select(RejectedPayload).order_by(RejectedPayload.id.desc())
            ).first()
            assert row is not None
            assert row.body == body
            assert row.reason


# -- Grafana -----------------------------------------------------------------------------------
def _grafana(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "firetower",
        "status": status,
        "orgId": 1,
        "alerts": [
            {
                **a,
                "dashboardURL": "http://grafana:3000/d/abc",
                "silenceURL": "http://grafana:3000/alerting/silence/new",
                "valueString": "[ var='A' value=7.5 ]",
                "values": {"A": 7.5},
            }
            for a in alerts
        ],
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"team": "payments"},
        "commonAnnotations": {},
        "externalURL": "http://grafana:3000/",
        "version": "1",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] HighErrorRate",
        "state": "alerting",
        "message": "**Firing**",
    }


def test_a_grafana_alert_opens_repeats_and_resolves(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("checkout")
    key = _integration(admin, "grafana", "grafana", service_name="checkout")
    url = f"/ingest/grafana/{key}"

    first = admin.client.post(url, json=_grafana(_am_alert("g1", severity="error")))
    assert first.status_code == 200, first.text
    [incident] = _incidents(runtime)
    assert first.json() == {"status": "success", "alerts": 1, "opened": [incident.ref]}
    assert (incident.source, incident.severity) == ("alert", "SEV2")
    assert incident.title == "Errors above 5% (g1)"
    assert [s.name for s in incident.services] == ["checkout"]

    assert admin.client.post(url, json=_grafana(_am_alert("g1"))).status_code == 200
    [alert] = _alerts(runtime)
    assert (alert.count, alert.status, alert.incident_id) == (2, "firing", incident.id)
    assert alert.labels["team"] == "payments"
    assert alert.annotations["dashboardURL"] == "http://grafana:3000/d/abc"
    assert alert.ends_at is None  # Grafana's zero time means "no end yet"

    resolved = _grafana(_am_alert("g1", "resolved"), status="resolved")
    assert admin.client.post(url, json=resolved).status_code == 200
    [alert] = _alerts(runtime)
    assert alert.status == "resolved"
    assert _notes(runtime, incident.id)[-1].text == (
        "The 1 alert attached to this incident has resolved."
    )
    assert len(_incidents(runtime)) == 1


def test_the_alert_list_gives_each_alert_its_annotations(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    grafana = _integration(admin, "grafana", "grafana")
    alert = _am_alert("g1")
    alert["annotations"] = {
        "summary": "Errors above 5%",
        "description": "Checkout answers 5xx to 7.5% of requests",
        "runbook_url": "https://runbooks.example.com/checkout-errors",
    }
    alert["panelURL"] = "http://grafana:3000/d/abc?viewPanel=2"
    answer = admin.client.post(f"/ingest/grafana/{grafana}", json=_grafana(alert))
    assert answer.status_code == 200, answer.text
    pd = _integration(admin, "pd", "pagerduty")
    event = {
        "routing_key": pd,
        "event_action": "trigger",
        "dedup_key": "pd1",
        "payload": {"summary": "Disk full", "source": "db-1", "severity": "error"},
        "links": [{"href": "https://example.com/disk", "text": "Disk"}],
    }
    assert admin.client.post("/v2/enqueue", json=event).status_code == 202

    listed = factory.user(Role.viewer).get("/api/v1/alerts")
    assert listed.status_code == 200, listed.text
    by_fingerprint = {a["fingerprint"]: a["annotations"] for a in listed.json()}
    assert by_fingerprint["g1"] == {
        "summary": "Errors above 5%",
        "description": "Checkout answers 5xx to 7.5% of requests",
        "runbook_url": "https://runbooks.example.com/checkout-errors",
        "generatorURL": "http://prometheus:9090/graph",
        "dashboardURL": "http://grafana:3000/d/abc",
        "panelURL": "http://grafana:3000/d/abc?viewPanel=2",
        "silenceURL": "http://grafana:3000/alerting/silence/new",
        "valueString": "[ var='A' value=7.5 ]",
    }
    # PagerDuty's structured details are kept as JSON text; its empty fields left out.
    assert by_fingerprint["pd1"] == {
        "links": '[{"href":"https://example.com/disk","text":"Disk"}]',
    }


def test_empty_pagerduty_annotations_are_left_out_and_keep_the_last_ones_sent(
    factory: Factory, runtime: Runtime
) -> None:
    """An absent, null or empty field is no annotation (it was ``{"details": null}`` and
    ``[]``), so a repeat without details keeps the ones sent before; a value that is not an
    object is kept under ``details``."""
    admin = factory.user(Role.admin)
    pd = _integration(admin, "pd", "pagerduty")

    def trigger(dedup_key: str, **fields: Any) -> None:
        payload = {"summary": "Disk full", "source": "db-1", "severity": "error"}
        if "custom_details" in fields:
            payload["custom_details"] = fields.pop("custom_details")
        event = {"routing_key": pd, "event_action": "trigger", "dedup_key": dedup_key}
        answer = admin.client.post("/v2/enqueue", json={**event, "payload": payload, **fields})
        assert answer.status_code == 202, answer.text

    def annotations() -> dict[str, Any]:
        return {a["fingerprint"]: a["annotations"] for a in admin.get("/api/v1/alerts").json()}

    trigger("bare")
    for empty in ({}, [], "", None):
        trigger(f"empty-{empty!r}", custom_details=empty, links=[], images=[], client="")
    for value in ("disk at 95%", 0, False):
        trigger(f"text-{value!r}", custom_details=value)
    trigger("kept", custom_details={"used": "95%"}, client="nagios")
    trigger("kept")  # a repeat that says nothing more
    listed = annotations()
    assert listed.pop("kept") == {"custom_details": '{"used":"95%"}', "client": "nagios"}
    assert listed.pop("text-'disk at 95%'") == {"custom_details": '{"details":"disk at 95%"}'}
    assert listed.pop("text-0") == {"custom_details": '{"details":0}'}
    assert listed.pop("text-False") == {"custom_details": '{"details":false}'}
    assert listed == {key: {} for key in listed}
    assert len(listed) == 5
    [kept] = [a for a in _alerts(runtime) if a.fingerprint == "kept"]
    assert kept.count == 2


def test_a_grafana_alert_joins_the_active_incident_of_its_service(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("db")
    ref = factory.incident(title="Database slow", services=["db"])
    key = _integration(admin, "grafana", "grafana")
    answer = admin.client.post(
        f"/ingest/grafana/{key}", json=_grafana(_am_alert("j1", service="db"))
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["opened"] == []
    [incident] = _incidents(runtime)
    assert incident.ref == ref
    [note] = _notes(runtime, incident.id)
    assert note.text == "1 alert from grafana attached: Errors above 5% (j1)"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b'{"status": "firing"}', 422, "alerts"),
        (b'{"status": "alerting", "alerts": []}', 422, "status"),
        (
            b'{"status": "firing", "alerts": [{"status": "firing", "labels": []}]}',
            422,
            "alerts.0.labels",
        ),
    ],
)
def test_a_malformed_grafana_payload_is_refused_and_only_dead_lettered(
    factory: Factory, runtime: Runtime, body: bytes, status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "grafana", "grafana")
    before = row_counts(runtime)
    answer = admin.client.post(
        f"/ingest/grafana/{key}", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field
    _refused_with_only_a_dead_letter(runtime, before, body)


def test_keys_work_only_on_the_endpoints_of_their_kind(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    am = _integration(admin, "am", "alertmanager")
    grafana = _integration(admin, "grafana", "grafana")
    generic = _integration(admin, "generic", "generic", mapping=MAPPING)
    _integration(admin, "old", "grafana")
    revoked = admin.post("/api/v1/integrations/old/rotate").json()["key"]
    assert admin.delete("/api/v1/integrations/old").status_code == 204
    before = row_counts(runtime)
    cases = [
        ("grafana", am),
        ("grafana", generic),
        ("grafana", revoked),
        ("grafana", "0" * 32),
        ("generic", grafana),
        ("generic", am),
        ("generic", "short"),
        ("alertmanager", grafana),
        ("alertmanager", generic),
    ]
    for kind, key in cases:
        answer = admin.client.post(f"/ingest/{kind}/{key}", json=_grafana(_am_alert("k")))
        assert answer.status_code == 401, (kind, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert row_counts(runtime) == before


# -- generic webhook ---------------------------------------------------------------------------
def _doc(state: str = "open", **alert: Any) -> dict[str, Any]:
    return {
        "state": state,
        "alert": {
            "id": "cpu-web-1",
            "name": "CPU above 90% on web-1",
            "level": "critical",
            **alert,
        },
        "tags": {"service": "web"},
    }


def test_a_generic_document_opens_repeats_and_resolves(factory: Factory, runtime: Runtime) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    key = _integration(admin, "custom", "generic", mapping=MAPPING)
    url = f"/ingest/generic/{key}"

    first = admin.client.post(url, json=_doc())
    assert first.status_code == 200, first.text
    [incident] = _incidents(runtime)
    assert first.json() == {
        "status": "success",
        "alerts": 1,
        "dedup_key": "cpu-web-1",
        "opened": [incident.ref],
    }
    assert (incident.title, incident.severity, incident.source) == (
        "CPU above 90% on web-1",
        "SEV1",
        "alert",
    )
    assert [s.name for s in incident.services] == ["web"]

    assert admin.client.post(url, json=_doc()).status_code == 200
    [alert] = _alerts(runtime)
    assert (alert.fingerprint, alert.count, alert.status) == ("cpu-web-1", 2, "firing")
    assert alert.labels == {"severity": "critical", "service": "web", "status": "open"}

    assert admin.client.post(url, json=_doc("RESOLVED")).status_code == 200
    [alert] = _alerts(runtime)
    assert alert.status == "resolved"
    assert alert.ends_at is not None
    assert _notes(runtime, incident.id)[-1].text.startswith("The 1 alert attached")
    assert len(_incidents(runtime)) == 1


def test_a_generic_service_the_catalog_lacks_routes_to_the_integrations_and_stays_a_label(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    ref = factory.incident(title="Web is slow", services=["web"])
    mapping = {"title": "msg", "service": "svc"}
    key = _integration(admin, "custom", "generic", mapping=mapping, service_name="web")
    url = f"/ingest/generic/{key}"
    assert admin.client.post(url, json={"msg": "Latency high", "svc": "nope"}).status_code == 200
    assert admin.client.post(url, json={"msg": "Disk full"}).status_code == 200
    named, unnamed = _alerts(runtime)
    # routed to the integration's service, and what the sender named is still visible
    assert (named.service_name, named.labels) == ("web", {"service": "nope"})
    assert (unnamed.service_name, unnamed.labels) == ("web", {"service": "web"})
    [incident] = _incidents(runtime)
    assert incident.ref == ref and named.incident_id == incident.id
    [read] = [a for a in admin.get("/api/v1/alerts").json() if a["title"] == "Latency high"]
    assert read["service_name"] == "web" and read["labels"]["service"] == "nope"


def test_a_generic_document_without_dedup_key_dedups_on_title_and_service(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("api")
    factory.service("web")
    ref = factory.incident(title="Web is slow", services=["web"])
    key = _integration(admin, "custom", "generic", mapping={"title": "msg", "service": "svc"})
    url = f"/ingest/generic/{key}"
    for _ in range(3):
        assert admin.client.post(url, json={"msg": "Latency high", "svc": "web"}).status_code == 200
    # a service the catalog does not know falls back to the integration's (none): kept only
    assert admin.client.post(url, json={"msg": "Latency high", "svc": "nope"}).status_code == 200
    alerts = _alerts(runtime)
    assert [(a.count, a.service_name, a.severity) for a in alerts] == [
        (3, "web", "SEV3"),
        (1, None, "SEV3"),
    ]
    [incident] = _incidents(runtime)
    assert incident.ref == ref
    assert alerts[0].incident_id == incident.id
    assert alerts[1].incident_id is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b'{"state": "open", "alert": {"id": "x"}}', 422, "title"),
        (b'{"alert": {"name": {"nested": true}}}', 422, "title"),
        (b'{"alert": {"name": "ok", "id": ["a", "b"]}}', 422, "dedup_key"),
        (b"[1, 2]", 422, "body"),
    ],
)
def test_a_document_the_mapping_cannot_read_is_refused_and_only_dead_lettered(
    factory: Factory, runtime: Runtime, body: bytes, status: int, field: str
) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    key = _integration(admin, "custom", "generic", mapping=MAPPING, service_name="web")
    before = row_counts(runtime)
    answer = admin.client.post(
        f"/ingest/generic/{key}", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field
    _refused_with_only_a_dead_letter(runtime, before, body)


def test_long_texts_in_optional_fields_are_read_as_any_unknown_value(
    factory: Factory, runtime: Runtime
) -> None:
    """A severity, service or status over 100 characters, or a title over 1,024, refused the
    whole alert (422, dead letter) although the docs read an unknown severity as SEV3, an
    unknown service as the integration's and an unknown status as firing; Alertmanager's
    summary of any length is cut to 1,024 characters."""
    admin = factory.user(Role.admin)
    factory.service("web")
    ref = factory.incident(title="Web is slow", services=["web"])
    key = _integration(admin, "custom", "generic", mapping=MAPPING, service_name="web")
    long = "x" * 5000
    document = {"state": long, "alert": {"id": "long", "name": f"CPU high {long}", "level": long}}
    answer = admin.client.post(
        f"/ingest/generic/{key}", json={**document, "tags": {"service": long}}
    )
    assert answer.status_code == 200, answer.text
    [alert] = _alerts(runtime)
    assert (alert.status, alert.severity, alert.service_name) == ("firing", "SEV3", "web")
    assert alert.title == f"CPU high {long}"[:1024]
    assert alert.labels == {"severity": long, "service": long, "status": long}
    [incident] = _incidents(runtime)
    assert (incident.ref, alert.incident_id) == (ref, incident.id)
    with runtime.read() as session:
        assert session.scalars(select(RejectedPayload)).all() == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'[{"alert": {"name": "x"}}]', "body: must be a JSON object, not an array"),
        (b'"CPU high"', "body: must be a JSON object, not a string"),
        (b'{"alert": {"name": {"a": 1}}}', "title: 'alert.name' gave an object, not text"),
        (b'{"alert": {"name": "x", "id": [1]}}', "dedup_key: 'alert.id' gave an array, not text"),
        (  # cut, two alerts would share a fingerprint
            b'{"alert": {"name": "x", "id": "' + b"i" * 256 + b'"}}',
            "dedup_key: 'alert.id' gave more than 255 characters",
        ),
        (
            b'{"alert": {"name": "x", "level": true}}',
            "severity: 'alert.level' gave a boolean, not text",
        ),
    ],
)
def test_a_refused_document_is_described_in_json_words(
    factory: Factory, runtime: Runtime, body: bytes, detail: str
) -> None:
    admin = factory.user(Role.admin)
    key = _integration(admin, "custom", "generic", mapping=MAPPING)
    answer = admin.client.post(
        f"/ingest/generic/{key}", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert (answer.json()["field"], answer.json()["detail"]) == (detail.split(":")[0], detail)
    with runtime.read() as session:
        [dead] = session.scalars(select(RejectedPayload)).all()
        assert dead.reason == detail


@pytest.mark.parametrize(
    ("document", "field", "detail"),
    [
        (
            {"tags": ["a", 1], "level": 3},
            "title",
            "title: \"join(', ', tags)\" failed on this document: In function join(), invalid "
            "type for value: 1, expected one of: ['array-string'], received: \"int\"",
        ),
        (
            {"tags": ["a", "b"], "level": "high"},
            "severity",
            "severity: 'abs(level)' failed on this document: In function abs(), invalid type "
            "for value: high, expected one of: ['number'], received: \"string\"",
        ),
        (  # two numbers of 4,300 digits, the most Python's reader takes: a sum it cannot print
            {"tags": ["a"], "level": 1, "ids": [int("9" * 4300)] * 2},
            "dedup_key",
            "dedup_key: 'sum(ids)' gave a number too long to write",
        ),
        (  # jmespath compares as Python does, and Python refuses 1 > "a" with a TypeError
            {"tags": ["a"], "level": 1, "ids": [1], "limit": "a"},
            "status",
            "status: \"level > limit && 'down' || 'up'\" failed on this document: '>' not "
            "supported between instances of 'int' and 'str'",
        ),
    ],
)
def test_a_mapping_that_fails_on_a_document_refuses_it_by_field(
    factory: Factory, runtime: Runtime, document: dict[str, Any], field: str, detail: str
) -> None:
    """A mapping is only compiled when the integration is made: a function given the wrong
    kind of value fails on the document, which is the sender's to fix (was a 500)."""
    admin = factory.user(Role.admin)
    mapping = {
        "title": "join(', ', tags)",
        "severity": "abs(level)",
        "dedup_key": "sum(ids)",
        "status": "level > limit && 'down' || 'up'",
    }
    key = _integration(admin, "custom", "generic", mapping=mapping)
    url = f"/ingest/generic/{key}"
    fine = admin.client.post(url, json={"tags": ["a", "b"], "level": 3, "limit": 2, "ids": [1]})
    assert fine.status_code == 200, fine.text
    before = row_counts(runtime)
    answer = admin.client.post(url, json=document)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert (answer.json()["field"], answer.json()["detail"]) == (field, detail)
    _refused_with_only_a_dead_letter(runtime, before)
    with runtime.read() as session:
        dead = session.scalars(select(RejectedPayload)).one()
        assert dead.reason == detail


def test_a_stored_slice_of_step_zero_refuses_the_document_by_field(
    factory: Factory, runtime: Runtime
) -> None:
    """A slice whose step is 0 parses, and fails on every array it is given with a plain
    ValueError: that made a 500, and the alert was lost without a dead letter. A mapping
    stored before creation refused it is refused as any mapping no longer valid is."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "custom", "generic", mapping={"title": "alert.name"})
    with runtime.transaction() as session:  # stored before creation refused it
        integration = session.scalars(select(Integration)).one()
        integration.mapping = {"title": "alert.name", "dedup_key": "ids[::0] | [0]"}
    before = row_counts(runtime)
    answer = admin.client.post(f"/ingest/generic/{key}", json={"alert": {"name": "x"}, "ids": [1]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "dedup_key"
    assert answer.json()["detail"] == (
        "dedup_key: the integration's mapping is not valid: a slice's step must not "
        "be 0 (as in [::0])"
    )
    _refused_with_only_a_dead_letter(runtime, before)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "generic", "mapping": {**MAPPING, "title": "alert.[name"}}, "mapping.title"),
        ({"kind": "generic", "mapping": {**MAPPING, "severity": "a |"}}, "mapping.severity"),
        ({"kind": "generic", "mapping": {**MAPPING, "dedup_key": "foo("}}, "mapping.dedup_key"),
        ({"kind": "generic", "mapping": {**MAPPING, "service": "@@"}}, "mapping.service"),
        ({"kind": "generic", "mapping": {**MAPPING, "status": "a[?"}}, "mapping.status"),
        ({"kind": "generic", "mapping": {**MAPPING, "title": "a[::0]"}}, "mapping.title"),
        ({"kind": "generic", "mapping": {**MAPPING, "status": "a[1:2:0].b"}}, "mapping.status"),
        ({"kind": "generic", "mapping": {**MAPPING, "title": "nope(a)"}}, "mapping.title"),
        (
            {"kind": "generic", "mapping": {**MAPPING, "severity": "a || merge()"}},
            "mapping.severity",
        ),
        (
            {"kind": "generic", "mapping": {**MAPPING, "dedup_key": "join(',', a, b)"}},
            "mapping.dedup_key",
        ),
        ({"kind": "generic", "mapping": {"severity": "x"}}, "mapping.title"),
        ({"kind": "generic", "mapping": {**MAPPING, "extra": "x"}}, "mapping.extra"),
        ({"kind": "generic"}, "mapping"),  # the field to give, not the whole body
        ({"kind": "alertmanager", "mapping": MAPPING}, "mapping"),
        ({"kind": "grafana", "mapping": MAPPING}, "mapping"),
    ],
)
def test_the_mapping_is_checked_when_the_integration_is_created(
    factory: Factory, runtime: Runtime, fields: dict[str, Any], field: str
) -> None:
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    answer = admin.post("/api/v1/integrations", json={"name": "custom", **fields})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert row_counts(runtime) == before


@pytest.mark.parametrize(
    ("field", "expression"),
    [
        ("title", "(" * 499 + "a" + ")" * 499),
        ("severity", "!" * 999 + "a"),
        ("status", "[" * 400 + "a" + "]" * 400),
    ],
)
def test_an_expression_nested_too_deeply_is_refused_by_name(
    factory: Factory, runtime: Runtime, field: str, expression: str
) -> None:
    """JMESPath's parser recurses once per level: such an expression made a 500."""
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    mapping = {"title": "alert.name", field: expression}
    answer = admin.post(
        "/api/v1/integrations", json={"name": "custom", "kind": "generic", "mapping": mapping}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"mapping.{field}"
    assert "nests too deeply" in answer.json()["detail"]
    assert row_counts(runtime) == before


def test_a_stored_expression_nested_too_deeply_refuses_the_document_by_field(
    factory: Factory, runtime: Runtime
) -> None:
    """A mapping stored before creation checked the depth made every document a 500, and
    the alert was lost without a dead letter."""
    admin = factory.user(Role.admin)
    key = _integration(admin, "custom", "generic", mapping={"title": "alert.name"})
    with runtime.transaction() as session:
        integration = session.scalars(select(Integration)).one()
        integration.mapping = {"title": "alert.name", "dedup_key": "!" * 998 + "id"}
    before = row_counts(runtime)
    answer = admin.client.post(f"/ingest/generic/{key}", json={"alert": {"name": "x"}, "id": 1})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "dedup_key"
    assert "nests too deeply" in answer.json()["detail"]
    _refused_with_only_a_dead_letter(runtime, before)


@pytest.mark.parametrize(
    ("resolved_values", "detail"),
    [
        (r'["ok\u0000"]', "must not contain the NUL character"),
        (r'["\ud800"]', "unicode"),  # half a surrogate pair: no database stores it alike
        ('["   "]', "must not be blank"),  # a status is stripped: blank never matches
        (f'["{"x" * 101}"]', "at most 100 characters"),  # longer than any status read
    ],
)
def test_resolved_values_are_checked_when_the_integration_is_created(
    factory: Factory, runtime: Runtime, resolved_values: str, detail: str
) -> None:
    """Each value was taken as sent. Half a surrogate pair made a 500 after the integration
    was stored: its key was never shown, and every later list of integrations (API, CLI,
    console) was a 500 too. A NUL was stored on SQLite and refused vaguely on PostgreSQL
    ("a value cannot be stored")."""
    admin = factory.user(Role.admin)
    before = row_counts(runtime)
    body = '{"name": "custom", "kind": "generic", "mapping": {"title": "alert.name", '
    body += f'"status": "state", "resolved_values": {resolved_values}}}}}'
    answer = admin.client.post(
        "/api/v1/integrations",
        content=body.encode(),
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "mapping.resolved_values.0", answer.json()
    assert detail in answer.json()["detail"]
    assert row_counts(runtime) == before
    assert admin.get("/api/v1/integrations").json() == []


def test_the_mapping_is_listed_with_the_integration(factory: Factory) -> None:
    admin = factory.user(Role.admin)
    _integration(admin, "custom", "generic", mapping=MAPPING)
    [listed] = admin.get("/api/v1/integrations").json()
    assert listed["mapping"] == {**MAPPING, "resolved_values": ["resolved", "ok"]}


# -- user reports ------------------------------------------------------------------------------
def test_a_report_opens_an_incident_and_the_next_one_joins_it(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("checkout")
    viewer = factory.user(Role.viewer)
    body = {"what": "Checkout page shows a 500", "where": "checkout", "contact": "ann@example.com"}
    first = viewer.post("/api/v1/reports", json=body)
    assert first.status_code == 201, first.text
    [incident] = _incidents(runtime)
    assert first.json()["incident"] == incident.ref
    assert first.json()["opened"] is True
    assert first.json()["service_name"] == "checkout"
    assert (incident.source, incident.title, incident.severity) == (
        "user-report",
        "Checkout page shows a 500",
        "SEV3",
    )
    assert viewer.email in incident.summary
    assert "ann@example.com" in incident.summary

    second = viewer.post("/api/v1/reports", json={**body, "what": "Cannot pay"})
    assert second.status_code == 201, second.text
    assert second.json()["incident"] == incident.ref
    assert second.json()["opened"] is False
    assert len(_incidents(runtime)) == 1
    alerts = _alerts(runtime)
    assert len(alerts) == 2  # one signal per report: never deduplicated together
    assert {a.incident_id for a in alerts} == {incident.id}
    assert alerts[0].annotations == {"contact": "ann@example.com"}
    [note] = _notes(runtime, incident.id)
    assert note.text.endswith("attached: Cannot pay")
    assert note.actor == f"user-report:{viewer.email}"


def test_a_report_does_not_hold_open_an_incident_its_alerts_clear(
    factory: Factory, runtime: Runtime
) -> None:
    """A report never sends a resolve: counted as an alert still firing, one report kept
    ``on_clear: resolve`` from ever ending its incident. Once the incident ends, its reports
    count as resolved (and retention may delete them)."""
    factory.service("checkout")
    admin = factory.user(Role.admin)
    matchers = [{"label": "alertname", "op": "=~", "value": "High error rate.*"}]
    rule = {"name": "resolve-on-clear", "matchers": matchers, "on_clear": "resolve"}
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    key = _integration(admin, "prom", "alertmanager", service_name="checkout")
    am = f"/ingest/alertmanager/{key}"
    assert factory.client.post(am, json=_am_batch(_am_alert("e1"))).status_code == 200
    [incident] = _incidents(runtime)
    report = {"what": "Checkout page shows a 500", "where": "checkout"}
    answer = factory.user(Role.viewer).post("/api/v1/reports", json=report)
    assert answer.status_code == 201, answer.text
    assert answer.json()["incident"] == incident.ref

    resolved = _am_batch(_am_alert("e1", "resolved"), status="resolved")
    assert factory.client.post(am, json=resolved).status_code == 200
    [incident] = _incidents(runtime)
    assert incident.status == "resolved"
    texts = [note.text for note in _notes(runtime, incident.id)]
    assert not [text for text in texts if "2 alerts" in text]  # the report is no alert of its
    statuses = {alert.fingerprint: alert.status for alert in _alerts(runtime)}
    assert statuses == {"e1": "resolved", answer.json()["fingerprint"]: "resolved"}


def test_the_reports_of_an_incident_resolved_by_hand_count_as_resolved(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("search")
    ref = factory.incident(title="Search is down", services=["search"])
    viewer = factory.user(Role.viewer)
    answer = viewer.post("/api/v1/reports", json={"what": "No results", "where": "search"})
    assert answer.status_code == 201, answer.text
    [report] = _alerts(runtime)
    assert report.status == "firing"
    responder = factory.user(Role.responder)
    ended = responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": "resolved"})
    assert ended.status_code == 200, ended.text
    [report] = _alerts(runtime)
    assert report.status == "resolved" and report.ends_at is not None
    reopened = responder.post(f"/api/v1/incidents/{ref}/transitions", json={"to": "investigating"})
    assert reopened.status_code == 200, reopened.text
    [report] = _alerts(runtime)
    assert report.status == "resolved"  # a report is not a monitor: it does not fire again


def test_the_alerts_of_a_merged_incident_move_to_the_survivor(
    factory: Factory, runtime: Runtime
) -> None:
    """A merged incident is over: its alerts and open reports follow to the survivor
    (reports stay open there) instead of staying on an incident nobody watches."""
    factory.service("search")
    merged_ref = factory.incident(title="Search is down", services=["search"])
    viewer = factory.user(Role.viewer)
    for what in ("No results", "Search times out"):
        answer = viewer.post("/api/v1/reports", json={"what": what, "where": "search"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["incident"] == merged_ref
    survivor_ref = factory.incident(title="Search cluster degraded", services=["search"])
    responder = factory.user(Role.responder)
    merged = responder.post(
        f"/api/v1/incidents/{merged_ref}/transitions",
        json={"to": "merged", "merged_into": survivor_ref},
    )
    assert merged.status_code == 200, merged.text
    survivor = next(i for i in _incidents(runtime) if i.ref == survivor_ref)
    alerts = _alerts(runtime)
    assert [(a.incident_id, a.status) for a in alerts] == [(survivor.id, "firing")] * 2
    texts = [note.text for note in _notes(runtime, survivor.id)]
    assert f"2 alerts moved from {merged_ref}" in texts

    ended = responder.post(f"/api/v1/incidents/{survivor_ref}/transitions", json={"to": "resolved"})
    assert ended.status_code == 200, ended.text
    assert {a.status for a in _alerts(runtime)} == {"resolved"}


def test_a_report_joins_an_incident_already_open_for_its_service(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("search")
    ref = factory.incident(title="Search is down", services=["search"])
    answer = factory.user(Role.viewer).post(
        "/api/v1/reports", json={"what": "No results", "where": "search"}
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["incident"], answer.json()["opened"]) == (ref, False)
    assert len(_incidents(runtime)) == 1


def test_a_report_names_its_service_in_any_case_and_carries_it_as_a_label(
    factory: Factory, runtime: Runtime
) -> None:
    factory.service("accounts")
    viewer = factory.user(Role.viewer)
    answer = viewer.post("/api/v1/reports", json={"what": "Cannot log in", "where": " ACCOUNTS "})
    assert answer.status_code == 201, answer.text
    assert (answer.json()["service_name"], answer.json()["opened"]) == ("accounts", True)
    [incident] = _incidents(runtime)
    assert [s.name for s in incident.services] == ["accounts"]
    [alert] = _alerts(runtime)
    assert alert.labels == {"where": "ACCOUNTS", "reporter": viewer.email, "service": "accounts"}


def test_a_routing_rule_on_the_service_label_catches_a_report_as_the_route_test_says(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    factory.service("news-feed")
    rule = {
        "name": "news-feed-urgent",
        "matchers": [{"label": "service", "op": "=", "value": "news-feed"}],
        "severity": "SEV2",
    }
    assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    answer = factory.user(Role.viewer).post(
        "/api/v1/reports", json={"what": "The feed is empty", "where": "news-feed"}
    )
    assert answer.status_code == 201, answer.text
    [alert] = _alerts(runtime)
    assert (alert.routed_by, alert.routing_action) == ("news-feed-urgent", "open")
    [incident] = _incidents(runtime)
    assert (incident.severity, [s.name for s in incident.services]) == ("SEV2", ["news-feed"])

    predicted = admin.post(
        "/api/v1/routing-rules/test",
        json={"labels": alert.labels, "integration": "@user-reports"},
    )
    assert predicted.status_code == 200, predicted.text
    assert (predicted.json()["decided_by"], predicted.json()["severity"]) == (
        "news-feed-urgent",
        "SEV2",
    )


def test_a_report_about_no_known_service_is_kept_and_opens_nothing(
    factory: Factory, runtime: Runtime
) -> None:
    answer = factory.user(Role.viewer).post(
        "/api/v1/reports", json={"what": "The wiki is slow", "where": "the wiki, I think"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["incident"] is None
    [alert] = _alerts(runtime)
    assert alert.incident_id is None
    assert alert.labels["where"] == "the wiki, I think"
    assert _incidents(runtime) == []


def test_the_report_integration_is_not_an_integration_admins_manage(factory: Factory) -> None:
    factory.user(Role.viewer).post("/api/v1/reports", json={"what": "Broken"})
    admin = factory.user(Role.admin)
    assert admin.get("/api/v1/integrations").json() == []
    assert admin.post("/api/v1/integrations/@user-reports/rotate").status_code == 404
    assert admin.delete("/api/v1/integrations/@user-reports").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "what"),
        ({"what": "   "}, "what"),
        ({"what": "x" * 1001}, "what"),
        ({"what": "broken", "where": "a\u0000b"}, "where"),
        ({"what": "broken", "severity": "SEV1"}, "severity"),
    ],
)
def test_an_invalid_report_is_refused_and_stores_nothing(
    factory: Factory, runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    viewer = factory.user(Role.viewer)
    before = row_counts(runtime)
    answer = viewer.post("/api/v1/reports", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert row_counts(runtime) == before


def test_reports_need_a_signed_in_user(factory: Factory, runtime: Runtime) -> None:
    before = row_counts(runtime)
    answer = factory.client.post("/api/v1/reports", json={"what": "Broken"})
    assert answer.status_code == 401
    assert row_counts(runtime) == before
