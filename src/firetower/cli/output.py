"""How the CLI speaks: Rich tables for people, JSON with --json, one-line errors on stderr."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

console = Console()
err_console = Console(stderr=True)
USAGE = 2
"""The exit code of a usage mistake (as Click's own), apart from a refused operation's 1."""


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def usage_message(exc: typer.TyperException) -> str:
    """Click's words for a usage mistake, on one line: ``invalid value for '--limit': ...``."""
    # Typer passes pydantic's "Value error, " prefix through; the "Choose from:" list of a
    # missing choice option spans lines.
    message = " ".join(exc.format_message().replace("Value error, ", "").split())
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Turn a usage error (Typer's Click exceptions: bad value, missing or unknown option,
    unknown command) into :func:`fail`'s one line with the exception's exit code (2)."""
    try:
        yield
    except typer.TyperException as exc:
        # A bare group (no_args_is_help) has already printed its help; Typer only exits.
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        fail(usage_message(exc), exc.exit_code)


class OneLineErrorsGroup(TyperGroup):
    """The root command: usage errors as ``error: ...`` on one line, not Typer's Rich box.

    Typer's ``main`` prints a usage error as a usage line, a hint and a panel. Options are
    parsed in ``make_context`` (the root's here, a sub-command's inside ``invoke``), so an
    error caught there becomes :class:`typer.Exit`, which ``main`` exits with. ``--help``
    stays Rich.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Characters a terminal obeys rather than shows (ESC, BEL, CSI, ...); tab and newline are
shown as themselves."""


def visible(text: str) -> str:
    """Text from the server with its control characters escaped (``\\x1b``): an alert's
    title is the sender's to choose, and a terminal would run ``\\x1b[1A\\x1b[2K`` (erase
    the row above, say) that Rich passes through."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def cell(value: Any) -> Text:
    """A table cell shown as it is: text from the server is never read as Rich markup, nor
    obeyed as terminal control sequences."""
    if value is None:
        return Text("")
    if isinstance(value, list | tuple):
        return Text(visible(", ".join(str(v) for v in value)))
    return Text(visible(str(value)))


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


def print_note(text: str) -> None:
    """One plain line on stderr, beside the output a script reads: ``note: ...``."""
    err_console.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


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
