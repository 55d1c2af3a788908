"""Probe definitions through the API: who may do what, bad input refused with nothing stored,
replacement, pausing, deletion, and apply_probes (config as code)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from firetower.auth.schemas import Role
from firetower.errors import Conflict, InvalidInput
from firetower.monitors import probes
from firetower.monitors.probe_models import Probe
from firetower.monitors.probe_schemas import ProbeCreate
from tests.factories import SYSTEM, ApiUser, Factory, row_counts


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


def http_probe(name: str = "home", **fields: Any) -> dict[str, Any]:
    settings = fields.pop("http", {"url": "http://127.0.0.1:9/ok"})
    return {"name": name, "kind": "http", "http": settings, **fields}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (http_probe(http={"url": "ftp://example.org/x"}), "http.url", "http:// or https://"),
        (http_probe(http={"url": "not a url"}), "http.url", "spaces"),
        (http_probe(http={"url": "http://"}), "http.url", "no host"),
        (http_probe(http={"url": "http://example.org:99999/"}), "http.url", "not a valid URL"),
        (
            http_probe(
                http={
                    "url": "http://x/",
                    "conditions": [{"type": "jsonpath", "expression": "$[", "exists": True}],
                }
            ),
            "http.conditions.0.jsonpath.expression",
            "not a valid JSONPath expression",
        ),
        (
            http_probe(
                http={"url": "http://x/", "conditions": [{"type": "jsonpath", "expression": "$.a"}]}
            ),
            "http.conditions.0.jsonpath",
            "exactly one of equals or exists",
        ),
        (
            http_probe(
                http={"url": "http://x/", "conditions": [{"type": "regex", "pattern": "(unclosed"}]}
            ),
            "http.conditions.0.regex.pattern",
            "not a valid regular expression",
        ),
        (
            http_probe(http={"url": "http://x/", "headers": {"Bad Header": "x"}}),
            "http.headers.Bad Header.[key]",
            "pattern",
        ),
        (
            http_probe(http={"url": "http://x/", "headers": {"X-A": "one\r\nX-B: two"}}),
            "http.headers",
            "one line",
        ),
        # Values httpx cannot encode (not ASCII) or h11 will not send (space at either end)
        # would fail every run.
        (
            http_probe(http={"url": "http://x/", "headers": {"X-Team": "café"}}),
            "http.headers",
            "header X-Team: a value is ASCII text",
        ),
        (
            http_probe(http={"url": "http://x/", "headers": {"Authorization": "Bearer x "}}),
            "http.headers",
            "header Authorization: a value does not start or end with a space or tab",
        ),
        (
            http_probe(http={"url": "http://x/", "expected_status": [200, 700]}),
            "http.expected_status.1",
            "less than or equal to 599",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 70000}},
            "tcp.port",
            "less than or equal to 65535",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 0}},
            "tcp.port",
            "greater than or equal to 1",
        ),
        # A host is a name or an address, checked as the run would read it: a port written
        # into it, an empty label or an overlong one never resolves.
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "10.0.0.7:5432", "port": 5432}},
            "tcp.host",
            "'10.0.0.7:5432' is not a host name or IP address; give the port in tcp.port",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "db.internal:5432", "port": 5432}},
            "tcp.host",
            "give the port in tcp.port",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": ":::", "port": 5432}},
            "tcp.host",
            "is not a host name or IP address",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "db..internal", "port": 5432}},
            "tcp.host",
            "'db..internal' is not a valid DNS name: it has an empty label",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "a" * 64 + ".internal", "port": 5432}},
            "tcp.host",
            "is longer than 63 bytes",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "x.test", "nameserver": "ns.example"}},
            "dns.nameserver",
            "must be an IP address",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "x.test", "nameserver": "dns.google"}},
            "dns.nameserver",
            "must be an IP address",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "x.test", "nameserver": "999.1.1.1"}},
            "dns.nameserver",
            "must be an IP address",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "bad..name"}},
            "dns.name",
            "'bad..name' is not a valid DNS name: it has an empty label",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "a" * 64 + ".example"}},
            "dns.name",
            f"the label {'a' * 64!r} is longer than 63 bytes",
        ),
        (
            http_probe(timeout_seconds=2, http={"url": "http://x/", "latency_threshold_ms": 2500}),
            "http.latency_threshold_ms",
            "latency_threshold_ms (2500) must not exceed timeout_seconds (2 s = 2000 ms)",
        ),
        (
            http_probe(
                http={
                    "url": "http://x/",
                    "method": "HEAD",
                    "conditions": [{"type": "regex", "pattern": "ok"}],
                }
            ),
            "http.conditions",
            "a HEAD request gets no body to check; use GET for conditions on the body",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "x.test", "record_type": "BOGUS"}},
            "dns.record_type",
            "",
        ),
        # Named by the field to give or leave out, not the whole body.
        ({"name": "db", "kind": "tcp", "http": {"url": "http://x/"}}, "http", "takes no 'http'"),
        ({"name": "db", "kind": "tcp"}, "tcp", "a tcp probe needs its settings under 'tcp'"),
        ({"name": "web", "kind": "http"}, "http", "an http probe needs its settings under 'http'"),
        (http_probe(interval_seconds=5), "interval_seconds", "greater than or equal to 10"),
        (http_probe(interval_seconds=10, timeout_seconds=20), "timeout_seconds", "must not exceed"),
        (http_probe(name="Has Spaces"), "name", "pattern"),
        (http_probe(severity="SEV9"), "severity", ""),
        (http_probe(failure_threshold=0), "failure_threshold", "greater than or equal to 1"),
        # Numbers are strict: true is not 1, 60.0 and "60" are not 60.
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "h", "port": True}},
            "tcp.port",
            "valid integer",
        ),
        (
            {"name": "db", "kind": "tcp", "tcp": {"host": "h", "port": "80"}},
            "tcp.port",
            "valid integer",
        ),
        (http_probe(failure_threshold=True), "failure_threshold", "valid integer"),
        (http_probe(success_threshold="1"), "success_threshold", "valid integer"),
        (http_probe(interval_seconds=60.0), "interval_seconds", "valid integer"),
        (http_probe(interval_seconds="60"), "interval_seconds", "valid integer"),
        (http_probe(timeout_seconds=True), "timeout_seconds", "valid integer"),
        (
            http_probe(http={"url": "http://x/", "latency_threshold_ms": True}),
            "http.latency_threshold_ms",
            "valid integer",
        ),
        (
            http_probe(http={"url": "http://x/", "tls_expiry_days": 14.0}),
            "http.tls_expiry_days",
            "valid integer",
        ),
        (
            http_probe(http={"url": "http://x/", "expected_status": ["200"]}),
            "http.expected_status.0",
            "valid integer",
        ),
        (
            {"name": "ns", "kind": "dns", "dns": {"name": "x.test", "nameserver_port": True}},
            "dns.nameserver_port",
            "valid integer",
        ),
        # Switches too: "false" and 0 are not false.
        (http_probe(enabled="false"), "enabled", "valid boolean"),
        (http_probe(enabled=0), "enabled", "valid boolean"),
        (
            http_probe(http={"url": "http://x/", "verify_tls": "no"}),
            "http.verify_tls",
            "valid boolean",
        ),
        (
            http_probe(http={"url": "http://x/", "follow_redirects": 1}),
            "http.follow_redirects",
            "valid boolean",
        ),
        (
            http_probe(
                http={
                    "url": "http://x/",
                    "conditions": [{"type": "jsonpath", "expression": "$.a", "exists": "yes"}],
                }
            ),
            "http.conditions.0.jsonpath.exists",
            "valid boolean",
        ),
    ],
)
def test_bad_definitions_are_refused_and_nothing_is_stored(
    admin: ApiUser, factory: Factory, body: dict[str, Any], field: str, words: str
) -> None:
    before = row_counts(factory.runtime)
    answer = admin.post("/api/v1/probes", json=body)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert problem["field"] == field, problem
    assert words in problem["detail"], problem
    messages = [problem["detail"], *(error["message"] for error in problem["errors"])]
    assert not [m for m in messages if "Value error" in m], "pydantic's prefix leaked"
    assert row_counts(factory.runtime) == before


def test_unknown_service_is_refused(admin: ApiUser, factory: Factory) -> None:
    before = row_counts(factory.runtime)
    answer = admin.post("/api/v1/probes", json=http_probe(service="nowhere"))
    assert answer.status_code == 422
    assert answer.json()["field"] == "service"
    assert "no service named 'nowhere'" in answer.json()["detail"]
    assert row_counts(factory.runtime) == before


def test_roles_create_read_replace_pause_delete(admin: ApiUser, factory: Factory) -> None:
    service = factory.service("api")
    viewer = factory.user(Role.viewer)
    responder = factory.user(Role.responder)
    body = http_probe(
        service=service,
        http={"url": "http://127.0.0.1:9/ok", "headers": {"Authorization": "Bearer s3cret"}},
    )
    assert responder.post("/api/v1/probes", json=body).status_code == 403
    created = admin.post("/api/v1/probes", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["state"] == "unknown"
    assert shown["service"] == "api"
    assert shown["http"]["headers"] == {"Authorization": "Bearer s3cret"}
    assert shown["failure_threshold"] == 2 and shown["severity"] == "SEV2"
    assert admin.post("/api/v1/probes", json=body).status_code == 409

    # Header values often hold credentials: only admins see them.
    assert viewer.get("/api/v1/probes/home").json()["http"]["headers"] == {
        "Authorization": "<redacted>"
    }
    assert responder.get("/api/v1/probes").json()[0]["http"]["headers"] == {
        "Authorization": "<redacted>"
    }
    assert viewer.post("/api/v1/probes/home/run").status_code == 403

    replaced = admin.put(
        "/api/v1/probes/home",
        json=http_probe(http={"url": "http://127.0.0.1:9/v2"}, interval_seconds=30),
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["http"]["url"] == "http://127.0.0.1:9/v2"
    assert replaced.json()["service"] is None
    renamed = admin.put("/api/v1/probes/home", json=http_probe(name="other"))
    assert renamed.status_code == 422 and renamed.json()["field"] == "name"
    assert admin.put("/api/v1/probes/absent", json=http_probe(name="absent")).status_code == 404

    paused = admin.patch("/api/v1/probes/home", json={"enabled": False})
    assert paused.json()["enabled"] is False
    assert admin.delete("/api/v1/probes/home").status_code == 204
    assert admin.get("/api/v1/probes/home").status_code == 404
    assert admin.post("/api/v1/probes/home/run").status_code == 404


def test_results_query_refuses_naive_since(admin: ApiUser) -> None:
    admin.post("/api/v1/probes", json=http_probe())
    naive = admin.get("/api/v1/probes/home/results", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["field"] == "since"
    ok = admin.get("/api/v1/probes/home/results", params={"since": "2026-01-01T00:00:00Z"})
    assert ok.status_code == 200 and ok.json() == []
    assert admin.get("/api/v1/probes/home/rollups").json() == []


def test_apply_probes_creates_updates_and_prunes(factory: Factory) -> None:
    factory.service("api")
    first = [
        ProbeCreate.model_validate(http_probe("home", service="api")),
        ProbeCreate.model_validate(
            {"name": "db", "kind": "tcp", "tcp": {"host": "db", "port": 5432}}
        ),
    ]
    with factory.runtime.transaction() as session:
        summary = probes.apply_probes(session, SYSTEM, first)
    assert (summary.created, summary.updated, summary.unchanged) == (["home", "db"], [], [])

    second = [
        ProbeCreate.model_validate(http_probe("home", service="api")),
        ProbeCreate.model_validate(
            {"name": "db", "kind": "tcp", "tcp": {"host": "db", "port": 6432}}
        ),
    ]
    with factory.runtime.transaction() as session:
        summary = probes.apply_probes(session, SYSTEM, second[1:], prune=True)
    assert (summary.updated, summary.deleted) == (["db"], ["home"])
    with factory.runtime.read() as session:
        assert [p.name for p in probes.list_probes(session)] == ["db"]
        assert probes.get_probe(session, "db").settings["port"] == 6432

    with factory.runtime.transaction() as session:
        summary = probes.apply_probes(session, SYSTEM, second[1:])
    assert summary.unchanged == ["db"]

    before = row_counts(factory.runtime)
    bad = [
        ProbeCreate.model_validate(http_probe("new-one")),
        ProbeCreate.model_validate(http_probe("broken", service="missing")),
    ]
    with pytest.raises(InvalidInput) as refused, factory.runtime.transaction() as session:
        probes.apply_probes(session, SYSTEM, bad)
    assert refused.value.field == "probes[1].service"
    assert row_counts(factory.runtime) == before


@pytest.mark.parametrize("name", ["_sip._tcp.example.org", "*.example.org", "example.org."])
def test_dns_names_dnspython_parses_are_accepted(admin: ApiUser, name: str) -> None:
    body = {"name": "ns", "kind": "dns", "dns": {"name": name, "nameserver": "2001:db8::53"}}
    answer = admin.post("/api/v1/probes", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["dns"]["name"] == name


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "::1", "2001:db8::7", "localhost", "db.internal", "db.internal.", "my_db"]
)
def test_tcp_hosts_that_resolve_or_connect_are_accepted(admin: ApiUser, host: str) -> None:
    body = {"name": "db", "kind": "tcp", "tcp": {"host": host, "port": 5432}}
    answer = admin.post("/api/v1/probes", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["tcp"]["host"] == host


def _tcp_probe(name: str, service: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "tcp",
        "service": service,
        "tcp": {"host": "127.0.0.1", "port": 9},
    }


def test_a_probe_measuring_an_sla_target_cannot_move_to_another_service(
    admin: ApiUser, factory: Factory
) -> None:
    """put_target refuses a probe of another service, so a probe does not move away from the
    targets it measures; a probe of no service may measure any, so it may always go there."""
    factory.service("checkout")
    factory.service("payments")
    assert admin.post("/api/v1/probes", json=_tcp_probe("db", "checkout")).status_code == 201
    target = {"service": "checkout", "kind": "uptime", "target_percent": 99.5, "probe": "db"}
    assert admin.put("/api/v1/sla/targets", json=target).status_code == 200
    before = row_counts(factory.runtime)
    shown = admin.get("/api/v1/probes/db").json()

    refused = admin.put("/api/v1/probes/db", json=_tcp_probe("db", "payments"))
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "service"
    assert refused.json()["detail"] == (
        "probe db measures the uptime SLA target of service checkout; "
        "move or delete that target first"
    )
    assert row_counts(factory.runtime) == before
    assert admin.get("/api/v1/probes/db").json() == shown

    # To no service and back is allowed: a probe of no service may measure any target.
    unowned = admin.put("/api/v1/probes/db", json=_tcp_probe("db", None))
    assert unowned.status_code == 200, unowned.text
    assert unowned.json()["service"] is None
    back = admin.put("/api/v1/probes/db", json=_tcp_probe("db", "checkout"))
    assert back.status_code == 200, back.text
    assert back.json()["service"] == "checkout"

    # A target naming a probe that is gone (deleted before deletes were refused while a
    # target names it): a new probe of that name in another service would measure it
    # unnoticed. Made as such a database holds it, past the service that now refuses it.
    with factory.runtime.transaction() as session:
        session.execute(delete(Probe).where(Probe.name == "db"))
    before = row_counts(factory.runtime)
    made_again = admin.post("/api/v1/probes", json=_tcp_probe("db", "payments"))
    assert made_again.status_code == 409, made_again.text
    assert [made_again.json()[k] for k in ("field", "detail")] == [
        refused.json()[k] for k in ("field", "detail")
    ]
    assert row_counts(factory.runtime) == before
    assert admin.post("/api/v1/probes", json=_tcp_probe("db", "checkout")).status_code == 201


def test_a_probe_is_not_deleted_while_a_target_or_an_slo_measures_it(
    admin: ApiUser, factory: Factory
) -> None:
    """The delete went through: the target's report and the SLO's evaluations then read no
    probe, without a word, until a new probe of that name measured them unnoticed."""
    factory.service("checkout")
    assert admin.post("/api/v1/probes", json=_tcp_probe("db", "checkout")).status_code == 201
    target = {"service": "checkout", "kind": "uptime", "target_percent": 99.5, "probe": "db"}
    made = admin.put("/api/v1/sla/targets", json=target)
    assert made.status_code == 200, made.text
    slo = {
        "name": "checkout-db",
        "service": "checkout",
        "objective_percent": 99,
        "sli": {"kind": "probe", "probe": "db"},
    }
    assert admin.post("/api/v1/slos", json=slo).status_code == 201
    ran = admin.post("/api/v1/probes/db/run")  # a result to keep when the delete is refused
    assert (ran.status_code, ran.json()["ok"]) == (200, False), ran.text
    before = row_counts(factory.runtime)
    shown = admin.get("/api/v1/probes/db").json()

    refused = admin.delete("/api/v1/probes/db")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["field"] == "name"
    assert problem["references"] == [
        "the uptime SLA target of service 'checkout'",
        "SLO 'checkout-db'",
    ]
    assert problem["detail"] == (
        "probe 'db' is still referred to by the uptime SLA target of service 'checkout', "
        "SLO 'checkout-db'; change or delete those first"
    )
    assert row_counts(factory.runtime) == before
    assert admin.get("/api/v1/probes/db").json() == shown

    assert admin.delete(f"/api/v1/sla/targets/{made.json()['id']}").status_code == 204
    refused = admin.delete("/api/v1/probes/db")
    assert refused.status_code == 409, refused.text
    assert refused.json()["references"] == ["SLO 'checkout-db'"]
    assert admin.delete("/api/v1/slos/checkout-db").status_code == 204
    assert admin.delete("/api/v1/probes/db").status_code == 204
    assert admin.get("/api/v1/probes/db").status_code == 404


def test_a_probe_of_no_service_measuring_two_services_cannot_join_either(
    admin: ApiUser, factory: Factory
) -> None:
    factory.service("checkout")
    factory.service("payments")
    assert admin.post("/api/v1/probes", json=_tcp_probe("edge", None)).status_code == 201
    for service in ("checkout", "payments"):
        target = {"service": service, "kind": "uptime", "target_percent": 99, "probe": "edge"}
        assert admin.put("/api/v1/sla/targets", json=target).status_code == 200

    refused = admin.put("/api/v1/probes/edge", json=_tcp_probe("edge", "checkout"))
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "service"
    assert refused.json()["detail"] == (
        "probe edge measures the uptime SLA target of service payments; "
        "move or delete that target first"
    )
    assert admin.get("/api/v1/probes/edge").json()["service"] is None


def test_apply_refuses_moving_a_probe_that_measures_an_sla_target(
    admin: ApiUser, factory: Factory
) -> None:
    """Checked with the rest of the file, before the first probe is written."""
    factory.service("checkout")
    factory.service("payments")
    assert admin.post("/api/v1/probes", json=_tcp_probe("db", "checkout")).status_code == 201
    target = {"service": "checkout", "kind": "latency", "target_percent": 99, "probe": "db"}
    made = admin.put("/api/v1/sla/targets", json={**target, "latency_threshold_ms": 300})
    assert made.status_code == 200, made.text
    before = row_counts(factory.runtime)
    shown = admin.get("/api/v1/probes/db").json()
    listed = [
        ProbeCreate.model_validate(_tcp_probe("new-one", "payments")),
        ProbeCreate.model_validate(_tcp_probe("db", "payments")),
    ]
    with pytest.raises(Conflict) as refused, factory.runtime.transaction() as session:
        probes.apply_probes(session, SYSTEM, listed)
    assert refused.value.field == "probes[1].service"
    assert str(refused.value) == (
        "probe db measures the latency SLA target of service checkout; "
        "move or delete that target first"
    )
    assert row_counts(factory.runtime) == before
    assert admin.get("/api/v1/probes/db").json() == shown

    content = (
        "probes:\n  - {name: db, kind: tcp, service: payments, tcp: {host: 127.0.0.1, port: 9}}\n"
    )
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 409, answer.text
    assert answer.json()["field"] == "probes[0].service"
    assert admin.get("/api/v1/probes/db").json() == shown
