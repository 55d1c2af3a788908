"""Backstage catalog-info.yaml import: one test per mapping rule, and refusals."""

from __future__ import annotations

import textwrap

import pytest

from firetower.auth.schemas import Role
from tests.test_catalog_import import snapshot


def entity(kind: str, name: str, body: str = "", **metadata: str) -> str:
    meta = "".join(f"\n  {k}: {v}" for k, v in metadata.items())
    text = f"apiVersion: backstage.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}{meta}\n"
    return text + textwrap.dedent(body)


def catalog(*entities: str) -> str:
    return "---\n".join(entities)


def do_import(user, content: str, format: str = "auto"):
    return user.post("/api/v1/catalog/import", json={"format": format, "content": content})


def test_group_becomes_a_team(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    content = catalog(
        entity("Group", "sre", "spec:\n  type: team\n", description="Site reliability"),
        entity("Group", "dba", "spec:\n  type: team\n  profile:\n    displayName: Databases\n"),
    )
    report = do_import(admin, content)
    assert report.status_code == 200, report.text
    assert (report.json()["format"], report.json()["teams"]) == ("backstage", 2)
    teams = {t["name"]: t["description"] for t in admin.get("/api/v1/teams").json()}
    assert teams == {"dba": "Databases", "sre": "Site reliability"}


def test_component_becomes_a_service_with_owner_tier_users_and_runbook(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    factory.user()  # another user: nothing should depend on who imports
    content = catalog(
        entity("Group", "payments-team"),
        entity(
            "Component",
            "checkout",
            """\
            spec:
              type: service
              owner: group:default/payments-team
            """,
            description="Takes the money",
            annotations='{"firetower.io/tier": "1", "firetower.io/estimated-users": "4200"}',
            links="[{title: Dashboard, url: 'https://d.example'}, "
            "{title: Runbook, url: 'https://rb.example/checkout'}]",
        ),
        entity(
            "Component",
            "basket",
            "spec:\n  owner: payments-team\n",
            annotations='{"firetower.io/runbook-url": "https://rb.example/basket"}',
            links="[{title: runbook, url: 'https://ignored.example'}]",
        ),
        entity("Component", "ledger", "spec:\n  owner: group:payments-team\n"),
        entity("Component", "mailer", "spec:\n  owner: user:default/jane\n"),
        entity("Component", "pdf", "spec:\n  owner: no-such-group\n"),
    )
    assert do_import(admin, content).status_code == 200
    checkout = admin.get("/api/v1/services/checkout").json()
    assert checkout["team"] == "payments-team"
    assert checkout["owner"] == ""
    assert checkout["description"] == "Takes the money"
    assert (checkout["tier"], checkout["estimated_users"]) == (1, 4200)
    assert checkout["runbook_url"] == "https://rb.example/checkout"
    basket = admin.get("/api/v1/services/basket").json()
    assert basket["team"] == "payments-team"
    assert basket["runbook_url"] == "https://rb.example/basket"  # the annotation wins
    assert basket["tier"] == 3  # no annotation: the default
    assert admin.get("/api/v1/services/ledger").json()["team"] == "payments-team"
    mailer = admin.get("/api/v1/services/mailer").json()
    assert (mailer["team"], mailer["owner"]) == (None, "user:default/jane")
    pdf = admin.get("/api/v1/services/pdf").json()
    assert (pdf["team"], pdf["owner"]) == (None, "no-such-group")


def test_owner_resolves_to_a_team_already_in_the_catalog(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    assert do_import(admin, "teams: [{name: storage}]").status_code == 200
    content = entity("Component", "blobs", "spec:\n  owner: group:storage\n")
    assert do_import(admin, content).status_code == 200
    assert admin.get("/api/v1/services/blobs").json()["team"] == "storage"


def test_resources_and_depends_on_refs_become_dependencies(factory):
    responder = factory.user()
    factory.service("legacy-ldap")
    content = catalog(
        entity("Resource", "orders-db", "spec:\n  type: database\n"),
        entity("Resource", "queue", "spec:\n  type: queue\n  dependsOn: [orders-db]\n"),
        entity("Component", "worker", "spec:\n  dependsOn: [component:api]\n"),
        entity(
            "Component",
            "api",
            "spec:\n  dependsOn: ['resource:default/orders-db', queue, legacy-ldap]\n",
        ),
    )
    report = do_import(responder, content)
    assert report.status_code == 200, report.text
    assert report.json()["services"] == 4
    assert responder.get("/api/v1/dependencies").json() == [
        {"service": "api", "depends_on": "legacy-ldap"},
        {"service": "api", "depends_on": "orders-db"},
        {"service": "api", "depends_on": "queue"},
        {"service": "queue", "depends_on": "orders-db"},
        {"service": "worker", "depends_on": "api"},
    ]


def test_consuming_an_api_depends_on_every_provider(factory):
    responder = factory.user()
    content = catalog(
        entity("API", "search-api", "spec:\n  type: openapi\n"),
        entity("API", "unused-api"),
        entity("Component", "search-eu", "spec:\n  providesApis: [search-api]\n"),
        entity("Component", "search-us", "spec:\n  providesApis: ['api:default/search-api']\n"),
        entity(
            "Component",
            "both",
            "spec:\n  providesApis: [search-api]\n  consumesApis: [search-api]\n",
        ),
        entity("Component", "web", "spec:\n  consumesApis: ['api:search-api']\n"),
    )
    report = do_import(responder, content)
    assert report.status_code == 200, report.text
    assert report.json()["services"] == 4  # APIs are no node of their own
    assert report.json()["skipped"] == 0
    edges = [(d["service"], d["depends_on"]) for d in responder.get("/api/v1/dependencies").json()]
    assert edges == [
        ("both", "search-eu"),
        ("both", "search-us"),
        ("web", "both"),
        ("web", "search-eu"),
        ("web", "search-us"),
    ]


def test_a_system_becomes_a_feature_of_its_components(factory):
    responder = factory.user()
    content = catalog(
        entity("System", "storefront", description="What shoppers use"),
        entity("System", "empty"),
        entity("Component", "shop-web", "spec:\n  system: storefront\n"),
        entity("Component", "shop-api", "spec:\n  system: 'system:default/storefront'\n"),
        entity("Component", "batch"),
    )
    report = do_import(responder, content)
    assert report.status_code == 200, report.text
    assert report.json()["features"] == 2
    assert responder.get("/api/v1/features").json() == [
        {"name": "empty", "description": "", "services": []},
        {
            "name": "storefront",
            "description": "What shoppers use",
            "services": ["shop-api", "shop-web"],
        },
    ]


def test_a_system_already_in_the_catalog_gains_the_files_components(factory):
    responder = factory.user()
    factory.service("old-web")
    responder.put("/api/v1/features", json={"name": "storefront", "services": ["old-web"]})
    content = entity("Component", "new-web", "spec:\n  system: storefront\n")
    assert do_import(responder, content).status_code == 200
    assert responder.get("/api/v1/features").json()[0]["services"] == ["new-web", "old-web"]


def test_unknown_kinds_are_skipped_and_counted(factory):
    responder = factory.user()
    content = catalog(
        entity("Location", "more", "spec:\n  targets: [./a.yaml]\n"),
        entity("Template", "new-service"),
        entity("User", "jane"),
        entity("User", "joe"),
        entity("Domain", "retail"),
        entity("Component", "kept"),
        "",  # an empty document, as a trailing '---' makes
    )
    report = do_import(responder, content).json()
    assert report["services"] == 1
    assert report["skipped"] == 5
    assert report["skipped_kinds"] == {"Domain": 1, "Location": 1, "Template": 1, "User": 2}


def test_names_are_read_without_regard_to_case(factory):
    admin = factory.user(Role.admin)  # new teams need an admin
    content = catalog(
        entity("Group", "Core-Team"),
        entity("Component", "Edge", "spec:\n  owner: group:default/core-team\n"),
        entity("Component", "app", "spec:\n  dependsOn: [component:EDGE]\n"),
    )
    assert do_import(admin, content).status_code == 200
    assert admin.get("/api/v1/services/edge").json()["team"] == "core-team"
    assert admin.get("/api/v1/services/app").json()["depends_on"] == ["edge"]


def test_reimporting_backstage_is_idempotent(factory):
    responder = factory.user()
    content = catalog(
        entity("Group", "team-a"),
        entity("System", "sys"),
        entity("Resource", "db"),
        entity("Component", "svc", "spec:\n  owner: team-a\n  system: sys\n  dependsOn: [db]\n"),
    )
    first = do_import(responder, content).json()
    state = snapshot(responder)
    assert do_import(responder, content).json() == first
    assert snapshot(responder) == state


BAD = [
    (entity("Component", "a", "spec:\n  dependsOn: [component:ghost]\n"), 404, "component:ghost"),
    (entity("Component", "a", "spec:\n  consumesApis: [nope-api]\n"), 404, "nope-api"),
    (entity("Component", "a", "spec:\n  providesApis: [nope-api]\n"), 404, "nope-api"),
    (entity("Component", "a", "spec:\n  system: nowhere\n"), 404, "nowhere"),
    (entity("Component", "a", "spec:\n  dependsOn: [api:x]\n"), 422, "api:x"),
    (entity("Component", "a", "spec:\n  dependsOn: [a]\n"), 422, "itself"),
    (entity("Component", "a", "spec:\n  dependsOn: ['component:']\n"), 422, "entity ref"),
    (entity("Component", "a", "spec:\n  dependsOn: resource:db\n"), 422, "must be a list"),
    (
        catalog(
            entity("Component", "a", "spec:\n  dependsOn: [b]\n"),
            entity("Component", "b", "spec:\n  dependsOn: [a]\n"),
        ),
        409,
        "a → b → a",
    ),
    (
        catalog(entity("Component", "a"), entity("Resource", "a")),
        422,
        "document 3 (resource a)",
    ),
    (entity("Component", "a", annotations='{"firetower.io/tier": "high"}'), 422, "tier"),
    (entity("Component", "a", annotations='{"firetower.io/tier": "9"}'), 422, "tier"),
    (
        entity("Component", "a", annotations='{"firetower.io/estimated-users": "-3"}'),
        422,
        "estimated-users",
    ),
    (
        catalog(entity("Component", "a"), "apiVersion: backstage.io/v1alpha1\nkind: Component\n"),
        422,
        "document 3 has no metadata.name",
    ),
    (
        catalog(
            entity("Component", "a"), "apiVersion: backstage.io/v1alpha1\nmetadata: {name: x}\n"
        ),
        422,
        "document 3 has no kind",
    ),
    (catalog(entity("Component", "a"), "kind: [unclosed\n"), 422, "document 3"),
    (catalog(entity("Component", "a"), "- just\n- a list\n"), 422, "document 3 is not a mapping"),
    (entity("Component", "has space"), 422, "firetower names"),
]


@pytest.mark.parametrize(("content", "status", "named"), BAD)
def test_a_bad_backstage_file_changes_nothing(factory, content, status, named):
    responder = factory.user()
    factory.service("existing")
    before = snapshot(responder)
    # A valid Group first (document 1): it must not be written when a later one is refused.
    answer = do_import(responder, catalog(entity("Group", "early"), content), "backstage")
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]
    assert snapshot(responder) == before


def test_a_malformed_first_document_is_named(factory):
    responder = factory.user()
    answer = do_import(responder, "kind: [unclosed\n", "backstage")
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("document 1, line")
    assert answer.json()["document"] == 1


def test_auto_detects_by_api_version(factory):
    responder = factory.user()
    # A Backstage file whose first document is a Location still reads as Backstage.
    content = catalog(entity("Location", "root"), entity("Component", "x"))
    assert do_import(responder, content).json()["format"] == "backstage"
    as_firetower = do_import(responder, content, "firetower")
    assert as_firetower.status_code == 422  # two documents are not one catalog block
