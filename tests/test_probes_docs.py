"""Every command of docs/probes.md works: run in page order with curl against a live server.

The page's probes check the live server's own /healthz, so nothing else needs to run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from fastapi import FastAPI

from firetower.auth.schemas import Role
from tests.cli_support import live_server
from tests.factories import Factory
from tests.test_signals_docs import _matches

DOC = Path(__file__).resolve().parent.parent / "docs" / "probes.md"
STATUS = re.compile(r"^# => (\d{3})$", re.MULTILINE)


def _commands() -> list[tuple[str, int, str | None]]:
    """(command, status, the JSON block right after it, if any)."""
    blocks = re.findall(r"```(sh|json)\n(.*?)```", DOC.read_text(), re.DOTALL)
    found: list[tuple[str, int, str | None]] = []
    for lang, block in blocks:
        if lang == "json":
            assert found and found[-1][2] is None, f"a JSON block follows no command: {block}"
            found[-1] = (found[-1][0], found[-1][1], block)
            continue
        match = STATUS.search(block)
        if match is None:
            continue  # the export block
        found.append((block[: match.start()].strip(), int(match.group(1)), None))
    return found


def test_the_page_has_examples() -> None:
    assert len(_commands()) >= 8


def test_every_example_on_the_page_answers_as_shown(app: FastAPI, factory: Factory) -> None:
    factory.service("checkout")
    admin = factory.user(Role.admin)
    env = {**os.environ, "FIRETOWER_TOKEN": admin.token}
    with live_server(app) as url:
        env["FIRETOWER_URL"] = url
        for command, status, shown in _commands():
            run = subprocess.run(
                ["bash", "-c", f'{command} -w "\\n%{{http_code}}"'],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            body, _, code = run.stdout.rpartition("\n")
            assert code == str(status), (command, run.stdout, run.stderr)
            answer = json.loads(body) if body else None
            if shown:
                assert _matches(answer, json.loads(shown)), (command, answer)
