"""How the CLI speaks: Rich tables for people, JSON with --json, one-line errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def cell(value: Any) -> Text:
    """A table cell shown as it is: text from the server is never read as Rich markup."""
    if value is None:
        return Text("")
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value))
    return Text(str(value))


PIPED_MAX_WIDTH = 10_000


def emit(renderable: RenderableType) -> None:
    """Print to stdout; when stdout is not a terminal, at full width so no cell wraps.

    A terminal has a width to respect. A pipe or a file has none, and wrapping there would
    split a title over lines that ``grep`` then misses.
    """
    if console.is_terminal:
        console.print(renderable)
        return
    options = console.options.update(width=PIPED_MAX_WIDTH)
    natural = Measurement.get(console, options, renderable).maximum
    # Console.print(width=...) never exceeds the console's own width, so use a wider one.
    Console(file=console.file, width=max(natural, 1), color_system=None).print(renderable)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    emit(table)


def print_line(text: str) -> None:
    """One plain line on stdout, never read as markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def when(value: Any) -> str:
    """An ISO 8601 timestamp from the API, shown in UTC to the second; '' for none."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
