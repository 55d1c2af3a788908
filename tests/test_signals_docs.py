"""Every command of docs/signals.md works: run in page order with curl against a live server.

Keys made by the page's integration examples are exported as AM_KEY and PD_KEY for the
commands after them, as the page says.
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

DOC = Path(__file__).resolve().parent.parent / "docs" / "signals.md"
STATUS = re.compile(r"^# => (\d{3})(?: (.+))?$", re.MULTILINE)


def _commands() -> list[tuple[str, int, str | None]]:
    """(command, status, the answer shown: on the status line or in a json block right after)."""
    blocks = re.findall(r"```(sh|json)\n(.*?)```", DOC.read_text(), re.DOTALL)
    found: list[tuple[str, int, str | None]] = []
    for lang, block in blocks:
        if lang == "json":
            if found and found[-1][2] is None:
                found[-1] = (found[-1][0], found[-1][1], block)
            continue
        match = STATUS.search(block)
        if match is None:
            continue  # the export block
        command = block[: match.start()].strip()
        found.append((command, int(match.group(1)), match.group(2)))
    return found


def _matches(answer: object, shown: object) -> bool:
    """Field by field (a list of objects item by item); "…" in the shown answer stands for
    any value."""
    if shown == "…":
        return True
    if isinstance(shown, dict):
        return isinstance(answer, dict) and all(
            k in answer and _matches(answer[k], v) for k, v in shown.items()
        )
    if isinstance(shown, list) and any(isinstance(v, dict) for v in shown):
        return (
            isinstance(answer, list)
            and len(answer) == len(shown)
            and all(_matches(a, v) for a, v in zip(answer, shown, strict=True))
        )
    return answer == shown


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
            if isinstance(answer, dict) and answer.get("kind") == "alertmanager":
                env["AM_KEY"] = answer["key"]
            elif isinstance(answer, dict) and answer.get("kind") == "pagerduty":
                env["PD_KEY"] = answer["key"]
