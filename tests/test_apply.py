"""firetower.yaml apply, and every example file under examples/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firetower.apply import apply_config
from firetower.auth.schemas import Role
from firetower.errors import Conflict, InvalidInput, PermissionDenied
from firetower.settings import load_settings
from tests.factories import SYSTEM
from tests.test_catalog_import import snapshot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FIRETOWER_YAML = EXAMPLES / "firetower.yaml"
BACKSTAGE_YAML = EXAMPLES / "backstage" / "catalog-info.yaml"


def test_apply_the_example_firetower_yaml_over_api(factory):
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/apply", json={"content": FIRETOWER_YAML.read_text()})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["applied"] == ["catalog"]
    assert report["skipped"] == ["settings"]
    assert report["catalog"]["services"] == 8
    assert report["catalog"]["features"] == 3
    radius = admin.get("/api/v1/blast-radius", params={"service": "feed-cache"}).json()
    assert radius["impacted"] == ["api-gateway", "feed-cache", "feed-ranker", "news-feed"]
    assert radius["features"] == ["News feed"]
    assert radius["customers"] == ["Acme Media Group"]
    assert radius["users_estimate"] == 120000
    state = snapshot(admin)
    again = admin.post("/api/v1/apply", json={"content": FIRETOWER_YAML.read_text()})
    assert again.json() == report
    assert snapshot(admin) == state


def test_the_example_settings_block_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("FIRETOWER_CONFIG", str(FIRETOWER_YAML))
    assert load_settings(env="development", home=tmp_path).log_format == "json"


def test_import_the_example_backstage_file(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    content = BACKSTAGE_YAML.read_text()
    answer = admin.post("/api/v1/catalog/import", json={"format": "auto", "content": content})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "format": "backstage",
        "teams": 2,
        "services": 5,
        "dependencies": 5,
        "features": 1,
        "customers": 0,
        "skipped": 2,
        "skipped_kinds": {"Location": 1, "User": 1},
    }
    feed = admin.get("/api/v1/services/feed-service").json()
    assert feed["depends_on"] == ["articles-db", "feed-cache", "ranking-model"]
    assert feed["runbook_url"] == "https://runbooks.example.com/feed-service"
    radius = admin.get("/api/v1/blast-radius", params={"service": "feed-cache"}).json()
    assert radius["impacted"] == ["feed-cache", "feed-service", "ranking-model", "web-gateway"]
    assert radius["features"] == ["news-feed"]


def test_the_example_catalog_block_also_imports(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    content = FIRETOWER_YAML.read_text()
    answer = admin.post("/api/v1/catalog/import", json={"content": content})
    assert answer.status_code == 200, answer.text
    assert answer.json()["skipped"] == 1  # the settings block


def test_apply_needs_the_admin_role(factory):
    responder = factory.user(Role.responder)
    answer = responder.post("/api/v1/apply", json={"content": FIRETOWER_YAML.read_text()})
    assert answer.status_code == 403
    assert snapshot(responder)["services"] == []


def test_an_unknown_top_level_key_is_refused_and_nothing_written(factory):
    admin = factory.user(Role.admin)
    content = FIRETOWER_YAML.read_text() + "\nroutes:\n  - match: {}\n"
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 422
    body = answer.json()
    assert body["field"] == "routes"
    assert "'routes'" in body["detail"]
    assert "settings, catalog, routing, inhibit_rules, probes, slos" in body["detail"]
    assert snapshot(admin)["services"] == []


@pytest.mark.parametrize(
    ("content", "error", "named"),
    [
        (
            "catalog:\n  services: [{name: a, depends_on: [b]}, {name: b, depends_on: [a]}]",
            Conflict,
            "a → b → a",
        ),
        ("catalog:\n  services: [{name: a, tier: 0}]", InvalidInput, "catalog.services[0].tier"),
        ("- not\n- a mapping\n", InvalidInput, "mapping"),
        ("catalog: {services: [", InvalidInput, "invalid YAML"),
    ],
)
def test_a_bad_firetower_yaml_changes_nothing(runtime, content, error, named):
    with pytest.raises(error) as err, runtime.transaction() as session:
        apply_config(session, SYSTEM, content)
    assert named in str(err.value)
    with runtime.read() as session:
        from firetower.catalog import service

        assert service.list_services(session) == []


def test_apply_config_checks_the_actor(runtime, factory):
    responder = factory.user(Role.responder)
    with pytest.raises(PermissionDenied), runtime.transaction() as session:
        apply_config(session, responder.actor, "catalog: {}")


def test_an_empty_file_applies_nothing(runtime):
    with runtime.transaction() as session:
        assert apply_config(session, SYSTEM, "# nothing yet\n") == {
            "applied": [],
            "skipped": [],
            "catalog": None,
            "routing": None,
            "inhibit_rules": None,
            "probes": None,
            "slos": None,
        }


def test_the_yaml_examples_in_the_catalog_docs_apply(factory):
    admin = factory.user(Role.admin)
    docs = (EXAMPLES.parent / "docs" / "catalog.md").read_text()
    blocks = [part.split("```", 1)[0] for part in docs.split("```yaml\n")[1:]]
    assert blocks, "docs/catalog.md has yaml examples"
    for block in blocks:
        answer = admin.post("/api/v1/apply", json={"content": block})
        assert answer.status_code == 200, answer.text
    assert admin.get("/api/v1/services/news-feed").json()["depends_on"] == [
        "feed-cache",
        "feed-ranker",
    ]


MONITORS_YAML = """
catalog:
  services:
    - name: payments
probes:
  - name: payments-db
    kind: tcp
    service: payments
    interval_seconds: 15
    timeout_seconds: 3
    tcp: {host: 127.0.0.1, port: 5432}
slos:
  - name: payments-db-availability
    service: payments
    objective_percent: 99.9
    sli: {kind: probe, probe: payments-db}
"""


def test_probes_and_slos_apply_from_firetower_yaml(factory):
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/apply", json={"content": MONITORS_YAML})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["applied"] == ["catalog", "probes", "slos"]
    assert report["probes"]["created"] == ["payments-db"]
    assert report["slos"]["created"] == ["payments-db-availability"]
    assert admin.get("/api/v1/probes/payments-db").json()["tcp"]["port"] == 5432
    slo = admin.get("/api/v1/slos/payments-db-availability").json()
    assert slo["sli"]["probe"] == "payments-db"

    again = admin.post("/api/v1/apply", json={"content": MONITORS_YAML}).json()
    assert again["probes"]["unchanged"] == ["payments-db"]


def test_a_bad_probe_in_firetower_yaml_changes_nothing(factory):
    admin = factory.user(Role.admin)
    content = MONITORS_YAML.replace("port: 5432", "port: 70000")
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 422
    assert answer.json()["field"] == "probes[0].tcp.port"
    assert snapshot(admin)["services"] == []
    assert admin.get("/api/v1/probes").json() == []


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("port: 5432", "port: true", "probes[0].tcp.port"),
        ("port: 5432", "port: yes", "probes[0].tcp.port"),  # YAML 1.1: yes is true
        ("port: 5432", "port: '5432'", "probes[0].tcp.port"),
        ("interval_seconds: 15", "interval_seconds: 15.0", "probes[0].interval_seconds"),
        ("timeout_seconds: 3", "timeout_seconds: '3'", "probes[0].timeout_seconds"),
        (
            "timeout_seconds: 3",
            "timeout_seconds: 3\n    failure_threshold: true",
            "probes[0].failure_threshold",
        ),
    ],
)
def test_probe_numbers_in_firetower_yaml_are_strict(factory, old, new, where):
    """true, 15.0 or '15' is not read as a number: 422 naming the field, nothing written."""
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/apply", json={"content": MONITORS_YAML.replace(old, new)})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == where
    assert answer.json()["detail"] == f"{where}: Input should be a valid integer"
    assert snapshot(admin)["services"] == []
    assert admin.get("/api/v1/probes").json() == []


def test_yaml_integers_fill_every_probe_number(factory):
    """YAML integers load as ints, so strict numbers take them (and defaults stay ints)."""
    admin = factory.user(Role.admin)
    content = """
probes:
  - name: web
    kind: http
    interval_seconds: 30
    timeout_seconds: 5
    failure_threshold: 3
    success_threshold: 2
    http:
      url: https://example.org/
      expected_status: [200, 204]
      latency_threshold_ms: 800
      tls_expiry_days: 0
  - name: ns
    kind: dns
    dns: {name: example.org, nameserver: 127.0.0.1, nameserver_port: 5353}
"""
    answer = admin.post("/api/v1/apply", json={"content": content})
    assert answer.status_code == 200, answer.text
    web = admin.get("/api/v1/probes/web").json()
    assert [web[k] for k in ("interval_seconds", "timeout_seconds")] == [30, 5]
    assert [web[k] for k in ("failure_threshold", "success_threshold")] == [3, 2]
    assert web["http"]["expected_status"] == [200, 204]
    assert (web["http"]["latency_threshold_ms"], web["http"]["tls_expiry_days"]) == (800, 0)
    assert admin.get("/api/v1/probes/ns").json()["dns"]["nameserver_port"] == 5353
    assert admin.post("/api/v1/apply", json={"content": content}).json()["probes"]["unchanged"] == [
        "web",
        "ns",
    ]


@pytest.mark.parametrize(
    ("block", "where"),
    [
        # Refused by the database check (no such service), after the shape passed.
        (
            "probes:\n  - {name: a, kind: tcp, tcp: {host: h, port: 1}}\n"
            "  - {name: b, kind: tcp, service: nowhere, tcp: {host: h, port: 1}}\n",
            "probes[1].service",
        ),
        # Refused by the shape.
        ("probes:\n  - {name: a, kind: http, http: {url: 'ftp://h'}}\n", "probes[0].http.url"),
        (
            "slos:\n  - {name: s, service: nowhere, objective_percent: 99,"
            " sli: {kind: probe, probe: p}}\n",
            "slos[0].service",
        ),
        ("routing:\n  - {name: r, service: nowhere}\n", "routing[0].service"),
    ],
)
def test_every_apply_error_names_its_place_in_the_file_alike(factory, block, where):
    admin = factory.user(Role.admin)
    answer = admin.post("/api/v1/apply", json={"content": "catalog: {}\n" + block})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == where
    dotted = re.sub(r"\[(\d+)\]", r".\1", where)  # probes[1].service → probes.1.service
    assert dotted not in answer.json()["detail"]
    assert admin.get("/api/v1/probes").json() == []
