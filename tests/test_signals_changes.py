"""Change events as a responder reads them back: "what changed before this broke?"

Deploys and config changes arrive through PagerDuty's ``/v2/change/enqueue`` and are listed
by the API, the CLI and the console, newest first, by service, integration and time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from firetower import clock
from firetower.auth.schemas import Role
from firetower.db import Database
from firetower.migrate import upgrade
from firetower.runtime import Runtime
from tests.cli_support import error_line, json_of, run_cli, table_rows
from tests.factories import ApiUser, Factory, row_counts
from tests.test_web_signals import sign_in


def _integration(admin: ApiUser, name: str, service: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "kind": "pagerduty"}
    if service:
        body["service_name"] = service
    answer = admin.post("/api/v1/integrations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def _change(
    client: TestClient,
    key: str,
    summary: str,
    at: datetime,
    source: str = "ci",
    **custom_details: Any,
) -> None:
    event = {
        "routing_key": key,
        "payload": {
            "summary": summary,
            "source": source,
            "timestamp": at.isoformat(),
            "custom_details": custom_details,
        },
        "links": [
            {"href": "javascript:alert(1)", "text": "evil"},
            {"href": f"https://ci.example.com/{summary.split()[-1]}", "text": "build"},
        ],
    }
    answer = client.post("/v2/change/enqueue", json=event)
    assert answer.status_code == 202, answer.text


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


@pytest.fixture
def history(factory: Factory, admin: ApiUser) -> datetime:
    """Four changes: two of checkout (its own key), one of search and one of nothing
    through a CI key shared by every service. Returns the time they are counted back from."""
    factory.service("checkout")
    factory.service("search")
    checkout = _integration(admin, "checkout-deploys", "checkout")
    shared = _integration(admin, "ci")
    now = clock.now()
    _change(admin.client, checkout, "Deployed checkout v41", now - timedelta(hours=30))
    _change(admin.client, checkout, "Deployed checkout v42", now - timedelta(minutes=20))
    _change(admin.client, shared, "Deployed search v7", now - timedelta(hours=2), service="SEARCH")
    _change(admin.client, shared, "Rotated certs r1", now - timedelta(hours=1), source="ops-box")
    return now


def _summaries(changes: list[dict[str, Any]]) -> list[str]:
    return [change["summary"] for change in changes]


def test_changes_are_listed_newest_first_by_service_integration_and_time(
    admin: ApiUser, history: datetime
) -> None:
    listed = admin.get("/api/v1/change-events")
    assert listed.status_code == 200, listed.text
    everything = listed.json()
    assert _summaries(everything) == [
        "Deployed checkout v42",
        "Rotated certs r1",
        "Deployed search v7",
        "Deployed checkout v41",
    ]
    newest = everything[0]
    assert newest["integration"] == "checkout-deploys"
    assert newest["service_name"] == "checkout"
    assert newest["links"][1] == {"href": "https://ci.example.com/v42", "text": "build"}
    # A shared key: the catalog service custom_details names (any case), else none.
    assert [c["service_name"] for c in everything[1:3]] == [None, "search"]

    def summaries(**params: Any) -> list[str]:
        answer = admin.get("/api/v1/change-events", params=params)
        assert answer.status_code == 200, answer.text
        return _summaries(answer.json())

    assert summaries(service="checkout") == ["Deployed checkout v42", "Deployed checkout v41"]
    assert summaries(service="search") == ["Deployed search v7"]
    assert summaries(service="Search") == ["Deployed search v7"]  # any case, as on arrival
    assert summaries(integration="ci") == ["Rotated certs r1", "Deployed search v7"]
    since = (history - timedelta(hours=3)).isoformat()
    until = (history - timedelta(minutes=30)).isoformat()
    assert summaries(since=since) == _summaries(everything[:3])
    assert summaries(since=since, until=until) == ["Rotated certs r1", "Deployed search v7"]
    assert summaries(limit=1) == ["Deployed checkout v42"]


def test_a_service_named_by_source_and_a_viewer_can_read(
    factory: Factory, admin: ApiUser, history: datetime
) -> None:
    factory.service("ops-box")
    key = _integration(admin, "ops")
    _change(admin.client, key, "Resized ops-box r2", history, source="Ops-Box")
    viewer = factory.user(Role.viewer)
    answer = viewer.get("/api/v1/change-events", params={"service": "ops-box"})
    assert answer.status_code == 200, answer.text
    assert _summaries(answer.json()) == ["Resized ops-box r2"]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"service": "nope"}, 404, "service"),
        ({"integration": "nope"}, 404, "integration"),
        ({"since": "2026-11-29T10:00:00Z", "until": "2026-11-29T09:00:00Z"}, 422, "until"),
        ({"since": "2026-11-29T10:00:00"}, 422, "since"),
        ({"limit": "0"}, 422, "limit"),
        ({"service": "a\x00"}, 422, "service"),  # PostgreSQL cannot hold it: refused alike
        ({"integration": "\x00"}, 422, "integration"),
    ],
)
def test_bad_filters_are_refused_by_name(
    admin: ApiUser, history: datetime, params: dict[str, str], status: int, field: str
) -> None:
    answer = admin.get("/api/v1/change-events", params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


def test_the_cli_lists_changes_and_reads_since_as_a_time_or_a_duration(
    server_url: str, admin: ApiUser, history: datetime
) -> None:
    cli = {"url": server_url, "token": admin.token}
    table = run_cli(["changes", "list", "--since", "3h"], **cli)
    assert table.exit_code == 0, table.output
    rows = table_rows(table.stdout)
    assert [row["summary"] for row in rows] == [
        "Deployed checkout v42",
        "Rotated certs r1",
        "Deployed search v7",
    ]
    assert rows[0]["service"] == "checkout"
    assert rows[0]["link"] == "https://ci.example.com/v42"  # the first web link
    assert rows[1]["service"] == "—"
    assert "note:" not in table.stderr
    note = "note: the newest 2 are shown; narrow the filters or raise --limit"
    cut = run_cli(["changes", "list", "--limit", "2"], **cli)
    assert len(table_rows(cut.stdout)) == 2
    assert cut.stderr.strip() == note
    as_json = run_cli(["changes", "list", "--limit", "2", "--json"], **cli)
    assert len(json_of(as_json)) == 2  # stdout stays JSON
    assert as_json.stderr.strip() == note
    until = (history - timedelta(hours=24)).astimezone(UTC).isoformat()
    listed = json_of(run_cli(["changes", "list", "--until", until, "--json"], **cli))
    assert _summaries(listed) == ["Deployed checkout v41"]
    quiet = run_cli(["changes", "list", "--service", "search", "--since", "30m"], **cli)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.strip() == "no change events match"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "0m"], "--since: '0m' is not longer than zero"),
        (["--since", "800000d"], "--since: '800000d' reaches back before the year 1"),
        (["--since", "yesterday"], "--since: 'yesterday' is neither an ISO 8601 time like"),
        (
            ["--since", "-1h"],
            "is neither an ISO 8601 time like 2026-05-01T09:30:00Z nor a duration",
        ),
        (["--since", "2026-11-29"], "is a date; give a time with a zone: 2026-11-29T00:00:00Z"),
        (["--since", "2026-11-29+02:00"], "is a date; give a time with a zone"),
        (["--until", "2026-11-29T10:00:00"], "--until: '2026-11-29T10:00:00' has no time zone"),
        (["--service", "nope"], "no service named 'nope'"),
        (["--service", ""], "no service named ''"),
        (["--integration", ""], "no integration named ''"),
    ],
)
def test_the_cli_refuses_bad_filters_on_one_line(
    server_url: str, admin: ApiUser, args: list[str], says: str
) -> None:
    failed = run_cli(["changes", "list", *args], url=server_url, token=admin.token)
    assert says in error_line(failed)


def test_the_console_lists_changes_with_safe_links(
    factory: Factory, client: TestClient, runtime: Runtime, history: datetime
) -> None:
    console = sign_in(factory, client, Role.viewer)
    key = _integration(factory.user(Role.admin, email="a2@example.com"), "scripted")
    _change(client, key, "Tried <script>alert(1)</script> v1", history, note="<b>bold</b> déployé")
    _change(client, key, "Skewed clock v9", history + timedelta(days=365))
    before = row_counts(runtime)
    page = console.get("/changes")
    assert page.status_code == 200, page.text
    assert page.text.index("Deployed checkout v42") < page.text.index("Deployed checkout v41")
    assert 'href="https://ci.example.com/v42"' in page.text
    assert "javascript:" not in page.text
    assert "<script>alert" not in page.text
    assert "<b>bold" not in page.text
    assert "&#34;service&#34;: &#34;SEARCH&#34;" in page.text  # custom details, as JSON
    assert "&lt;b&gt;bold&lt;/b&gt; déployé" in page.text  # as written, escaped as HTML
    assert '<option value="checkout-deploys"' in page.text
    assert '<option value="@user-reports"' not in page.text  # sends no change events
    assert "Skewed clock v9" in page.text
    assert "Skewed clock v9" not in console.get("/changes", params={"hours": "1"}).text
    narrowed = console.get("/changes", params={"service": "checkout", "hours": "1"})
    assert "Deployed checkout v42" in narrowed.text
    assert '<option value="checkout" selected>' in narrowed.text  # the filters stay chosen
    assert '<option value="1" selected>last hour</option>' in narrowed.text
    assert "Deployed checkout v41" not in narrowed.text
    assert "Rotated certs" not in narrowed.text
    refused = console.get("/changes", params={"hours": "5"})
    assert refused.status_code == 422
    assert "is not one of the windows (1, 6, 24, 168)" in refused.text
    unknown = console.get("/changes", params={"service": "nope"})
    assert unknown.status_code == 404
    assert "no service named" in unknown.text
    assert row_counts(runtime) == before


def test_changes_stored_before_the_service_column_take_their_integrations(
    unmigrated_database: Database,
) -> None:
    database = unmigrated_database
    upgrade(database.engine, "0012")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO services (name, tier, description, owner, runbook_url, "
                "estimated_users, created_at) VALUES ('search', 2, '', '', '', 0, "
                "'2026-01-01 00:00:00')"
            )
        )
        for name, service in (("deploys", "checkout"), ("ci", None)):
            connection.execute(
                text(
                    "INSERT INTO integrations (name, kind, service_name, key_prefix, key_hash, "
                    "created_at) VALUES (:name, 'pagerduty', :service, :name, 'x', "
                    "'2026-01-01 00:00:00')"
                ),
                {"name": name, "service": service},
            )
        for integration, source, details in (
            ("deploys", "", "{}"),
            ("ci", "", "{}"),
            ("ci", "", '{"service": " Search "}'),
            ("ci", "SEARCH", '{"service": 7}'),
        ):
            connection.execute(
                text(
                    "INSERT INTO change_events (integration_id, summary, source, timestamp, "
                    "received_at, custom_details, links) SELECT id, 'Deployed', :source, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00', :details, '[]' "
                    "FROM integrations WHERE name = :name"
                ),
                {"name": integration, "source": source, "details": details},
            )
    upgrade(database.engine)
    with database.engine.connect() as connection:
        kept = connection.execute(
            text("SELECT service_name FROM change_events ORDER BY id")
        ).scalars()
        assert list(kept) == ["checkout", None, "search", "search"]
