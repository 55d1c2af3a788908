"""Every command of docs/probes.md works: run in page order with curl against a live server.

The page's probes check the live server's own /healthz, so nothing else needs to run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI

from firetower.auth.schemas import Role
from tests.cli_support import live_server
from tests.docs_support import doc_commands, matches, run_example
from tests.factories import Factory

DOC = Path(__file__).resolve().parent.parent / "docs" / "probes.md"


def _commands() -> list[tuple[str, int, str | None]]:
    return doc_commands(DOC, json_follows_a_command=True)


def test_the_page_has_examples() -> None:
    assert len(_commands()) >= 8


def test_every_example_on_the_page_answers_as_shown(app: FastAPI, factory: Factory) -> None:
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
