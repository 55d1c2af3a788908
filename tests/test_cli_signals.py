"""The signals commands (alerts, silence, integrations) against a real server, both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from firetower.auth.schemas import Role
from firetower.cli.output import when
from firetower.cli.signals import parse_duration
from firetower.clock import FrozenClock
from tests.cli_support import (
    error_line,
    json_of,
    run_cli,
    table_rows,
)
from tests.factories import ApiUser, Factory
from tests.signals_support import matcher

KEY_LINE = re.compile(r"^[0-9a-f]{32}$", re.MULTILINE)


@pytest.fixture
def admin(factory: Factory) -> ApiUser:
    return factory.user(Role.admin)


@pytest.fixture
def responder(factory: Factory) -> ApiUser:
    return factory.user(Role.responder)


def send(
    url: str, key: str, fingerprint: str, status: str = "firing", **labels: str
) -> httpx.Response:
    alert = {
        "status": status,
        "labels": {"alertname": "HighLatency", **labels},
        "startsAt": "2026-01-01T10:00:00Z",
        "fingerprint": fingerprint,
    }
    return httpx.post(
        f"{url}/ingest/alertmanager/{key}",
        json={"version": "4", "status": status, "alerts": [alert]},
    )


def created_key(output: str) -> str:
    found = KEY_LINE.search(output)
    assert found, output
    return found.group(0)


def alertmanager_key(server_url: str, admin: ApiUser) -> str:
    """The key of a new Alertmanager integration ``am``, made with the CLI."""
    command = ["integrations", "create", "am", "--kind", "alertmanager"]
    return created_key(run_cli(command, url=server_url, token=admin.token).stdout)


# -- integrations ----------------------------------------------------------------------------
def test_integrations_are_created_listed_rotated_and_revoked(
    server_url: str, admin: ApiUser, factory: Factory
) -> None:
    factory.service("checkout")
    cli = {"url": server_url, "token": admin.token}
    made = run_cli(
        [
            "integrations",
            "create",
            "am-prod",
            "--kind",
            "alertmanager",
            "--service",
            "checkout",
            "--group-by",
            "alertname",
            "--group-by",
            "cluster",
        ],
        **cli,
    )
    assert made.exit_code == 0, made.output
    key = created_key(made.stdout)
    assert "shown once" in made.stdout
    assert f"send to {server_url}/ingest/alertmanager/{key}" in made.stdout
    assert send(server_url, key, "fp-1").status_code == 200

    listed = run_cli(["integrations", "list"], **cli)
    assert listed.exit_code == 0, listed.output
    assert "am-prod" in listed.stdout and f"{key[:8]}…" in listed.stdout
    assert key not in listed.stdout
    (shown,) = json_of(run_cli(["integrations", "list", "--json"], **cli))
    assert (shown["name"], shown["service_name"], shown["group_by"]) == (
        "am-prod",
        "checkout",
        ["alertname", "cluster"],
    )
    assert shown["revoked_at"] is None

    rotated = run_cli(["integrations", "rotate", "am-prod", "--json"], **cli)
    new_key = json_of(rotated)["key"]
    assert new_key != key
    assert send(server_url, key, "fp-1").status_code == 401
    assert send(server_url, new_key, "fp-1").status_code == 200

    revoked = run_cli(["integrations", "revoke", "am-prod"], **cli)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == "integration am-prod revoked"
    assert send(server_url, new_key, "fp-1").status_code == 401
    (after,) = json_of(run_cli(["integrations", "list", "--json"], **cli))
    assert after["revoked_at"] is not None

    again = run_cli(["integrations", "create", "am-prod", "--kind", "grafana"], **cli)
    assert error_line(again) == (
        "error: an integration named am-prod already exists, revoked: its alerts keep the name; "
        "choose another"
    )
    assert again.exit_code == 1
    ghost = run_cli(["integrations", "rotate", "ghost"], **cli)
    assert error_line(ghost) == "error: no integration named 'ghost'"
    revoked_rotate = run_cli(["integrations", "rotate", "am-prod"], **cli)
    assert error_line(revoked_rotate) == "error: integration am-prod is revoked"


def test_a_generic_integration_and_pagerduty_hints(server_url: str, admin: ApiUser) -> None:
    cli = {"url": server_url, "token": admin.token}
    made = run_cli(
        [
            "integrations",
            "create",
            "hooks",
            "--kind",
            "generic",
            "--map",
            "title=event.name",
            "--map",
            "status=state",
        ],
        **cli,
    )
    assert made.exit_code == 0, made.output
    key = created_key(made.stdout)
    answer = httpx.post(
        f"{server_url}/ingest/generic/{key}", json={"event": {"name": "Queue stuck"}, "state": "ok"}
    )
    assert answer.status_code == 200, answer.text
    (alert,) = json_of(run_cli(["alerts", "list", "--json"], **cli))
    assert (alert["title"], alert["status"]) == ("Queue stuck", "resolved")

    pagerduty = run_cli(["integrations", "create", "pd", "--kind", "pagerduty"], **cli)
    assert f"{server_url}/v2/enqueue with this routing_key" in pagerduty.stdout

    bad_map = run_cli(["integrations", "create", "x", "--kind", "generic", "--map", "oops"], **cli)
    assert bad_map.exit_code == 2
    assert error_line(bad_map).startswith("error: --map: 'oops' is not FIELD=JMESPATH")
    no_map = run_cli(["integrations", "create", "y", "--kind", "generic"], **cli)
    assert no_map.exit_code == 1
    assert "a generic integration needs a mapping" in error_line(no_map)
    bad_kind = run_cli(["integrations", "create", "z", "--kind", "fax"], **cli)
    assert bad_kind.exit_code == 2


def test_a_mapping_field_given_twice_is_refused_not_overwritten(
    server_url: str, admin: ApiUser
) -> None:
    """``--map title=a --map title=b`` kept b without a word: which one was meant?"""
    refused = run_cli(
        [
            "integrations",
            "create",
            "hooks",
            "--kind",
            "generic",
            "--map",
            "title=event.name",
            "--map",
            "status=state",
            "--map",
            " title = summary",
        ],
        url=server_url,
        token=admin.token,
    )
    assert refused.exit_code == 2, refused.output
    assert error_line(refused) == (
        "error: --map: title is mapped twice ('title=event.name' and ' title = summary'); "
        "give each field once"
    )
    assert admin.get("/api/v1/integrations").json() == []


def test_integrations_need_an_admin(server_url: str, responder: ApiUser) -> None:
    refused = run_cli(
        ["integrations", "create", "mine", "--kind", "alertmanager"],
        url=server_url,
        token=responder.token,
    )
    assert error_line(refused) == "error: this needs the admin role; you have responder"
    listed = run_cli(["integrations", "list"], url=server_url, token=responder.token)
    assert listed.exit_code == 1


def test_rejected_requests_are_listed(server_url: str, admin: ApiUser) -> None:
    cli = {"url": server_url, "token": admin.token}
    key = created_key(
        run_cli(["integrations", "create", "am", "--kind", "alertmanager"], **cli).stdout
    )
    answer = httpx.post(
        f"{server_url}/ingest/alertmanager/{key}",
        content=b"{broken\n json",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    table = run_cli(["integrations", "rejected"], **cli)
    assert table.exit_code == 0, table.output
    assert "the body is not valid JSON" in table.stdout
    assert "{broken json" in table.stdout  # the preview on one line
    (letter,) = json_of(run_cli(["integrations", "rejected", "--json"], **cli))
    assert letter["body"] == "{broken\n json"
    (row,) = table_rows(table.stdout)
    assert row["integration"] == letter["integration"] == "am"


def test_a_large_refused_body_is_listed_at_its_size_as_received(
    server_url: str, admin: ApiUser
) -> None:
    """A dead letter keeps the first 64 KiB; its size is what was sent (the list said the
    size kept), and ``--limit`` reaches past the newest 100 to every one kept."""
    cli = {"url": server_url, "token": admin.token}
    key = alertmanager_key(server_url, admin)
    for body in (b"[" + b" " * 199_998 + b"x", b"{small"):
        answer = httpx.post(
            f"{server_url}/ingest/alertmanager/{key}",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
    small, large = json_of(run_cli(["integrations", "rejected", "--json"], **cli))
    assert (small["received_bytes"], small["truncated"], small["body"]) == (6, False, "{small")
    assert (large["received_bytes"], large["truncated"]) == (200_000, True)
    assert len(large["body"]) == 64 * 1024
    table = run_cli(["integrations", "rejected"], **cli)
    assert [row["bytes"] for row in table_rows(table.stdout)] == ["6", "200,000"]
    newest = json_of(run_cli(["integrations", "rejected", "--limit", "1", "--json"], **cli))
    assert [d["id"] for d in newest] == [small["id"]]
    too_many = admin.get("/api/v1/rejected-payloads", params={"limit": 1001})
    assert too_many.status_code == 422 and "limit" in too_many.text


def test_terminal_control_sequences_sent_with_an_alert_are_shown_not_run(
    server_url: str, admin: ApiUser
) -> None:
    """Whoever holds an ingest key chose what the on-call's terminal received: an alert
    titled "\\x1b[1A\\x1b[2K..." erased the table row above it (a critical alert, say), and
    "\\x1b]0;...\\x07" retitled the window. The sequences are now shown escaped."""
    cli = {"url": server_url, "token": admin.token}
    key = alertmanager_key(server_url, admin)
    title = "Disk full\x1b[1A\x1b[2K\x1b]0;all fine\x07\x9b2J"
    alert = {"status": "firing", "labels": {"alertname": title}, "fingerprint": "esc"}
    answer = httpx.post(
        f"{server_url}/ingest/alertmanager/{key}",
        json={"version": "4", "status": "firing", "alerts": [alert]},
    )
    assert answer.status_code == 200, answer.text
    refused = httpx.post(
        f"{server_url}/ingest/alertmanager/{key}",
        content=b"not json \x1b[2J",
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 400
    for command in (["alerts", "list"], ["integrations", "rejected"]):
        result = run_cli(command, **cli)
        assert result.exit_code == 0, result.output
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", result.stdout), result.stdout
    shown = run_cli(["alerts", "list"], **cli).stdout
    assert "Disk full\\x1b[1A\\x1b[2K\\x1b]0;all fine\\x07\\x9b2J" in shown
    assert "not json \\x1b[2J" in run_cli(["integrations", "rejected"], **cli).stdout
    (listed,) = json_of(run_cli(["alerts", "list", "--json"], **cli))
    assert listed["title"] == title  # --json gives the text as sent, JSON-escaped


# -- alerts --------------------------------------------------------------------------------------
def test_alerts_list_puts_firing_first_and_filters(
    server_url: str, admin: ApiUser, responder: ApiUser, factory: Factory
) -> None:
    factory.service("api")
    key = created_key(
        run_cli(
            ["integrations", "create", "am-api", "--kind", "alertmanager", "--service", "api"],
            url=server_url,
            token=admin.token,
        ).stdout
    )
    assert send(server_url, key, "firing-1", alertname="HighLatency").status_code == 200
    assert send(server_url, key, "old-1", alertname="DiskFull").status_code == 200
    assert send(server_url, key, "old-1", "resolved", alertname="DiskFull").status_code == 200
    cli = {"url": server_url, "token": responder.token}

    table = run_cli(["alerts", "list"], **cli)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    hot = next(i for i, line in enumerate(lines) if "HighLatency" in line)
    old = next(i for i, line in enumerate(lines) if "DiskFull" in line)
    assert hot < old  # firing first, though the resolved one was seen last
    assert "INC-1" in lines[hot] and "am-api" in lines[hot]

    server = responder.get("/api/v1/alerts", params={"status": "resolved"}).json()
    printed = json_of(run_cli(["alerts", "list", "--status", "resolved", "--json"], **cli))
    assert printed == server
    assert [a["title"] for a in printed] == ["DiskFull"]
    only = json_of(run_cli(["alerts", "list", "--integration", "am-api", "--json"], **cli))
    assert len(only) == 2

    ghost = run_cli(["alerts", "list", "--integration", "ghost"], **cli)
    assert error_line(ghost) == "error: no integration named 'ghost'"
    assert run_cli(["alerts", "list", "--status", "burning"], **cli).exit_code == 2

    groups = run_cli(["alerts", "groups"], **cli)
    assert groups.exit_code == 0, groups.output
    assert "alertname=HighLatency,service=" not in groups.stdout  # no service label sent
    assert "alertname=HighLatency" in groups.stdout and "alertname=DiskFull" in groups.stdout
    printed_groups = json_of(run_cli(["alerts", "groups", "--json"], **cli))
    assert printed_groups == responder.get("/api/v1/alert-groups").json()


def test_alerts_list_tells_apart_alerts_of_one_name_by_their_other_labels(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    cli = {"url": server_url, "token": responder.token}
    key = alertmanager_key(server_url, admin)
    for fingerprint, instance in (("a", "db-1:9100"), ("b", "db-2:9100")):
        sent = send(
            server_url, key, fingerprint, alertname="DiskFull", instance=instance, job="node"
        )
        assert sent.status_code == 200

    table = run_cli(["alerts", "list"], **cli)
    assert table.exit_code == 0, table.output
    assert sorted(row["labels"] for row in table_rows(table.stdout)) == [
        "instance=db-1:9100 job=node",
        "instance=db-2:9100 job=node",
    ]


def test_alerts_list_limit_keeps_firing_alerts_ahead_of_newer_resolved_ones(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    """``--limit`` cuts the list as printed, firing first: resolved alerts seen after a firing
    one must not push it off a short list."""
    cli = {"url": server_url, "token": responder.token}
    key = alertmanager_key(server_url, admin)
    assert send(server_url, key, "hot", alertname="HighLatency").status_code == 200
    for fingerprint in ("done-1", "done-2"):
        assert send(server_url, key, fingerprint, "resolved", alertname="Old").status_code == 200

    table = run_cli(["alerts", "list", "--limit", "2"], **cli)
    assert table.exit_code == 0, table.output
    assert [row["status"] for row in table_rows(table.stdout)] == ["firing", "resolved"]
    printed = json_of(run_cli(["alerts", "list", "--limit", "2", "--json"], **cli))
    assert [a["fingerprint"] for a in printed] == ["hot", "done-2"]


def test_alerts_list_shows_one_group_as_alerts_groups_names_it(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    cli = {"url": server_url, "token": responder.token}
    key = alertmanager_key(server_url, admin)
    for fingerprint, alertname in (("a1", "DiskFull"), ("a2", "DiskFull"), ("b1", "HighLatency")):
        assert send(server_url, key, fingerprint, alertname=alertname).status_code == 200
    grouped = {g["group_key"] for g in json_of(run_cli(["alerts", "groups", "--json"], **cli))}
    assert grouped == {"alertname=DiskFull", "alertname=HighLatency"}

    one = json_of(run_cli(["alerts", "list", "--group", "alertname=DiskFull", "--json"], **cli))
    assert sorted(a["fingerprint"] for a in one) == ["a1", "a2"]
    assert one == responder.get("/api/v1/alerts", params={"group_key": "alertname=DiskFull"}).json()
    table = run_cli(["alerts", "list", "--group", "alertname=HighLatency"], **cli)
    assert [row["title"] for row in table_rows(table.stdout)] == ["HighLatency"]
    # Matched exactly: "" is the group of an integration that groups by no label (none here).
    for nothing in ("", "alertname=Disk", "alertname=DiskFull,service=api"):
        quiet = run_cli(["alerts", "list", "--group", nothing], **cli)
        assert quiet.stdout.strip() == "no alerts match", nothing
    # A value with a comma is escaped in its key, and the key printed is the one to pass.
    assert send(server_url, key, "c1", alertname="Disk,Full").status_code == 200
    printed = run_cli(["alerts", "groups"], **cli).stdout
    assert "alertname=Disk\\,Full" in printed
    escaped = run_cli(["alerts", "list", "--group", "alertname=Disk\\,Full", "--json"], **cli)
    assert [a["fingerprint"] for a in json_of(escaped)] == ["c1"]
    too_long = responder.get("/api/v1/alerts", params={"group_key": "x" * 1025})
    assert too_long.status_code == 422
    assert "group_key" in too_long.text


def test_alerts_list_shows_the_alerts_of_one_incident(
    server_url: str, admin: ApiUser, responder: ApiUser, factory: Factory
) -> None:
    """``--incident INC-n`` (``?incident=`` in the API): the alerts that opened or joined it,
    not those of another incident; a reference that is malformed or names no incident is
    refused naming the option, rather than answered with an empty list."""
    cli = {"url": server_url, "token": responder.token}
    keys = {}
    for name in ("feed", "checkout"):
        factory.service(name)
        body = {"name": f"am-{name}", "kind": "alertmanager", "service_name": name}
        answer = admin.post("/api/v1/integrations", json=body)
        assert answer.status_code == 201, answer.text
        keys[name] = answer.json()["key"]
    for fingerprint, instance in (("f1", "feed-1"), ("f2", "feed-2")):
        sent = send(server_url, keys["feed"], fingerprint, instance=instance, severity="critical")
        assert sent.status_code == 200, sent.text
    assert send(server_url, keys["checkout"], "c1", severity="critical").status_code == 200
    every = responder.get("/api/v1/alerts").json()
    incident_of = {a["fingerprint"]: a["incident"] for a in every}
    assert incident_of["f1"] == incident_of["f2"] != incident_of["c1"]
    feed_incident = incident_of["f1"]

    listed = json_of(run_cli(["alerts", "list", "--incident", feed_incident, "--json"], **cli))
    assert sorted(a["fingerprint"] for a in listed) == ["f1", "f2"]
    api = responder.get("/api/v1/alerts", params={"incident": feed_incident.lower()})
    assert sorted(a["fingerprint"] for a in api.json()) == ["f1", "f2"]  # inc-7 reads as INC-7
    table = run_cli(["alerts", "list", "--incident", incident_of["c1"]], **cli)
    assert [row["incident"] for row in table_rows(table.stdout)] == [incident_of["c1"]]

    malformed = run_cli(["alerts", "list", "--incident", "feed"], **cli)
    assert malformed.exit_code != 0
    assert "incident" in error_line(malformed) and "INC-42" in error_line(malformed)
    unknown = responder.get("/api/v1/alerts", params={"incident": "INC-999"})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "incident" and "INC-999" in unknown.json()["detail"]


def test_alert_marks_say_dropped_notify_only_and_inhibited(
    server_url: str, admin: ApiUser, factory: Factory
) -> None:
    factory.service("api")
    for rule in (
        {"name": "noise", "matchers": [matcher("alertname", "=", "Noise")], "action": "drop"},
        {"name": "fyi", "matchers": [matcher("alertname", "=", "Heads")], "action": "notify"},
    ):
        assert admin.post("/api/v1/routing-rules", json=rule).status_code == 201
    inhibit = {
        "name": "node-down",
        "source_matchers": [matcher("alertname", "=", "NodeDown")],
        "target_matchers": [matcher("severity", "=", "warning")],
        "equal": ["cluster"],
    }
    assert admin.post("/api/v1/inhibit-rules", json=inhibit).status_code == 201
    cli = {"url": server_url, "token": admin.token}
    key = created_key(
        run_cli(
            ["integrations", "create", "am", "--kind", "alertmanager", "--service", "api"], **cli
        ).stdout
    )
    assert send(server_url, key, "drop-1", alertname="Noise").status_code == 200
    assert send(server_url, key, "fyi-1", alertname="Heads").status_code == 200
    assert send(server_url, key, "src-1", alertname="NodeDown", cluster="eu").status_code == 200
    muted = send(server_url, key, "tgt-1", alertname="DiskSlow", severity="warning", cluster="eu")
    assert muted.status_code == 200

    table = run_cli(["alerts", "list"], **cli)
    assert table.exit_code == 0, table.output
    marks = {row["title"]: row["marks"] for row in table_rows(table.stdout)}
    assert marks == {
        "Noise": "dropped (rule noise)",
        "Heads": "notify only (rule fyi)",
        "NodeDown": "",
        "DiskSlow": "inhibited",
    }
    muted = json_of(run_cli(["alerts", "list", "--inhibited", "--json"], **cli))
    assert [a["title"] for a in muted] == ["DiskSlow"]
    others = json_of(run_cli(["alerts", "list", "--not-inhibited", "--json"], **cli))
    assert sorted(a["title"] for a in others) == ["Heads", "NodeDown", "Noise"]


def test_an_alert_with_no_known_service_is_marked(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    """It opens nothing and pages nobody: the list says so rather than leave it blank."""
    key = alertmanager_key(server_url, admin)  # an integration with no service
    assert (
        send(server_url, key, "typo", alertname="DiskFull", service="paymnets").status_code == 200
    )
    table = run_cli(["alerts", "list"], url=server_url, token=responder.token)
    assert table.exit_code == 0, table.output
    (row,) = table_rows(table.stdout)
    assert row["marks"] == "no service"


@pytest.mark.parametrize("command", [["alerts", "list"], ["alerts", "groups"]])
def test_an_empty_integration_filter_is_refused_not_dropped(
    server_url: str, responder: ApiUser, command: list[str]
) -> None:
    """A script's ``--integration "$NAME"`` with NAME unset must not list everything."""
    refused = run_cli([*command, "--integration", ""], url=server_url, token=responder.token)
    assert refused.exit_code == 1
    assert "no integration named ''" in error_line(refused)


def test_alerts_list_says_when_nothing_matches(server_url: str, responder: ApiUser) -> None:
    quiet = run_cli(["alerts", "list"], url=server_url, token=responder.token)
    assert quiet.exit_code == 0
    assert quiet.stdout.strip() == "no alerts match"


def test_alerts_ack_and_resolve_set_an_alert_s_status_by_hand(
    server_url: str, admin: ApiUser, responder: ApiUser, factory: Factory
) -> None:
    factory.service("api")
    command = ["integrations", "create", "am-api", "--kind", "alertmanager", "--service", "api"]
    key = created_key(run_cli(command, url=server_url, token=admin.token).stdout)
    assert send(server_url, key, "hand-1", alertname="HighLatency").status_code == 200
    cli = {"url": server_url, "token": responder.token}
    [alert] = json_of(run_cli(["alerts", "list", "--json"], **cli))

    acked = run_cli(["alerts", "ack", str(alert["id"])], **cli)
    assert acked.exit_code == 0, acked.output
    assert acked.stdout.strip() == (
        f"alert {alert['id']} acknowledged by {responder.email} (incident INC-1): HighLatency"
    )
    resolved = json_of(run_cli(["alerts", "resolve", str(alert["id"]), "--json"], **cli))
    assert (resolved["status"], resolved["status_by"]) == ("resolved", responder.email)
    assert resolved == responder.get("/api/v1/alerts").json()[0]

    refused = run_cli(["alerts", "ack", str(alert["id"])], **cli)
    assert refused.exit_code == 1
    assert error_line(refused) == (
        f"error: alert {alert['id']} is resolved; only an unresolved alert can be acknowledged"
    )
    unknown = run_cli(["alerts", "resolve", "999999"], **cli)
    assert error_line(unknown) == "error: no alert 999999"
    assert run_cli(["alerts", "resolve", "nine"], **cli).exit_code == 2


# -- silences ------------------------------------------------------------------------------------
def test_silences_are_added_listed_and_expired(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    cli = {"url": server_url, "token": responder.token}
    key = alertmanager_key(server_url, admin)
    added = run_cli(
        [
            "silence",
            "add",
            "--matcher",
            "alertname=HighLatency",
            "--matcher",
            'service=~"api|web"',
            "-m",
            "severity!=info",
            "-m",
            "env!~dev.*",
            "--duration",
            "2h",
            "--comment",
            "deploying v2",
        ],
        **cli,
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("silence 1 until ")
    assert 'alertname="HighLatency" service=~"api|web" severity!="info" env!~"dev.*"' in (
        added.stdout
    )
    (silence,) = responder.get("/api/v1/silences").json()
    assert [(m["label"], m["op"], m["value"]) for m in silence["matchers"]] == [
        ("alertname", "=", "HighLatency"),
        ("service", "=~", "api|web"),
        ("severity", "!=", "info"),
        ("env", "!~", "dev.*"),
    ]
    length = datetime.fromisoformat(silence["ends_at"]) - datetime.fromisoformat(
        silence["starts_at"]
    )
    assert abs(length - timedelta(hours=2)) < timedelta(minutes=1)
    assert silence["comment"] == "deploying v2"

    # It mutes intake: a matching alert is stored as silenced.
    assert send(server_url, key, "m-1", service="api", env="prod").status_code == 200
    muted = json_of(run_cli(["alerts", "list", "--silenced", "--json"], **cli))
    assert [a["fingerprint"] for a in muted] == ["m-1"]
    marks = run_cli(["alerts", "list"], **cli)
    assert "silenced" in marks.stdout

    listed = run_cli(["silence", "list"], **cli)
    assert listed.exit_code == 0, listed.output
    assert "active" in listed.stdout and "deploying v2" in listed.stdout
    assert json_of(run_cli(["silence", "list", "--json"], **cli)) == [silence]

    expired = run_cli(["silence", "expire", "1"], **cli)
    assert expired.stdout.strip() == "silence 1 expired"
    assert run_cli(["silence", "list"], **cli).stdout.strip() == "no active or pending silences"
    every = run_cli(["silence", "list", "--all"], **cli)
    assert "expired" in every.stdout
    (shown,) = json_of(run_cli(["silence", "list", "--all", "--json"], **cli))
    assert shown["expired_at"] is not None
    assert error_line(run_cli(["silence", "expire", "99"], **cli)) == "error: no silence 99"
    again = run_cli(["silence", "expire", "1"], **cli)
    assert again.exit_code == 1
    assert error_line(again).startswith("error: silence 1 was already expired at ")


def test_a_silence_can_start_later_or_come_from_an_alert(
    server_url: str, admin: ApiUser, responder: ApiUser
) -> None:
    cli = {"url": server_url, "token": responder.token}
    later = run_cli(
        [
            "silence",
            "add",
            "-m",
            "team=db",
            "--start",
            "2999-01-01T00:00:00Z",
            "--duration",
            "1d",
            "--json",
        ],
        **cli,
    )
    made = json_of(later)
    assert made["starts_at"].startswith("2999-01-01T00:00:00")
    assert made["ends_at"].startswith("2999-01-02T00:00:00")
    pending = run_cli(["silence", "list"], **cli)  # scheduled: listed without --all
    assert "pending" in pending.stdout and 'team="db"' in pending.stdout
    (listed,) = json_of(run_cli(["silence", "list", "--json"], **cli))
    assert (listed["id"], listed["state"]) == (made["id"], "pending")

    key = alertmanager_key(server_url, admin)
    assert send(server_url, key, "one-1", alertname="Saturation", pod="db-0").status_code == 200
    (alert,) = responder.get("/api/v1/alerts").json()
    from_alert = json_of(
        run_cli(
            ["silence", "add", "--alert", str(alert["id"]), "--duration", "90m", "--json"], **cli
        )
    )
    assert sorted((m["label"], m["op"], m["value"]) for m in from_alert["matchers"]) == [
        ("alertname", "=", "Saturation"),
        ("pod", "=", "db-0"),
    ]
    assert error_line(run_cli(["silence", "add", "--alert", "999"], **cli)) == "error: no alert 999"


@pytest.mark.parametrize("server_ahead", [timedelta(hours=3), timedelta(hours=-1)])
def test_a_silence_from_now_lasts_its_duration_on_the_servers_clock(
    server_url: str, responder: ApiUser, server_ahead: timedelta
) -> None:
    """The client's clock is not the server's: 2h from now is 2h from the server's now, not a
    3h silence when the client runs an hour fast, nor one over already when it runs slow."""
    server_now = datetime.now(UTC).replace(microsecond=0) + server_ahead
    with FrozenClock(server_now):
        added = run_cli(
            ["silence", "add", "-m", "a=b", "--duration", "2h", "--json"],
            url=server_url,
            token=responder.token,
        )
    assert added.exit_code == 0, added.output
    made = json_of(added)
    assert datetime.fromisoformat(made["starts_at"]) == server_now
    assert datetime.fromisoformat(made["ends_at"]) == server_now + timedelta(hours=2)
    assert made["state"] == "active"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-m", "alertname"], 2, "is not label=value"),
        (["-m", "alertname~x"], 2, "--matcher: 'alertname~x' is not label=value"),
        (["-m", "alertname==x"], 2, "--matcher: 'alertname==x': an unquoted value cannot start"),
        (["-m", "a=~~x"], 2, "--matcher: 'a=~~x': an unquoted value cannot start with '~'"),
        (["-m", "a!==x"], 2, "--matcher: 'a!==x': an unquoted value cannot start with '='"),
        (["-m", 'a="unterminated'], 2, "'a=\"unterminated': the value's opening double quote"),
        (["-m", 'a="'], 2, "'a=\"': the value's opening double quote is never closed"),
        (["-m", 'a=x"y'], 2, "'a=x\"y': a double quote may only wrap the whole value"),
        (["-m", 'a="x"y"'], 2, '\'a="x"y"\': a double quote inside a quoted value is written'),
        (["-m", 'a="x\\"'], 2, "the value's opening double quote is never closed"),
        (["-m", "a=b", "-m", "c==d"], 2, "'c==d'"),
        (["-m", "alertname=~(open"], 2, "not a valid regular expression"),
        (["-m", "a=b", "--duration", "2 hours"], 2, "is not a duration"),
        (["-m", "a=b", "--duration", "0m"], 2, "not longer than zero"),
        (["-m", "a=b", "--duration", "99999999999w"], 2, "is too long"),
        (["-m", "a=b", "--duration", "367d"], 2, "--duration: a silence lasts at most 366 days"),
        (["-m", "a=b", "--start", "9999-12-31T23:00:00Z", "--duration", "2h"], 2, "year 9999"),
        (["-m", "a=b", "--start", "tomorrow"], 2, "not an ISO 8601 time"),
        (["-m", "a=b", "--start", "2999-01-01T00:00:00"], 2, "has no time zone"),
        (  # named by the options given, not by the API's ends_at, which nobody typed
            ["-m", "a=b", "--start", "2001-01-01T00:00:00Z", "--duration", "2h"],
            1,
            "error: --start plus --duration ends at 2001-01-01 02:00:00 UTC, in the past: "
            "the silence would be over already",
        ),
        ([], 2, "give --matcher LABEL=VALUE"),
        (["--alert", "1", "-m", "a=b"], 2, "leave out --matcher"),
        (["--alert", "1", "--duration", "90s"], 2, "whole minutes"),
    ],
)
def test_a_bad_silence_is_refused_on_one_line(
    server_url: str, responder: ApiUser, args: list[str], code: int, message: str
) -> None:
    refused = run_cli(["silence", "add", *args], url=server_url, token=responder.token)
    assert refused.exit_code == code
    assert message in error_line(refused)
    assert responder.get("/api/v1/silences", params={"all": "true"}).json() == []


def test_quotes_around_a_matcher_value_are_removed(server_url: str, responder: ApiUser) -> None:
    made = run_cli(
        ["silence", "add", "-m", 'a="=x"', "-m", ' b = " spaced " ', "-m", 'c=""', "--json"],
        url=server_url,
        token=responder.token,
    )
    assert [(m["label"], m["op"], m["value"]) for m in json_of(made)["matchers"]] == [
        ("a", "=", "=x"),
        ("b", "=", " spaced "),
        ("c", "=", ""),
    ]


def test_a_double_quote_in_a_value_is_escaped_both_ways(
    server_url: str, responder: ApiUser
) -> None:
    cli = {"url": server_url, "token": responder.token}
    # A Windows path's backslash, doubled for the regex and again for the quotes.
    given = ['query="rate(x{job=\\"api\\"}[5m])"', 'path=~"C:\\\\\\\\temp\\d+"']
    made = json_of(run_cli(["silence", "add", "-m", given[0], "-m", given[1], "--json"], **cli))
    values = [m["value"] for m in made["matchers"]]
    assert values == ['rate(x{job="api"}[5m])', "C:\\\\temp\\d+"]
    assert re.fullmatch(values[1], "C:\\temp42")
    listed = run_cli(["silence", "list"], **cli)
    assert listed.exit_code == 0, listed.output
    assert 'query="rate(x{job=\\"api\\"}[5m])"' in listed.stdout  # what -m reads back
    assert 'path=~"C:\\\\\\temp\\d+"' in listed.stdout  # doubled only where read as one


def test_an_expired_silence_shows_when_it_was_expired(server_url: str, responder: ApiUser) -> None:
    cli = {"url": server_url, "token": responder.token}
    made = json_of(run_cli(["silence", "add", "-m", "a=b", "--duration", "2h", "--json"], **cli))
    assert run_cli(["silence", "expire", str(made["id"])], **cli).exit_code == 0
    (silence,) = json_of(run_cli(["silence", "list", "--all", "--json"], **cli))
    assert silence["expired_at"] is not None
    table = run_cli(["silence", "list", "--all"], **cli)
    assert table.exit_code == 0, table.output
    (row,) = table_rows(table.stdout)
    assert row["state"] == "expired"
    assert row["ends"] == when(silence["expired_at"]) != when(silence["ends_at"])


def test_a_viewer_cannot_add_a_silence(server_url: str, factory: Factory) -> None:
    viewer = factory.user(Role.viewer)
    refused = run_cli(["silence", "add", "-m", "a=b"], url=server_url, token=viewer.token)
    assert error_line(refused) == "error: this needs the responder role; you have viewer"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("7d", 604800), ("1w", 604800), ("45s", 45)],
)
def test_durations_read_as_people_write_them(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-1h", "1.5h", "0s"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
