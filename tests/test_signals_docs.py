"""Every command of docs/signals.md works: run in page order with curl against a live server.

Keys made by the page's integration examples are exported as AM_KEY and PD_KEY for the
commands after them, as the page says.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from fastapi import FastAPI

from firetower.auth.schemas import Role
from firetower.runtime import Runtime
from tests.cli_support import live_server
from tests.docs_support import doc_commands, matches, run_example
from tests.factories import Factory
from tests.signals_support import alert_by_fingerprint

DOC = Path(__file__).resolve().parent.parent / "docs" / "signals.md"


def _commands() -> list[tuple[str, int, str | None]]:
    return doc_commands(DOC)


def test_the_page_has_examples() -> None:
    assert len(_commands()) >= 7


def test_every_example_on_the_page_answers_as_shown(
    app: FastAPI, factory: Factory, tmp_path: Path
) -> None:
    factory.service("checkout")
    admin = factory.user(Role.admin)
    env = {**os.environ, "FIRETOWER_TOKEN": admin.token}
    with live_server(app) as url:
        env["FIRETOWER_URL"] = url
        for command, status, shown in _commands():
            code, answer, printed = run_example(command, env)
            assert code == str(status), (command, printed)
            if shown:
                assert matches(answer, json.loads(shown)), (command, answer)
            if isinstance(answer, dict) and answer.get("kind") == "alertmanager":
                env["AM_KEY"] = answer["key"]
            elif isinstance(answer, dict) and answer.get("kind") == "pagerduty":
                env["PD_KEY"] = answer["key"]


def test_the_alert_count_is_documented_as_what_trigger_acknowledge_and_resolve_give(
    factory: Factory, runtime: Runtime
) -> None:
    admin = factory.user(Role.admin)
    key = admin.post("/api/v1/integrations", json={"name": "pd", "kind": "pagerduty"}).json()
    payload = {"summary": "Disk full", "source": "db-1", "severity": "error"}
    for action in ("trigger", "acknowledge", "resolve"):
        event = {"routing_key": key["key"], "event_action": action, "dedup_key": "disk-1"}
        if action == "trigger":
            event["payload"] = payload
        assert factory.client.post("/v2/enqueue", json=event).status_code == 202
    [listed] = admin.get("/api/v1/alerts").json()
    assert (listed["status"], listed["count"]) == ("resolved", 3)
    assert alert_by_fingerprint(runtime, "disk-1").count == 3

    for doc in (DOC, DOC.parent / "cli.md"):
        text = re.sub(r"\s+", " ", doc.read_text())
        assert "`count` is how many signals" in text, doc
        assert "acknowledge and resolve events alike" in text, doc
        assert "an acknowledge and a resolve make 3" in text, doc
        assert "repeated the alert" not in text, doc
