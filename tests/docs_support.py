"""Running a documentation page's curl examples against a live server, in page order.

A page shows each command in an ``sh`` block ending with ``# => STATUS`` (optionally
followed by the answer on the same line), or with the answer in a ``json`` block right
after. "…" in a shown answer stands for any value.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

STATUS = re.compile(r"^# => (\d{3})(?: (.+))?$", re.MULTILINE)


def doc_commands(
    doc: Path, *, json_follows_a_command: bool = False
) -> list[tuple[str, int, str | None]]:
    """(command, status, the answer shown) for each example of the page, in order.

    ``json_follows_a_command``: every json block must show the answer of the command
    before it (a page whose json blocks are all answers).
    """
    blocks = re.findall(r"```(sh|json)\n(.*?)```", doc.read_text(), re.DOTALL)
    found: list[tuple[str, int, str | None]] = []
    for lang, block in blocks:
        if lang == "json":
            follows = bool(found) and found[-1][2] is None
            assert follows or not json_follows_a_command, (
                f"a JSON block follows no command: {block}"
            )
            if follows:
                found[-1] = (found[-1][0], found[-1][1], block)
            continue
        match = STATUS.search(block)
        if match is None:
            continue  # a block without an answer (the export block)
        found.append((block[: match.start()].strip(), int(match.group(1)), match.group(2)))
    return found


def run_example(command: str, env: dict[str, str]) -> tuple[str, object, str]:
    """Run one example with bash; its status code, its JSON answer (None when empty), and
    what it printed (for failure messages)."""
    run = subprocess.run(
        ["bash", "-c", f'{command} -w "\\n%{{http_code}}"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    body, _, code = run.stdout.rpartition("\n")
    return code, (json.loads(body) if body else None), run.stdout + run.stderr


def matches(answer: object, shown: object) -> bool:
    """Field by field (a list of objects item by item); "…" in the shown answer stands for
    any value."""
    if shown == "…":
        return True
    if isinstance(shown, dict):
        return isinstance(answer, dict) and all(
            k in answer and matches(answer[k], v) for k, v in shown.items()
        )
    if isinstance(shown, list) and any(isinstance(v, dict) for v in shown):
        return (
            isinstance(answer, list)
            and len(answer) == len(shown)
            and all(matches(a, v) for a, v in zip(answer, shown, strict=True))
        )
    return answer == shown
