"""Client commands for synthetic probes: list them with their state, run one now."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from firetower.cli.client import connect, segment
from firetower.cli.output import print_json, print_line, print_table, when

probes_app = typer.Typer(help="Synthetic probes (HTTP, TCP, DNS).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]


def _target(probe: dict[str, object]) -> str:
    kind = str(probe["kind"])
    settings = probe.get(kind)
    if not isinstance(settings, dict):
        return ""
    if kind == "http":
        return f"{settings.get('method', 'GET')} {settings.get('url', '')}"
    if kind == "tcp":
        return f"{settings.get('host')}:{settings.get('port')}"
    return f"{settings.get('record_type', 'A')} {settings.get('name')}"


def _latency(value: object) -> str:
    return f"{float(value):.0f} ms" if isinstance(value, int | float) else ""


def _streak(outcome: dict[str, Any]) -> str:
    """When this run's outcome is not (yet) the state: how many more it takes to move it."""
    if not outcome["ok"] and outcome["state"] != "down":
        count, needed, kind, then = (
            outcome["consecutive_failures"],
            outcome["failure_threshold"],
            "failures",
            "down",
        )
    elif outcome["ok"] and outcome["state"] != "up":
        count, needed, kind, then = (
            outcome["consecutive_successes"],
            outcome["success_threshold"],
            "passes",
            "up",
        )
    else:
        return ""
    return f" ({count} of {needed} {kind} before {then})"


@probes_app.command("list")
def list_probes(json_output: JsonOption = False) -> None:
    """List probes with their state and last result."""
    with connect() as client:
        found = client.get("/api/v1/probes")
    if json_output:
        print_json(found)
        return
    if not found:
        print_line("no probes yet: see docs/probes.md to define one")
        return
    print_table(
        None,
        ["name", "kind", "state", "service", "target", "last latency", "last checked", "error"],
        [
            [
                p["name"],
                p["kind"],
                p["state"] if p["enabled"] else "paused",
                p["service"],
                _target(p),
                _latency(p["last_latency_ms"]),
                when(p["last_checked_at"]),
                p["last_error"],
            ]
            for p in found
        ],
    )


@probes_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="The probe's name.")],
    json_output: JsonOption = False,
) -> None:
    """Run a probe now; the run is stored and counts toward its thresholds.

    Exits 1 when the probe failed, so a script can act on it.
    """
    with connect() as client:
        outcome = client.post(f"/api/v1/probes/{segment(name)}/run")
    if json_output:
        print_json(outcome)
    else:
        latency = _latency(outcome["latency_ms"])
        status = f" (status {outcome['status_code']})" if outcome.get("status_code") else ""
        verdict = "passed" if outcome["ok"] else "failed"
        took = f" in {latency}" if latency else ""
        if outcome.get("enabled", True):
            then = f"state {outcome['state']}{_streak(outcome)}"
        else:
            then = f"paused, so its runs move no state (it stays {outcome['state']})"
        print_line(f"{name} {verdict}{took}{status}; {then}")
        if outcome.get("error"):
            print_line(f"reason: {outcome['error']}")
    if not outcome["ok"]:
        raise typer.Exit(1)
