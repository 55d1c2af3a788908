"""docs/cli.md documents every command the CLI has, and nothing it lacks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from firetower.cli.main import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _command_paths(command: Any, prefix: str = "") -> set[str]:
    # a group has sub-commands (typer may build its own click classes, so no isinstance)
    if getattr(command, "commands", None):
        paths: set[str] = set()
        for name, sub in command.commands.items():
            paths |= _command_paths(sub, f"{prefix} {name}".strip())
        return paths
    return {prefix}


def test_every_command_has_a_section_with_an_example() -> None:
    commands = _command_paths(typer.main.get_command(app))
    text = DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    documented: set[str] = set()
    for section in sections:
        heading = section.splitlines()[0]
        found = next(
            (
                c
                for c in sorted(commands, key=len, reverse=True)
                if heading.startswith(f"`firetower {c}`") or heading.startswith(f"`firetower {c} ")
            ),
            None,
        )
        assert found, f"docs/cli.md documents a command the CLI lacks: {heading}"
        assert "```console" in section, f"no example for {found}"
        documented.add(found)
    assert commands - documented == set()
