"""`firetower probes list|run`, and probes applied with `firetower apply`, against a real
firetower served by uvicorn."""

from __future__ import annotations

import json
from pathlib import Path

from firetower.auth.schemas import Role
from tests.cli_support import error_line, json_of, run_cli
from tests.factories import Factory
from tests.probe_servers import http_target


def test_list_and_run(server_url: str, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    responder = factory.user(Role.responder)
    viewer = factory.user(Role.viewer)
    cli = {"url": server_url, "token": responder.token}
    assert run_cli(["probes", "list"], **cli).stdout.startswith("no probes yet")
    with http_target() as web:
        for name, path in (("home", "/ok"), ("broken", "/status/503")):
            created = admin.post(
                "/api/v1/probes",
                json={"name": name, "kind": "http", "http": {"url": f"{web.url}{path}"}},
            )
            assert created.status_code == 201

        passed = run_cli(["probes", "run", "home"], **cli)
        assert passed.exit_code == 0, passed.output
        assert passed.stdout.startswith("home passed in ")
        assert "(status 200); state up" in passed.stdout

        failed = run_cli(["probes", "run", "broken"], **cli)
        assert failed.exit_code == 1
        assert "broken failed in" in failed.stdout
        # one failure is not yet down: the line says how many it takes
        assert "(status 503); state unknown (1 of 2 failures before down)" in failed.stdout
        assert "reason: status 503; expected 2xx" in failed.stdout

        as_json = run_cli(["probes", "run", "broken", "--json"], **cli)
        assert as_json.exit_code == 1
        outcome = json.loads(as_json.stdout)
        assert (outcome["ok"], outcome["status_code"], outcome["state"]) == (False, 503, "down")
        assert (outcome["consecutive_failures"], outcome["failure_threshold"]) == (2, 2)
        again = run_cli(["probes", "run", "broken"], **cli)
        assert again.stdout.splitlines()[0].endswith("(status 503); state down")  # no hint

    table = run_cli(["probes", "list"], **cli)
    assert table.exit_code == 0
    lines = {line.split()[1]: line for line in table.stdout.splitlines() if "http" in line}
    assert "down" in lines["broken"] and "status 503" in lines["broken"]
    assert "up" in lines["home"] and f"GET {web.url}/ok" in lines["home"]
    listed = json_of(run_cli(["probes", "list", "--json"], **cli))
    assert [p["name"] for p in listed] == ["broken", "home"]

    missing = run_cli(["probes", "run", "absent"], **cli)
    assert error_line(missing) == "error: no probe named 'absent'"
    refused = run_cli(["probes", "run", "home"], url=server_url, token=viewer.token)
    assert error_line(refused) == "error: this needs the responder role; you have viewer"


def test_apply_refuses_a_probe_number_given_as_true(
    server_url: str, factory: Factory, tmp_path: Path
) -> None:
    """`port: true` is not port 1: the error names the place in the file, nothing is stored."""
    admin = factory.user(Role.admin)
    path = tmp_path / "firetower.yaml"
    path.write_text("probes:\n  - {name: db, kind: tcp, tcp: {host: 127.0.0.1, port: true}}\n")
    refused = run_cli(["apply", "-f", str(path)], url=server_url, token=admin.token)
    assert error_line(refused) == "error: probes[0].tcp.port: Input should be a valid integer"
    assert admin.get("/api/v1/probes").json() == []

    path.write_text("probes:\n  - {name: db, kind: tcp, tcp: {host: 127.0.0.1, port: 5432}}\n")
    applied = run_cli(["apply", "-f", str(path)], url=server_url, token=admin.token)
    assert applied.exit_code == 0, applied.output
    assert admin.get("/api/v1/probes/db").json()["tcp"]["port"] == 5432


def test_a_paused_probe_run_by_hand_says_it_is_paused(server_url: str, factory: Factory) -> None:
    """A paused probe's runs move no state: the line must not count toward a threshold it
    will never reach ("0 of 2 failures before down") nor call it merely unknown."""
    admin = factory.user(Role.admin)
    cli = {"url": server_url, "token": factory.user(Role.responder).token}
    with http_target() as web:
        created = admin.post(
            "/api/v1/probes",
            json={"name": "broken", "kind": "http", "http": {"url": f"{web.url}/status/503"}},
        )
        assert created.status_code == 201, created.text
        assert admin.patch("/api/v1/probes/broken", json={"enabled": False}).status_code == 200

        failed = run_cli(["probes", "run", "broken"], **cli)
        assert failed.exit_code == 1
        first = failed.stdout.splitlines()[0]
        assert first.endswith(
            "(status 503); paused, so its runs move no state (it stays unknown)"
        ), first
        as_json = run_cli(["probes", "run", "broken", "--json"], **cli)
        assert as_json.exit_code == 1
        outcome = json.loads(as_json.stdout)
        assert (outcome["enabled"], outcome["state"], outcome["consecutive_failures"]) == (
            False,
            "unknown",
            0,
        )
