"""Client commands for incidents: declare, list, show, update, note, ack, assign, resolve, timeline.

Each command is one or two calls to ``/api/v1/incidents`` through :mod:`firetower.cli.client`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from firetower.cli.client import connect, normalize_ref, segment
from firetower.cli.output import (
    USAGE,
    cell,
    console,
    emit,
    err_console,
    fail,
    print_json,
    print_line,
    print_table,
    when,
)
from firetower.incidents.lifecycle import IncidentRole, Severity, Source, Status

incidents_app = typer.Typer(help="List and show incidents.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]
RefArgument = Annotated[str, typer.Argument(help="The incident, e.g. INC-7 (or just 7).")]


def _path(ref: str, *rest: str) -> str:
    return "/".join(["/api/v1/incidents", segment(normalize_ref(ref)), *rest])


def _headline(incident: dict[str, Any]) -> str:
    return f"{incident['ref']} {incident['severity']} {incident['status']}: {incident['title']}"


def _aware(value: str, option: str) -> datetime:
    """An ISO 8601 timestamp that names its zone; a bad one is a usage error."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-05-01T09:30:00Z)",
            param_hint=option,
        ) from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(
            f"{value!r} has no time zone; add Z or an offset such as +02:00", param_hint=option
        )
    return parsed


def declare(
    title: Annotated[str, typer.Argument(help="What is wrong, in a few words.")],
    severity: Annotated[Severity, typer.Option(help="SEV1 (critical) to SEV4 (low).")] = (
        Severity.SEV3
    ),
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="An affected service from the catalog; repeatable."),
    ] = None,
    summary: Annotated[str, typer.Option(help="What is known so far.")] = "",
    source: Annotated[Source, typer.Option(help="How the incident was found.")] = Source.manual,
    data_at_risk: Annotated[bool, typer.Option("--data-at-risk")] = False,
    security_at_risk: Annotated[bool, typer.Option("--security-at-risk")] = False,
    revenue_at_risk: Annotated[bool, typer.Option("--revenue-at-risk")] = False,
    impact_started: Annotated[
        str | None,
        typer.Option(
            "--impact-started",
            help="When users started to feel it: ISO 8601 with a zone, e.g. 2026-05-01T09:30:00Z.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Declare an incident and print its reference (e.g. INC-7)."""
    body: dict[str, Any] = {
        "title": title,
        "severity": severity.value,
        "services": service or [],
        "summary": summary,
        "source": source.value,
        "data_at_risk": data_at_risk,
        "security_at_risk": security_at_risk,
        "revenue_at_risk": revenue_at_risk,
    }
    if impact_started is not None:
        body["impact_started_at"] = _aware(impact_started, "--impact-started").isoformat()
    with connect() as client:
        incident = client.post("/api/v1/incidents", json=body)
    if json_output:
        print_json(incident)
        return
    print_line(incident["ref"])
    if incident["severity"] != severity.value:
        err_console.print(
            f"note: the severity policy raised {incident['ref']} from {severity.value} "
            f"to {incident['severity']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _summary_row(incident: dict[str, Any]) -> list[Any]:
    return [
        incident["ref"],
        incident["severity"],
        incident["status"],
        incident["title"],
        incident["services"],
        when(incident["declared_at"]),
    ]


@incidents_app.command("list")
def list_incidents(
    status: Annotated[
        list[Status] | None, typer.Option("--status", help="Only this status; repeatable.")
    ] = None,
    severity: Annotated[
        list[Severity] | None, typer.Option("--severity", help="Only this severity; repeatable.")
    ] = None,
    service: Annotated[str | None, typer.Option(help="Only incidents of this service.")] = None,
    active: Annotated[
        bool,
        typer.Option(
            "--active/--all",
            help="Only incidents still being worked on (triage to mitigated), or all.",
        ),
    ] = False,
    search: Annotated[
        str | None, typer.Option(help="Only incidents whose title or summary holds this text.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many.")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="The next-page cursor a previous listing printed.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """List incidents, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = [s.value for s in status]
    if severity:
        params["severity"] = [s.value for s in severity]
    if service:
        params["service"] = service
    if active:
        params["active"] = "true"
    if search:
        params["q"] = search
    if cursor:
        params["cursor"] = cursor
    with connect() as client:
        page = client.get("/api/v1/incidents", params=params)
    if json_output:
        print_json(page)
        return
    items = page["items"]
    if not items:
        print_line("no incidents match")
        return
    print_table(
        None,
        ["ref", "severity", "status", "title", "services", "declared"],
        [_summary_row(i) for i in items],
    )
    if page.get("next_cursor"):
        print_line(f"more: --cursor {page['next_cursor']}")


def _section(title: str) -> None:
    console.print()
    console.print(Text(title, style="bold"), soft_wrap=True)


def _key_values(rows: list[tuple[str, Any]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, cell(value))
    emit(grid)


def _change(event: dict[str, Any]) -> str:
    """E.g. ``status: triage -> mitigated``, for timeline entries that carry no text."""
    before, after = event.get("before"), event.get("after")
    if not isinstance(after, dict):
        return ""
    before = before if isinstance(before, dict) else {}
    return "; ".join(
        f"{key}: {before[key]} -> {value}" if key in before else f"{key}: {value}"
        for key, value in after.items()
    )


def _timeline_rows(events: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            when(e["at"]),
            e["actor"],
            e["kind"],
            ("[pinned] " if e.get("pinned") else "") + (e.get("text") or _change(e)),
        ]
        for e in events
    ]


def _radius_rows(radius: dict[str, Any]) -> list[tuple[str, Any]]:
    """The blast radius as the console shows it, with why services are in trouble: their
    failing checks, the dependents those put at risk, and failing services upstream."""
    checks = radius.get("failing_checks") or {}
    why = [
        ("failing checks", "; ".join(f"{svc}: {', '.join(c)}" for svc, c in checks.items())),
        ("at risk", radius.get("at_risk") or []),
        ("failing upstream", radius.get("failing_dependencies") or []),
    ]
    return [
        ("impacted services", radius["impacted"]),
        *[(label, value) for label, value in why if value],
        ("tier-1 impacted", radius["tier1_impacted"] or "none"),
        ("features", radius["features"] or "none"),
        ("customers", radius["customers"] or "none"),
        ("users (estimate)", f"{radius['users_estimate']:,}"),
    ]


def _holder(email: str | None, active: bool | None) -> str | None:
    """A role holder, task assignee or participant, marked once deactivated: work stays
    theirs until handed over (a server without the field marks nobody)."""
    return f"{email} (deactivated)" if email is not None and active is False else email


@incidents_app.command("show")
def show(
    ref: RefArgument,
    last: Annotated[int, typer.Option(min=0, help="How many timeline entries to show.")] = 10,
    json_output: JsonOption = False,
) -> None:
    """Show one incident: summary, lifecycle, roles, tasks, blast radius, latest timeline."""
    with connect() as client:
        incident = client.get(_path(ref))
        events = client.get(_path(ref, "timeline"))["items"] if last else []
    if json_output:
        print_json(incident)
        return
    console.print(Text(_headline(incident), style="bold"), soft_wrap=True)
    risks = [name for name in ("data", "security", "revenue") if incident.get(f"{name}_at_risk")]
    _key_values(
        [
            ("services", incident["services"] or "none"),
            ("source", incident["source"]),
            # The incident's own flags, not service health (that is under Blast radius).
            ("data/security/revenue risk", risks or "none flagged"),
            ("next statuses", incident["allowed_transitions"] or "none (final)"),
        ]
        + ([("merged into", incident["merged_into"])] if incident.get("merged_into") else [])
    )
    if incident["summary"]:
        _section("Summary")
        console.print(Text(incident["summary"]), soft_wrap=True)
    _section("Lifecycle")
    _key_values(
        [
            (label, when(incident[key]) or "-")
            for label, key in (
                ("impact started", "impact_started_at"),
                ("detected", "detected_at"),
                ("declared", "declared_at"),
                ("acknowledged", "acknowledged_at"),
                ("mitigated", "mitigated_at"),
                ("resolved", "resolved_at"),
                ("closed", "closed_at"),
            )
        ]
    )
    _section("Roles")
    if incident["roles"]:
        _key_values(
            [(r["role"], _holder(r["user"], r.get("user_active"))) for r in incident["roles"]]
        )
    else:
        print_line("nobody holds a role yet")
    if incident["participants"]:
        deactivated = incident.get("deactivated_participants")
        marked = [
            _holder(p, None if deactivated is None else p not in deactivated)
            for p in incident["participants"]
        ]
        _key_values([("participants", marked)])
    _section("Tasks")
    if incident["tasks"]:
        print_table(
            None,
            ["id", "status", "title", "assignee"],
            [
                [t["id"], t["status"], t["title"], _holder(t["assignee"], t.get("assignee_active"))]
                for t in incident["tasks"]
            ],
        )
    else:
        print_line("no tasks")
    radius = incident.get("blast_radius")
    if radius:
        _section("Blast radius")
        _key_values(_radius_rows(radius))
    if last:
        shown = events[-last:]
        _section(f"Timeline (last {len(shown)} of {len(events)})")
        print_table(None, ["at", "actor", "kind", "text"], _timeline_rows(shown))


def update(
    ref: RefArgument,
    status: Annotated[Status | None, typer.Option(help="Move to this status.")] = None,
    severity: Annotated[Severity | None, typer.Option(help="Change the severity.")] = None,
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    summary: Annotated[str | None, typer.Option(help="A new summary.")] = None,
    merged_into: Annotated[
        str | None,
        typer.Option(help="Merge it into this incident (status merged), e.g. INC-3."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Change an incident's status, severity, title or summary, or merge it into another."""
    body: dict[str, Any] = {}
    if merged_into is not None:
        if status not in (None, Status.merged):
            raise typer.BadParameter(
                f"--merged-into sets the status merged; leave out --status {status.value}",
                param_hint="'--status'",
            )
        status = Status.merged
        body["merged_into"] = normalize_ref(merged_into)
    if status is not None:
        body["status"] = status.value
    if severity is not None:
        body["severity"] = severity.value
    if title is not None:
        body["title"] = title
    if summary is not None:
        body["summary"] = summary
    if not body:
        fail(
            "nothing to update: give --status, --severity, --title, --summary or --merged-into",
            USAGE,
        )
    with connect() as client:
        incident = client.patch(_path(ref), json=body)
    if json_output:
        print_json(incident)
    else:
        print_line(_headline(incident))


def note(
    ref: RefArgument,
    text: Annotated[str, typer.Argument(help="The note, as it should read on the timeline.")],
    pin: Annotated[bool, typer.Option("--pin", help="Pin it to the top of the timeline.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Add a note to an incident's timeline."""
    with connect() as client:
        event = client.post(_path(ref, "notes"), json={"text": text, "pinned": pin})
    if json_output:
        print_json(event)
    else:
        print_line(f"note {event['id']} added to {normalize_ref(ref)}")


def resolve(
    ref: RefArgument,
    note_text: Annotated[
        str, typer.Option("--note", help="Why it is resolved; kept on the timeline.")
    ] = "",
    json_output: JsonOption = False,
) -> None:
    """Mark an incident resolved."""
    with connect() as client:
        incident = client.post(
            _path(ref, "transitions"), json={"to": Status.resolved.value, "note": note_text}
        )
    if json_output:
        print_json(incident)
    else:
        print_line(_headline(incident))


def ack(ref: RefArgument, json_output: JsonOption = False) -> None:
    """Acknowledge an incident (and join it as a participant)."""
    with connect() as client:
        incident = client.post(_path(ref, "acknowledge"))
    if json_output:
        print_json(incident)
    else:
        print_line(f"{incident['ref']} acknowledged at {when(incident['acknowledged_at'])}")


def assign(
    ref: RefArgument,
    role: Annotated[IncidentRole, typer.Argument(help="The incident role to hand over.")],
    email: Annotated[str, typer.Argument(help="The email of the new holder.")],
    json_output: JsonOption = False,
) -> None:
    """Give an incident role (commander, scribe, ...) to a user."""
    with connect() as client:
        assignment = client.put(_path(ref, "roles", role.value), json={"user": email})
    if json_output:
        print_json(assignment)
    else:
        print_line(f"{assignment['user']} is now {assignment['role']} of {normalize_ref(ref)}")


def timeline(
    ref: RefArgument,
    pinned: Annotated[bool, typer.Option("--pinned", help="Only pinned entries.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Print an incident's timeline, oldest first."""
    params = {"pinned": "true"} if pinned else None
    with connect() as client:
        page = client.get(_path(ref, "timeline"), params=params)
    if json_output:
        print_json(page)
        return
    print_table(None, ["at", "actor", "kind", "text"], _timeline_rows(page["items"]))
