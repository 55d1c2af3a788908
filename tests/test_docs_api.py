"""Every example in docs/api.md works: each curl command runs, in page order, against a server.

The commands are read from the page's ``sh`` blocks (never listed here), run by bash with the
real curl against a live uvicorn server, on SQLite and on PostgreSQL, with FIRETOWER_URL and
FIRETOWER_TOKEN set as the page says. Each must answer the status under it (``# => 201``) and
the answer shown there or in the ``json`` block that follows, field by field; ``"…"`` in an
answer stands for any value.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from firetower.auth import service as auth_service
from firetower.auth.schemas import Role, UserCreate
from tests.factories import SYSTEM, Factory

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
SHELL_LANGS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
ANSWER = re.compile(r"^# => (\d{3})(?:\s+(.+))?$")
ANY = "…"
NO_ANSWER = object()
STATUS_MARK = "firetower-docs-status:"
# curl prints the status on stderr, so stdout is exactly the body the page shows.
CURL_WRAPPER = (
    f"curl() {{ command curl -w '%{{stderr}}\\n{STATUS_MARK}%{{http_code}}\\n' \"$@\"; }}"
)
# What "How to read the examples" says the fresh database holds.
PREMISE_SERVICES = ["checkout"]
PREMISE_USER = "you@example.com"
PREMISE_OTHER_USERS = ["ana@example.com", "bo@example.com"]


@dataclass
class Example:
    line: int
    command: str
    prelude: list[str] = field(default_factory=list)
    status: int | None = None
    answer: Any = NO_ANSWER

    def where(self) -> str:
        return f"docs/api.md:{self.line}: {self.command}"


@dataclass
class Block:
    lang: str
    body: str
    line: int
    follows_previous: bool  # nothing but blank lines between it and the block before


def _blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    end = 0
    for match in FENCE.finditer(text):
        between = text[end : match.start()]
        blocks.append(
            Block(
                lang=match.group(1),
                body=match.group(2),
                line=text.count("\n", 0, match.start()) + 2,
                follows_previous=bool(blocks) and not between.strip(),
            )
        )
        end = match.end()
    return blocks


def _complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on (like the JSON body of a declare)
        return False
    return True


def _split(block: Block) -> list[Example]:
    """The curl commands of one block; other commands (``H=(...)``) precede the later ones."""
    examples: list[Example] = []
    prelude: list[str] = []
    current: list[str] = []
    start = 0
    last: Example | None = None

    def finish() -> None:
        nonlocal current, last
        if not current:
            return
        command = "\n".join(current)
        if shlex.split(command)[0] == "curl":
            last = Example(start, command, list(prelude))
            examples.append(last)
        else:
            prelude.append(command)
            last = None
        current = []

    for offset, line in enumerate(block.body.splitlines()):
        if current and not _complete("\n".join(current)):
            current.append(line)
            continue
        finish()
        stripped = line.strip()
        answer = ANSWER.match(stripped)
        if answer:
            assert last is not None and last.status is None, (
                f"docs/api.md:{block.line + offset}: '# =>' must follow the command it answers"
            )
            last.status = int(answer.group(1))
            if answer.group(2):
                last.answer = _json(answer.group(2), block.line + offset)
            continue
        last = None  # an answer line belongs to the command right above it
        if not stripped or stripped.startswith("#"):
            continue
        current, start = [line], block.line + offset
    unfinished = bool(current) and not _complete("\n".join(current))
    assert not unfinished, f"docs/api.md:{start}: a quote or a trailing backslash is never closed"
    finish()
    return examples


def _json(text: str, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        pytest.fail(f"docs/api.md:{line}: the answer shown is not JSON ({error}): {text}")


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    previous: list[Example] = []
    for block in _blocks(text):
        if block.lang in SHELL_LANGS:
            previous = _split(block)
            found += previous
            continue
        if block.lang == "json" and block.follows_previous and previous:
            answered = previous[-1]
            assert answered.answer is NO_ANSWER, (
                f"{answered.where()}: answered twice (on its '# =>' line and by a json block)"
            )
            answered.answer = _json(block.body, block.line)
        previous = []
    return found


def mismatches(shown: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from the answer shown: the fields shown, ``"…"`` for any value."""
    if shown == ANY:
        return []
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{path or 'answer'}: expected an object, got {actual!r}"]
        problems: list[str] = []
        for key, value in shown.items():
            if key not in actual:
                problems.append(f"{path}{key}: missing from the answer")
            else:
                problems += mismatches(value, actual[key], f"{path}{key}.")
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list) or len(actual) != len(shown):
            return [f"{path.rstrip('.') or 'answer'}: shown {shown!r}, got {actual!r}"]
        return [
            problem
            for index, (one, other) in enumerate(zip(shown, actual, strict=True))
            for problem in mismatches(one, other, f"{path}{index}.")
        ]
    if shown != actual or type(shown) is not type(actual):
        return [f"{path.rstrip('.') or 'answer'}: shown {shown!r}, got {actual!r}"]
    return []


def test_the_page_has_examples_and_each_says_what_it_answers() -> None:
    doc_examples = examples(DOC.read_text())
    assert len(doc_examples) >= 10, "docs/api.md lost its examples (or this test their format)"
    for example in doc_examples:
        assert example.status is not None, f"{example.where()}: no '# => STATUS' line under it"


def test_every_json_block_is_valid_json() -> None:
    blocks = [b for b in _blocks(DOC.read_text()) if b.lang == "json"]
    assert blocks
    for block in blocks:
        _json(block.body, block.line)


def test_every_example_uses_the_two_variables() -> None:
    for example in examples(DOC.read_text()):
        full = "\n".join([*example.prelude, example.command])
        assert '"$FIRETOWER_URL/' in example.command, f"{example.where()}: use $FIRETOWER_URL"
        assert not re.search(r"https?://", example.command), f"{example.where()}: a fixed URL"
        assert "Bearer $FIRETOWER_TOKEN" in full, f"{example.where()}: use $FIRETOWER_TOKEN"


def test_the_premise_is_the_one_the_page_states() -> None:
    text = DOC.read_text()
    premise = text[text.index("## How to read the examples") : text.index("## Authentication")]
    for name in [*PREMISE_SERVICES, PREMISE_USER, *PREMISE_OTHER_USERS]:
        assert f"`{name}`" in premise, f"the test sets up {name}, the page does not say so"


def _run(example: Example, env: dict[str, str]) -> tuple[int, int | None, str, str]:
    script = "\n".join([CURL_WRAPPER, *example.prelude, example.command])
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    statuses = re.findall(rf"^{STATUS_MARK}(\d{{3}})$", done.stderr, flags=re.MULTILINE)
    assert len(statuses) == 1, f"{example.where()}: ran curl {len(statuses)} times\n{done.stderr}"
    return done.returncode, int(statuses[0]), done.stdout, done.stderr


def test_every_example_works_in_page_order(
    server_url: str, factory: Factory, tmp_path: Path
) -> None:
    you = factory.user(Role.responder, email=PREMISE_USER)
    with factory.runtime.transaction() as session:
        for email in PREMISE_OTHER_USERS:  # no tokens, so the page's token ids hold
            auth_service.create_user(session, SYSTEM, UserCreate(email=email))
    for name in PREMISE_SERVICES:
        factory.service(name)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),  # no ~/.curlrc of whoever runs the suite
        "LANG": "C.UTF-8",
        "FIRETOWER_URL": server_url,
        "FIRETOWER_TOKEN": you.token,
    }
    for example in examples(DOC.read_text()):
        exit_code, status, body, stderr = _run(example, env)
        told = f"{example.where()}\n=> exit {exit_code}, status {status}\n{body}\n{stderr}"
        expected_exit = 22 if "--fail" in example.command and (status or 0) >= 400 else 0
        assert exit_code == expected_exit, told
        assert status == example.status, told
        if example.answer is not NO_ANSWER:
            try:
                answer = json.loads(body)
            except json.JSONDecodeError:
                pytest.fail(f"the answer is not JSON: {told}")
            problems = mismatches(example.answer, answer)
            assert not problems, "\n".join([told, *problems])
