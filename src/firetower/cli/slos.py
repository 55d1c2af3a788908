"""Client commands for SLOs and SLA reports: slo status, slo import, slo report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from firetower.cli.catalog import read_text
from firetower.cli.client import ApiError, connect, segment
from firetower.cli.output import print_json, print_line, print_table, when
from firetower.monitors.rounding import percent_shown, percent_text

slo_app = typer.Typer(help="SLOs, error budgets and SLA reports.", no_args_is_help=True)

ACHIEVED_DIGITS = 3
"""Decimals of an achieved percentage in the SLA report's table."""

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]


def _percent(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}%"


def _achieved(line: dict[str, Any]) -> str:
    """A report line's achieved percentage, on the side of its target that ``breached`` says
    (99.8996 against 99.9 reads 99.899%, never 99.900%)."""
    value = line["achieved_percent"]
    if value is None:
        return _percent(None)
    shown = percent_shown(
        value, line["target_percent"], breached=line["breached"], digits=ACHIEVED_DIGITS
    )
    return _percent(shown, ACHIEVED_DIGITS)


def _rate(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _state(slo: dict[str, Any]) -> str:
    """The level, and a hint when the last evaluation could not read the SLI (the level then
    is the one from before, as on the console)."""
    return f"{slo['state']} · SLI unreadable" if slo.get("last_error") else str(slo["state"])


@slo_app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="One SLO; all of them when left out.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Budget left, burn rates and alert level of every SLO (or of one, in detail)."""
    with connect() as client:
        found = client.get(f"/api/v1/slos/{segment(name)}") if name else client.get("/api/v1/slos")
    if json_output:
        print_json(found)
        return
    if name is None:
        if not found:
            print_line("no SLOs yet: see `firetower slo import`")
            return
        print_table(
            None,
            ["name", "service", "objective", "SLI", "budget left", "burn 1h", "state"],
            [
                [
                    s["name"],
                    s["service"],
                    f"{percent_text(s['objective_percent'])}% / {s['window_days']}d",
                    s["sli_summary"],
                    _percent(s["budget_remaining_percent"]),
                    _rate(s["current_burn_rate"]),
                    _state(s),
                ]
                for s in found
            ],
        )
        return
    print_line(f"{found['name']} ({found['service']}): {_state(found)}")
    print_line(
        f"objective {percent_text(found['objective_percent'])}% over {found['window_days']}d, "
        f"SLI: {found['sli_summary']}"
    )
    print_line(
        f"budget left {_percent(found['budget_remaining_percent'])}, "
        f"consumed {_percent(found['budget_consumed_percent'])}"
    )
    rates = found.get("burn_rates") or {}
    if rates:
        print_line("burn rates: " + ", ".join(f"{w} {_rate(r)}" for w, r in rates.items()))
    print_line(f"last evaluated {when(found['last_evaluated_at']) or 'never'}")
    if found.get("last_error"):
        print_line(f"SLI unreadable: {found['last_error']}")


@slo_app.command("import")
def import_slos(
    file: Annotated[
        Path, typer.Argument(help="A Sloth prometheus/v1 or OpenSLO v1 file; - for stdin.")
    ],
    prometheus_url: Annotated[
        str | None,
        typer.Option("--prometheus-url", help="Where the SLOs' Prometheus answers."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create or update SLOs from a Sloth or OpenSLO file (the format is recognised)."""
    content = read_text(file)
    body: dict[str, Any] = {"content": content}
    if prometheus_url:
        body["prometheus_url"] = prometheus_url
    with connect() as client:
        try:
            summary = client.post("/api/v1/slos/import", json=body)
        except ApiError as exc:
            if exc.field != "prometheus_url":
                raise
            # The server names its own field; here the way to give it is the flag.
            if prometheus_url:  # given, and refused: say what is wrong with it
                reason = exc.message.removeprefix("prometheus_url: ")
                raise ApiError(
                    f"--prometheus-url: {prometheus_url!r} {reason}",
                    status_code=exc.status_code,
                    field=exc.field,
                ) from None
            raise ApiError(
                "the file does not say where Prometheus is: give --prometheus-url URL "
                "(or set the server's prometheus_url)",
                status_code=exc.status_code,
                field=exc.field,
            ) from None
    if json_output:
        print_json(summary)
        return
    parts = [
        f"{len(summary[key])} {key}"
        for key in ("created", "updated", "unchanged")
        if summary.get(key)
    ]
    print_line(f"imported ({summary.get('format')}): " + (", ".join(parts) or "nothing"))
    for key in ("created", "updated"):
        for slo in summary.get(key, []):
            print_line(f"  {key}: {slo}")


@slo_app.command("report")
def report(
    month: Annotated[str, typer.Argument(help="The month, like 2026-11 (UTC).")],
    json_output: JsonOption = False,
) -> None:
    """The SLA report of a month: per service and target, achieved and breached or not."""
    with connect() as client:
        found = client.get("/api/v1/sla/report", params={"month": month})
    if json_output:
        print_json(found)
        return
    if not found["services"]:
        print_line("no SLA targets yet")
        return
    rows = []
    errors = []
    for service in found["services"]:
        for line in service["targets"]:
            used = line["downtime_minutes_used"]
            target = f"{line['kind']} {percent_text(line['target_percent'])}%"
            achieved = _achieved(line)
            if line.get("error"):
                # The source could not be read: say why under the table, as --json does.
                errors.append(f"{service['service']} {target} ({line['source']}): {line['error']}")
                achieved = "unreadable" if line["achieved_percent"] is None else achieved
            rows.append(
                [
                    service["service"],
                    target,
                    line["source"],
                    achieved,
                    "yes" if line["breached"] else "no",
                    f"{line['downtime_minutes_allowed']:.1f}",
                    "—" if used is None else f"{used:.1f}",
                ]
            )
    title = f"SLA {found['month']}" + ("" if found["complete"] else " (month in progress)")
    print_table(
        title,
        ["service", "target", "source", "achieved", "breached", "allowed min", "used min"],
        rows,
    )
    for error in errors:
        print_line(f"unreadable: {error}")
