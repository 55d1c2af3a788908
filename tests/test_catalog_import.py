"""Catalog import in firetower's format, over the service function and the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from firetower.auth.schemas import Role
from firetower.catalog import importer
from firetower.errors import Conflict, InvalidInput, NotFound
from tests.factories import SYSTEM, row_counts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def snapshot(user) -> dict:
    """Everything the catalog holds, as the API shows it."""
    return {
        "teams": [(t["name"], t["description"]) for t in user.get("/api/v1/teams").json()],
        "services": [
            {k: v for k, v in s.items() if k != "id"} for s in user.get("/api/v1/services").json()
        ],
        "dependencies": user.get("/api/v1/dependencies").json(),
        "features": user.get("/api/v1/features").json(),
        "customers": user.get("/api/v1/customers").json(),
    }


SMALL = """
catalog:
  teams:
    - name: web
      description: Web team
  services:
    - name: front
      team: web
      tier: 1
      estimated_users: 500
      depends_on: [back]
    - name: back
      owner: someone@example.com
  features:
    - name: Home page
      services: [front]
  customers:
    - name: Acme
      services: [back]
"""


def test_import_the_catalog_block_over_api(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    answer = admin.post("/api/v1/catalog/import", json={"format": "auto", "content": SMALL})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "format": "firetower",
        "teams": 1,
        "services": 2,
        "dependencies": 1,
        "features": 1,
        "customers": 1,
        "skipped": 0,
        "skipped_kinds": {},
    }
    front = admin.get("/api/v1/services/front").json()
    assert (front["team"], front["tier"], front["depends_on"]) == ("web", 1, ["back"])
    assert admin.get("/api/v1/services/back").json()["owner"] == "someone@example.com"
    assert admin.get("/api/v1/features").json()[0]["services"] == ["front"]


def test_the_catalog_block_is_also_read_at_the_top_level(factory):
    responder = factory.user()
    top_level = "services:\n  - name: lonely\n    tier: 2\n"
    answer = responder.post(
        "/api/v1/catalog/import", json={"format": "firetower", "content": top_level}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["services"] == 1
    assert responder.get("/api/v1/services/lonely").json()["tier"] == 2


def test_a_whole_firetower_yaml_imports_its_catalog_and_skips_the_rest(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    content = "settings:\n  log_level: info\n" + SMALL
    answer = admin.post("/api/v1/catalog/import", json={"content": content})
    assert answer.status_code == 200, answer.text
    assert answer.json()["skipped"] == 1
    assert answer.json()["services"] == 2


def test_reimporting_is_idempotent(factory):
    responder = factory.user()
    first = responder.post("/api/v1/catalog/import", json={"content": SMALL}).json()
    after_first = snapshot(responder)
    second = responder.post("/api/v1/catalog/import", json={"content": SMALL}).json()
    assert second == first
    assert snapshot(responder) == after_first


def test_omitted_fields_keep_their_value_and_depends_on_replaces(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    admin.post("/api/v1/catalog/import", json={"content": SMALL})
    admin.patch("/api/v1/services/back", json={"description": "set in the console"})
    factory.service("extra")
    changed = """
services:
  - name: front
    depends_on: [extra]
  - name: back
    tier: 2
"""
    assert admin.post("/api/v1/catalog/import", json={"content": changed}).status_code == 200
    front = admin.get("/api/v1/services/front").json()
    assert (front["tier"], front["team"], front["estimated_users"]) == (1, "web", 500)
    assert front["depends_on"] == ["extra"]
    back = admin.get("/api/v1/services/back").json()
    assert (back["tier"], back["description"]) == (2, "set in the console")


def test_reversing_edges_in_one_document_is_not_a_cycle(factory):
    responder = factory.user()
    responder.post("/api/v1/catalog/import", json={"content": SMALL})
    flipped = (
        "services:\n  - name: front\n    depends_on: []\n  - name: back\n    depends_on: [front]\n"
    )
    answer = responder.post("/api/v1/catalog/import", json={"content": flipped})
    assert answer.status_code == 200, answer.text
    assert responder.get("/api/v1/dependencies").json() == [
        {"service": "back", "depends_on": "front"}
    ]


BAD_DOCUMENTS = [
    ("services: [{name: a, depends_on: [b]}, {name: b, depends_on: [a]}]", 409, "a → b → a"),
    ("services: [{name: a, depends_on: [ghost]}]", 404, "'ghost'"),
    ("services: [{name: a, team: nobody}]", 404, "'nobody'"),
    ("services: [{name: a, depends_on: [a]}]", 422, "itself"),
    ("services: [{name: a}, {name: a}]", 422, "'a'"),
    ("services: [{name: a, tier: 7}]", 422, "catalog.services[0].tier"),
    ("services: [{name: a, colour: red}]", 422, "catalog.services[0].colour"),
    ("features: [{name: F, services: [a, nope]}]\nservices: [{name: a}]", 404, "'nope'"),
    ("catalog: [1, 2]", 422, "catalog must be a mapping"),
    ("services: [{name: a}\n", 422, "document 1, line"),
    ("services: []\n---\nservices: []\n", 422, "one YAML document"),
    ("- a\n- b\n", 422, "mapping"),
    ("teams: [{name: Bad Team}]", 422, "catalog.teams[0].name"),
]


@pytest.mark.parametrize(("content", "status", "named"), BAD_DOCUMENTS)
def test_a_bad_document_changes_nothing(factory, content, status, named):
    responder = factory.user()
    responder.post("/api/v1/catalog/import", json={"content": SMALL})
    before = snapshot(responder)
    # Good entries first: they must not be written when a later part is refused.
    good_first = "teams: [{name: newteam}]\n" if content.startswith("services") else ""
    answer = responder.post(
        "/api/v1/catalog/import", json={"format": "firetower", "content": good_first + content}
    )
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]
    assert snapshot(responder) == before


def test_a_cycle_through_existing_edges_is_refused(runtime, factory):
    factory.service("db")
    factory.service("app", depends_on=["db"])
    with pytest.raises(Conflict) as refused, runtime.transaction() as session:
        importer.import_catalog(
            session, SYSTEM, "services: [{name: db, depends_on: [app]}]", "firetower"
        )
    assert "db → app → db" in refused.value.detail
    with runtime.read() as session:
        from firetower.catalog import service

        assert [(d.service, d.depends_on) for d in service.list_dependencies(session)] == [
            ("app", "db")
        ]


def test_import_needs_the_responder_role(factory):
    viewer = factory.user(Role.viewer)
    answer = viewer.post("/api/v1/catalog/import", json={"content": SMALL})
    assert answer.status_code == 403
    assert snapshot(viewer)["services"] == []


def test_import_body_is_checked(factory):
    responder = factory.user()
    wrong_format = responder.post("/api/v1/catalog/import", json={"format": "xml", "content": "a"})
    assert wrong_format.status_code == 422 and wrong_format.json()["field"] == "format"
    huge = responder.post("/api/v1/catalog/import", json={"content": "#" * 1_000_001})
    assert huge.status_code in (413, 422)
    empty = responder.post("/api/v1/catalog/import", json={"content": ""})
    assert empty.status_code == 422 and empty.json()["field"] == "content"


def test_yaml_that_expands_enormously_is_refused(runtime):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(InvalidInput) as refused, runtime.transaction() as session:
        importer.import_catalog(session, SYSTEM, "\n".join(lines), "firetower")
    assert "expands" in refused.value.detail


def test_every_service_function_error_is_a_domain_error(runtime):
    with pytest.raises(NotFound), runtime.transaction() as session:
        importer.import_catalog(
            session, SYSTEM, "customers: [{name: Acme, services: [gone]}]", "auto"
        )


def test_a_responder_import_cannot_create_or_change_teams(factory, runtime):
    responder = factory.user()
    before = row_counts(runtime)
    body = {
        "format": "firetower",
        "content": "teams:\n  - name: payments\nservices:\n  - name: billing\n    team: payments\n",
    }
    refused = responder.post("/api/v1/catalog/import", json=body)
    assert refused.status_code == 403, refused.text
    assert row_counts(runtime) == before
    admin = factory.user(Role.admin)
    assert admin.post("/api/v1/catalog/import", json=body).status_code == 200
    # Naming a team that exists is fine for a responder; describing it anew is not.
    again = {"format": "firetower", "content": "services:\n  - name: ledger\n    team: payments\n"}
    assert responder.post("/api/v1/catalog/import", json=again).status_code == 200
    renamed = {
        "format": "firetower",
        "content": "teams:\n  - name: payments\n    description: new\n",
    }
    assert responder.post("/api/v1/catalog/import", json=renamed).status_code == 403
