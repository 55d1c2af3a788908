"""The client commands against a real firetower served by uvicorn (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firetower.auth.schemas import Role
from firetower.jobs import Worker
from firetower.runtime import Runtime
from tests.cli_support import (
    error_line,
    json_of,
    run_cli,
    table_rows,
    unused_port,
)
from tests.factories import ApiUser, Factory


@pytest.fixture
def responder(factory: Factory) -> ApiUser:
    return factory.user(Role.responder)


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    """Imports that create teams need an admin."""
    return factory.user(Role.admin)


def test_incident_story_from_declare_to_resolve(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    factory.service("checkout", tier=1, estimated_users=5000)
    factory.service("payments", depends_on=[])
    cli = {"url": server_url, "token": responder.token}

    declared = run_cli(
        [
            "declare",
            "Checkout [errors] spike",
            "--severity",
            "SEV3",
            "--service",
            "checkout",
            "--service",
            "payments",
            "--summary",
            "5xx on /pay",
            "--impact-started",
            "2026-05-01T09:30:00Z",
        ],
        **cli,
    )
    assert declared.exit_code == 0, declared.output
    ref = declared.stdout.strip()
    assert ref.startswith("INC-")
    # a tier-1 service is impacted: the default policy raised SEV3 to SEV2, and says so
    assert "raised" in declared.stderr and "SEV2" in declared.stderr

    listed = run_cli(["incidents", "list"], **cli)
    assert listed.exit_code == 0, listed.output
    assert ref in listed.stdout
    assert "Checkout [errors] spike" in listed.stdout  # brackets are text, not markup
    page = json_of(run_cli(["incidents", "list", "--json"], **cli))
    assert [i["ref"] for i in page["items"]] == [ref]
    assert page["items"][0]["services"] == ["checkout", "payments"]

    shown = run_cli(["incidents", "show", ref], **cli)
    assert shown.exit_code == 0, shown.output
    for expected in ("5xx on /pay", "Lifecycle", "2026-05-01 09:30:00 UTC", "Blast radius"):
        assert expected in shown.stdout
    assert "declared" in shown.stdout  # the first timeline entry

    updated = run_cli(["update", ref, "--status", "investigating", "--title", "Pay fails"], **cli)
    assert updated.exit_code == 0, updated.output
    assert f"{ref} SEV2 investigating: Pay fails" in updated.stdout

    noted = run_cli(["note", ref, "rolled back 1.4.2", "--pin"], **cli)
    assert noted.exit_code == 0, noted.output
    assigned = run_cli(["assign", ref, "commander", responder.email], **cli)
    assert assigned.exit_code == 0, assigned.output
    assert f"{responder.email} is now commander" in assigned.stdout

    resolved = run_cli(["resolve", ref, "--note", "error rate back to normal"], **cli)
    assert resolved.exit_code == 0, resolved.output
    assert "resolved" in resolved.stdout

    incident = json_of(run_cli(["incidents", "show", ref, "--json"], **cli))
    assert incident["status"] == "resolved"
    assert incident["title"] == "Pay fails"
    assert incident["resolved_at"] is not None
    assert [(r["role"], r["user"]) for r in incident["roles"]] == [("commander", responder.email)]

    events = json_of(run_cli(["timeline", ref, "--json"], **cli))["items"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "declared"
    assert kinds.count("status_changed") == 2
    notes = [e for e in events if e["text"] == "rolled back 1.4.2"]
    assert len(notes) == 1 and notes[0]["pinned"] is True
    pinned = json_of(run_cli(["timeline", ref, "--pinned", "--json"], **cli))["items"]
    assert [e["text"] for e in pinned] == ["rolled back 1.4.2"]

    table = run_cli(["timeline", ref], **cli)
    assert table.exit_code == 0 and "[pinned] rolled back 1.4.2" in table.stdout
    assert "status: triage -> investigating" in table.stdout  # derived from before/after

    active = json_of(run_cli(["incidents", "list", "--active", "--json"], **cli))
    assert active["items"] == []
    by_status = json_of(run_cli(["incidents", "list", "--status", "resolved", "--json"], **cli))
    assert [i["ref"] for i in by_status["items"]] == [ref]


def test_declare_json_prints_the_whole_incident(server_url: str, responder: ApiUser) -> None:
    result = run_cli(
        ["declare", "Slow search", "--severity", "SEV4", "--json", "--source", "user-report"],
        url=server_url,
        token=responder.token,
    )
    incident = json_of(result)
    assert incident["title"] == "Slow search"
    assert incident["severity"] == "SEV4"
    assert incident["source"] == "user-report"
    assert incident["status"] == "triage"
    assert "allowed_transitions" in incident


def test_risk_flags_reach_the_server(server_url: str, responder: ApiUser) -> None:
    incident = json_of(
        run_cli(
            ["declare", "Leak", "--severity", "SEV3", "--data-at-risk", "--json"],
            url=server_url,
            token=responder.token,
        )
    )
    assert incident["data_at_risk"] is True
    assert incident["security_at_risk"] is False
    assert incident["severity"] == "SEV1"  # the policy: data at risk is at least SEV1


def test_ack_records_the_acknowledgement(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    ref = factory.incident(severity="SEV3")
    result = run_cli(["ack", ref], url=server_url, token=responder.token)
    assert result.exit_code == 0, result.output
    assert f"{ref} acknowledged at" in result.stdout
    incident = json_of(
        run_cli(["incidents", "show", ref, "--json"], url=server_url, token=responder.token)
    )
    assert incident["acknowledged_at"] is not None
    assert responder.email in incident["participants"]


def test_a_bare_number_names_an_incident(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    ref = factory.incident()
    number = ref.removeprefix("INC-")
    incident = json_of(
        run_cli(["incidents", "show", number, "--json"], url=server_url, token=responder.token)
    )
    assert incident["ref"] == ref


def test_refused_transition_names_the_allowed_statuses(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    ref = factory.incident()
    cli = {"url": server_url, "token": responder.token}
    assert run_cli(["resolve", ref], **cli).exit_code == 0
    refused = run_cli(["update", ref, "--status", "triage"], **cli)
    line = error_line(refused)
    assert line.startswith("error: ")
    assert "investigating, closed" in line
    assert refused.stdout == ""
    # and nothing changed
    assert json_of(run_cli(["incidents", "show", ref, "--json"], **cli))["status"] == "resolved"


def test_update_merges_an_incident_into_another(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    survivor = factory.incident(title="Checkout errors")
    duplicate = factory.incident(title="Payments failing")
    cli = {"url": server_url, "token": responder.token}
    merged = run_cli(["update", duplicate, "--merged-into", survivor.removeprefix("INC-")], **cli)
    assert merged.exit_code == 0, merged.output
    assert f"{duplicate} SEV3 merged: Payments failing" in merged.stdout
    incident = json_of(run_cli(["incidents", "show", duplicate, "--json"], **cli))
    assert (incident["status"], incident["merged_into"]) == ("merged", survivor)


def test_update_without_a_change_is_refused_before_any_request(responder: ApiUser) -> None:
    # no server at this address: the command must fail on its own input first
    result = run_cli(["update", "INC-1"], url=f"http://127.0.0.1:{unused_port()}", token="x")
    assert "nothing to update" in error_line(result)


def test_unknown_incident_shows_the_problem_detail(server_url: str, responder: ApiUser) -> None:
    result = run_cli(["incidents", "show", "INC-999999"], url=server_url, token=responder.token)
    line = error_line(result)
    assert line.startswith("error: ") and "INC-999999" in line


def test_unknown_service_is_named(server_url: str, responder: ApiUser) -> None:
    result = run_cli(
        ["declare", "x", "--service", "no-such-service"], url=server_url, token=responder.token
    )
    assert "no-such-service" in error_line(result)


def test_viewer_cannot_declare(server_url: str, factory: Factory) -> None:
    viewer = factory.user(Role.viewer)
    result = run_cli(["declare", "x"], url=server_url, token=viewer.token)
    line = error_line(result)
    assert "responder" in line
    assert "FIRETOWER_TOKEN" not in line  # 403 is not a bad token


@pytest.mark.parametrize("token", ["not-a-real-token", None])
def test_bad_or_missing_token(server_url: str, token: str | None) -> None:
    result = run_cli(["incidents", "list"], url=server_url, token=token)
    assert "FIRETOWER_TOKEN is missing or invalid" in error_line(result)


def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    result = run_cli(["incidents", "list"], url=url, token="anything")
    assert error_line(result).startswith(f"error: cannot reach firetower at {url}: ")


def test_url_without_a_scheme_is_refused() -> None:
    result = run_cli(["incidents", "list"], url="firetower.example.com", token="x")
    assert "FIRETOWER_URL must start with http:// or https://" in error_line(result)


def test_invalid_severity_is_a_usage_error() -> None:
    result = run_cli(["declare", "x", "--severity", "SEV9"])
    assert result.exit_code == 2
    assert "SEV9" in result.stderr and "--severity" in result.stderr


def test_invalid_impact_start_is_a_usage_error() -> None:
    result = run_cli(["declare", "x", "--impact-started", "2026-05-01T09:30"])
    assert result.exit_code == 2
    assert "time zone" in result.stderr


def test_catalog_services_table_and_json(
    server_url: str, responder: ApiUser, factory: Factory
) -> None:
    factory.service("search-api", tier=2, estimated_users=1200)
    table = run_cli(["catalog", "services"], url=server_url, token=responder.token)
    assert table.exit_code == 0, table.output
    assert "search-api" in table.stdout and "1,200" in table.stdout
    found = json_of(
        run_cli(["catalog", "services", "--json"], url=server_url, token=responder.token)
    )
    assert [(s["name"], s["tier"]) for s in found] == [("search-api", 2)]


def test_catalog_import_of_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli(["catalog", "import", str(missing)], url="http://127.0.0.1:1", token="x")
    assert error_line(result) == f"error: cannot read {missing}: No such file or directory"


def test_doctor_reports_each_check_and_fails_without_a_worker(
    server_url: str, responder: ApiUser
) -> None:
    result = run_cli(["doctor"], url=server_url, token=responder.token)
    assert result.exit_code == 1
    for check in ("healthz", "database", "migrations", "worker", "token"):
        assert check in result.stdout
    assert responder.email in result.stdout
    line = error_line(result)
    assert "not ready" in line
    assert "worker: no worker heartbeat on record; 0 jobs waiting" in line


def test_doctor_passes_when_a_worker_beats(
    server_url: str, responder: ApiUser, runtime: Runtime
) -> None:
    Worker(runtime.database, runtime.jobs, runtime.bus).heartbeat()
    result = run_cli(["doctor", "--json"], url=server_url, token=responder.token)
    report = json_of(result)
    assert report["ready"] is True
    assert report["checks"]["worker"] == "ok"
    assert report["checks"]["database"] == "ok"


def test_doctor_flags_a_bad_token(server_url: str, runtime: Runtime) -> None:
    Worker(runtime.database, runtime.jobs, runtime.bus).heartbeat()
    result = run_cli(["doctor"], url=server_url, token="wrong")
    assert "token: FIRETOWER_TOKEN is missing or invalid" in error_line(result)


FIRETOWER_CATALOG = """\
catalog:
  teams:
    - name: web
  services:
    - name: storefront
      team: web
      tier: 1
      estimated_users: 4000
      depends_on: [inventory]
    - name: inventory
      team: web
      tier: 2
"""

BACKSTAGE_CATALOG = """\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: team-web
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: storefront
  annotations:
    firetower.io/tier: "1"
spec:
  type: service
  lifecycle: production
  owner: group:default/team-web
  dependsOn: [component:default/inventory]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: inventory
spec:
  type: service
  lifecycle: production
  owner: group:default/team-web
"""


def _services(server_url: str, token: str) -> dict[str, list[str]]:
    found = json_of(run_cli(["catalog", "services", "--json"], url=server_url, token=token))
    return {s["name"]: s["depends_on"] for s in found}


def test_catalog_import_of_a_firetower_file(
    server_url: str, admin: ApiUser, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(FIRETOWER_CATALOG)
    result = run_cli(["catalog", "import", str(path)], url=server_url, token=admin.token)
    assert result.exit_code == 0, result.output
    assert "1 team, 2 services, 1 dependency" in result.stdout
    assert _services(server_url, admin.token) == {
        "inventory": [],
        "storefront": ["inventory"],
    }
    # importing again changes nothing and reports the same document
    again = run_cli(
        ["catalog", "import", str(path), "--format", "firetower", "--json"],
        url=server_url,
        token=admin.token,
    )
    report = json_of(again)
    assert (report["teams"], report["services"], report["dependencies"]) == (1, 2, 1)


def test_catalog_import_of_a_backstage_file(
    server_url: str, admin: ApiUser, tmp_path: Path
) -> None:
    path = tmp_path / "catalog-info.yaml"
    path.write_text(BACKSTAGE_CATALOG)
    report = json_of(
        run_cli(["catalog", "import", str(path), "--json"], url=server_url, token=admin.token)
    )
    assert report["format"] == "backstage"
    assert (report["services"], report["dependencies"]) == (2, 1)
    assert _services(server_url, admin.token) == {
        "inventory": [],
        "storefront": ["inventory"],
    }


def test_catalog_import_error_names_the_problem(
    server_url: str, responder: ApiUser, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("catalog:\n  services:\n    - name: Not A Valid Name\n")
    result = run_cli(["catalog", "import", str(path)], url=server_url, token=responder.token)
    assert "catalog.services" in error_line(result)
    assert _services(server_url, responder.token) == {}


def test_catalog_import_error_says_where_in_the_file(
    server_url: str, responder: ApiUser, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("catalog:\n  services:\n    - name: web\n    - name: api\n      team: ghost\n")
    result = run_cli(["catalog", "import", str(path)], url=server_url, token=responder.token)
    line = error_line(result)
    assert line.startswith("error: catalog.services[1].team: "), line
    assert "ghost" in line, line
    assert _services(server_url, responder.token) == {}


def test_apply_a_firetower_yaml(server_url: str, factory: Factory, tmp_path: Path) -> None:
    admin = factory.user(Role.admin)
    path = tmp_path / "firetower.yaml"
    path.write_text("settings:\n  log_level: info\n" + FIRETOWER_CATALOG)
    result = run_cli(["apply", "-f", str(path)], url=server_url, token=admin.token)
    assert result.exit_code == 0, result.output
    assert "applied: catalog" in result.stdout
    assert "skipped: settings" in result.stdout
    assert "None" not in result.stdout  # the blocks the file lacks are left out
    assert not any(
        line.startswith(("routing", "inhibit_rules", "probes", "slos"))
        for line in result.stdout.splitlines()
    ), result.stdout
    report = json_of(
        run_cli(["apply", "-f", str(path), "--json"], url=server_url, token=admin.token)
    )
    assert report["catalog"]["services"] == 2
    assert _services(server_url, admin.token)["storefront"] == ["inventory"]


def test_apply_from_stdin_needs_an_admin(
    server_url: str, responder: ApiUser, tmp_path: Path
) -> None:
    result = run_cli(
        ["apply", "-f", "-"], url=server_url, token=responder.token, input=FIRETOWER_CATALOG
    )
    assert "admin" in error_line(result)
    assert _services(server_url, responder.token) == {}


def test_incident_show_marks_work_held_by_a_deactivated_user(
    server_url: str, responder: ApiUser, factory: Factory, runtime: Runtime
) -> None:
    """As the console does: the role or task stays theirs, marked, so whoever reads it
    knows to hand it over."""
    from firetower.auth import service as auth_service

    bo = factory.user(email="bo@example.com")
    ref = factory.incident(responder.actor, title="x")
    url = f"/api/v1/incidents/{ref}"
    assert responder.put(f"{url}/roles/commander", json={"user": bo.email}).is_success
    assert responder.put(f"{url}/roles/scribe", json={"user": responder.email}).is_success
    for title, assignee in (("Roll back", bo.email), ("Page DBA", responder.email)):
        body = {"title": title, "assignee": assignee}
        assert responder.post(f"{url}/tasks", json=body).status_code == 201
    cli = {"url": server_url, "token": responder.token}
    shown = run_cli(["incidents", "show", ref, "--last", "0"], **cli)
    assert shown.exit_code == 0, shown.output
    assert "(deactivated)" not in shown.stdout

    with runtime.transaction() as session:
        auth_service.get_user_by_email(session, bo.email).active = False
    shown = run_cli(["incidents", "show", ref, "--last", "0"], **cli)
    assert shown.exit_code == 0, shown.output
    rows = {
        key: value.strip()
        for key, sep, value in (line.strip().partition("  ") for line in shown.stdout.splitlines())
        if sep
    }
    assert rows["commander"] == "bo@example.com (deactivated)"
    assert rows["scribe"] == responder.email
    tasks = {row["title"]: row["assignee"] for row in table_rows(shown.stdout)}
    assert tasks == {"Roll back": "bo@example.com (deactivated)", "Page DBA": responder.email}
    # The role, the task, and bo among the participants (holding a role made him one).
    assert shown.stdout.count("(deactivated)") == 3


def test_incident_show_marks_a_deactivated_participant(
    server_url: str, responder: ApiUser, factory: Factory, runtime: Runtime
) -> None:
    from firetower.auth import service as auth_service

    bo = factory.user(email="bo@example.com")
    ref = factory.incident(responder.actor, title="x")
    assert bo.post(f"/api/v1/incidents/{ref}/join").status_code == 200
    cli = {"url": server_url, "token": responder.token}

    def participants() -> str:
        shown = run_cli(["incidents", "show", ref, "--last", "0"], **cli)
        assert shown.exit_code == 0, shown.output
        rows = [line.strip() for line in shown.stdout.splitlines()]
        return next(row for row in rows if row.startswith("participants")).split("  ")[-1]

    assert participants().strip() == f"{responder.email}, bo@example.com"
    with runtime.transaction() as session:
        auth_service.get_user_by_email(session, bo.email).active = False
    assert participants().strip() == f"{responder.email}, bo@example.com (deactivated)"
