"""Client commands for the catalog and config as code: catalog import, catalog services, apply.

Files are read here and sent as text; the server parses and validates them, so a client
never needs to match the server's version of the formats.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from firetower.cli.client import ApiError, connect
from firetower.cli.output import fail, print_json, print_line, print_table

catalog_app = typer.Typer(help="Import and inspect the service catalog.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]
IMPORT_KINDS = ("teams", "services", "dependencies", "features", "customers")


class ImportFormat(StrEnum):
    auto = "auto"
    firetower = "firetower"
    backstage = "backstage"


def read_text(path: Path) -> str:
    """A file's text (``-`` reads stdin); an unreadable file ends the command."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


SINGULAR = {"teams": "team", "dependencies": "dependency", "features": "feature"}


def describe_counts(report: dict[str, Any], kinds: tuple[str, ...]) -> str:
    """E.g. ``1 team, 3 services, 2 dependencies``."""
    parts = []
    for kind in kinds:
        count = int(report.get(kind, 0))
        noun = kind if count != 1 else SINGULAR.get(kind, kind.removesuffix("s"))
        parts.append(f"{count} {noun}")
    return ", ".join(parts)


def located(exc: ApiError) -> ApiError:
    """The error with the place in the file the server named (``routing[1].service: ...``),
    unless its detail already starts with it: a long file is fixed by going there."""
    if not exc.field or exc.message.startswith(exc.field):
        return exc
    return ApiError(f"{exc.field}: {exc.message}", status_code=exc.status_code, field=exc.field)


@catalog_app.command("import")
def import_catalog(
    file: Annotated[
        Path,
        typer.Argument(help="A firetower catalog YAML or a Backstage catalog file; - for stdin."),
    ],
    format_: Annotated[
        ImportFormat,
        typer.Option("--format", help="auto tells the two apart by their content."),
    ] = ImportFormat.auto,
    json_output: JsonOption = False,
) -> None:
    """Create or update teams, services, dependencies, features and customers from a file."""
    content = read_text(file)
    with connect() as client:
        try:
            report = client.post(
                "/api/v1/catalog/import", json={"format": format_.value, "content": content}
            )
        except ApiError as exc:
            raise located(exc) from None
    if json_output:
        print_json(report)
    else:
        source = f" ({report['format']})" if report.get("format") else ""
        print_line(f"imported{source}: " + describe_counts(report, IMPORT_KINDS))


def _health(service: dict[str, Any]) -> str:
    """E.g. ``failing: probe:home``, ``at risk from db``, ``ok``: the health and why."""
    health = service.get("health") or "ok"
    if health == "failing" and service.get("failing_checks"):
        return "failing: " + ", ".join(service["failing_checks"])
    if health == "at_risk":
        causes = service.get("at_risk_from") or []
        return "at risk" + (f" from {', '.join(causes)}" if causes else "")
    return str(health)


@catalog_app.command("services")
def services(json_output: JsonOption = False) -> None:
    """List the catalog's services."""
    with connect() as client:
        found = client.get("/api/v1/services")
    if json_output:
        print_json(found)
        return
    if not found:
        print_line("the catalog has no services yet: see `firetower catalog import`")
        return
    print_table(
        None,
        ["name", "health", "tier", "team", "owner", "users", "depends on", "dependents"],
        [
            [
                s["name"],
                _health(s),
                s["tier"],
                s["team"],
                s["owner"],
                f"{s['estimated_users']:,}",
                s["depends_on"],
                s["dependents"],
            ]
            for s in found
        ],
    )


def _report_lines(report: Any, indent: str = "") -> list[str]:
    """A report of unknown shape as readable lines: nested mappings indent, lists join."""
    if not isinstance(report, dict):
        return [f"{indent}{report}"]
    lines: list[str] = []
    for key, value in report.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(_report_lines(value, indent + "  "))
        elif isinstance(value, list | dict):
            shown = ", ".join(str(v) for v in value) if value else "none"
            lines.append(f"{indent}{key}: {shown}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def apply(
    file: Annotated[
        Path,
        typer.Option("-f", "--file", help="The firetower.yaml to apply; - for stdin."),
    ],
    json_output: JsonOption = False,
) -> None:
    """Apply a firetower.yaml (services, teams, ... as code) to the server."""
    content = read_text(file)
    with connect() as client:
        try:
            report = client.post("/api/v1/apply", json={"content": content})
        except ApiError as exc:
            raise located(exc) from None
    if json_output:
        print_json(report)
        return
    # A block the file lacks comes back as null: leave it out rather than print None.
    present = {k: v for k, v in report.items() if v is not None}
    for line in _report_lines(present) or ["applied: nothing changed"]:
        print_line(line)
