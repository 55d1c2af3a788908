"""Why services are in trouble, through the CLI against a real server: `incidents show`
names failing checks, services at risk and failing services upstream; `catalog services`
has a health column; `apply` errors name their place in the file (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firetower.auth.schemas import Role
from firetower.catalog import service as catalog
from tests.cli_support import error_line, run_cli, table_rows
from tests.factories import ApiUser, Factory


@pytest.fixture
def viewer(factory: Factory) -> ApiUser:
    return factory.user(Role.viewer)


def _chain(factory: Factory) -> None:
    """web → api → db: web depends on api, which depends on db."""
    factory.service("db")
    factory.service("api", depends_on=["db"])
    factory.service("web", depends_on=["api"])


def _fail(factory: Factory, service: str, check: str) -> None:
    with factory.runtime.transaction() as session:
        catalog.report_health(session, service_name=service, check=check, failing=True)


def _rows(stdout: str) -> dict[str, str]:
    """``key  value`` lines of a key-value grid, keyed by their first two-space-separated part."""
    rows = {}
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition("  ")
        if sep:
            rows[key] = value.strip()
    return rows


def test_incident_show_says_why_services_are_in_trouble(
    server_url: str, viewer: ApiUser, factory: Factory
) -> None:
    _chain(factory)
    _fail(factory, "db", "probe:db-ping")
    failing = factory.incident(services=["db"], severity="SEV3")
    reported = factory.incident(services=["web"], severity="SEV3")

    shown = run_cli(
        ["incidents", "show", failing, "--last", "0"], url=server_url, token=viewer.token
    )
    assert shown.exit_code == 0, shown.output
    rows = _rows(shown.stdout)
    assert rows["failing checks"] == "db: probe:db-ping"
    assert rows["at risk"] == "api, web"
    assert "failing upstream" not in rows
    # The incident's own risk flags read as flags, not as "nothing is at risk".
    assert rows["data/security/revenue risk"] == "none flagged"

    # A report about web: the failing db upstream is the likely cause.
    shown = run_cli(
        ["incidents", "show", reported, "--last", "0"], url=server_url, token=viewer.token
    )
    assert shown.exit_code == 0, shown.output
    rows = _rows(shown.stdout)
    assert rows["failing upstream"] == "db"
    assert "failing checks" not in rows and "at risk" not in rows


def test_incident_show_names_the_risk_flags_set(
    server_url: str, viewer: ApiUser, factory: Factory
) -> None:
    ref = factory.incident(data_at_risk=True, revenue_at_risk=True)
    shown = run_cli(["incidents", "show", ref, "--last", "0"], url=server_url, token=viewer.token)
    assert shown.exit_code == 0, shown.output
    assert _rows(shown.stdout)["data/security/revenue risk"] == "data, revenue"


def test_catalog_services_shows_health(server_url: str, viewer: ApiUser, factory: Factory) -> None:
    _chain(factory)
    factory.service("search")
    _fail(factory, "api", "slo:api-availability")
    table = run_cli(["catalog", "services"], url=server_url, token=viewer.token)
    assert table.exit_code == 0, table.output
    health = {row["name"]: row["health"] for row in table_rows(table.stdout)}
    assert health == {
        "api": "failing: slo:api-availability",
        "db": "ok",
        "search": "ok",
        "web": "at risk from api",
    }


ROUTING = """\
routing:
  - {name: a, action: notify}
  - {name: b, service: nowhere}
"""

SLOS = """\
slos:
  - {name: web-ok, service: web, objective_percent: 99, sli: {kind: events}}
  - {name: lost, service: nowhere, objective_percent: 99, sli: {kind: events}}
"""


@pytest.mark.parametrize(
    ("document", "place"),
    [(ROUTING, "routing[1].service"), (SLOS, "slos[1].service")],
    ids=["routing", "slos"],
)
def test_apply_error_names_its_place_in_the_file(
    server_url: str, factory: Factory, tmp_path: Path, document: str, place: str
) -> None:
    admin = factory.user(Role.admin)
    factory.service("web")
    path = tmp_path / "firetower.yaml"
    path.write_text(document)
    result = run_cli(["apply", "-f", str(path)], url=server_url, token=admin.token)
    line = error_line(result)
    assert line.startswith(f"error: {place}: no service named 'nowhere'"), line


def test_apply_error_that_already_names_its_place_is_not_repeated(
    server_url: str, factory: Factory, tmp_path: Path
) -> None:
    admin = factory.user(Role.admin)
    path = tmp_path / "firetower.yaml"
    path.write_text("routing:\n  - {name: a, action: shout}\n")
    result = run_cli(["apply", "-f", str(path)], url=server_url, token=admin.token)
    line = error_line(result)
    assert line.startswith("error: routing[0].action: "), line
    assert line.count("routing[0].action") == 1, line
