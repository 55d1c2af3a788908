"""Client commands for signals: alerts and their groups, silences, integrations and keys.

Each command is one or two calls to the signals API (``/api/v1/alerts``, ``/silences``,
``/integrations``, ...) through :mod:`firetower.cli.client`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from firetower.cli.client import ApiError, Client, connect, segment
from firetower.cli.output import (
    USAGE,
    fail,
    print_json,
    print_line,
    print_note,
    print_table,
    when,
)
from firetower.errors import InvalidInput
from firetower.signals.queries import format_matcher, parse_matcher, web_links
from firetower.signals.schemas import SILENCE_MAX_SECONDS, AlertStatus, IntegrationKind

alerts_app = typer.Typer(help="Alerts received from integrations.", no_args_is_help=True)
silence_app = typer.Typer(help="Silences that mute matching alerts.", no_args_is_help=True)
integrations_app = typer.Typer(help="Integrations and their ingest keys.", no_args_is_help=True)
changes_app = typer.Typer(
    help="Change events (deploys, config changes) sent to /v2/change/enqueue.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]
LimitOption = Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")]
"""The lists' --limit: the API's own bounds (1 to 1,000)."""
STATUS_ORDER = {"firing": 0, "acknowledged": 1}
_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
MAPPING_FIELDS = ("title", "severity", "dedup_key", "service", "status")


def parse_duration(text: str) -> timedelta:
    """``90m``, ``2h``, ``1h30m``, ``7d``, ``1w``: one or more number-unit pairs, above zero."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like 30m, 2h, 1h30m or 7d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not longer than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None


def _aware(value: str, option: str, *, or_duration: bool = False) -> datetime:
    """An ISO 8601 time with a zone; a usage error naming ``option`` otherwise (saying a
    duration would do too when ``or_duration``)."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        example = "an ISO 8601 time like 2026-05-01T09:30:00Z"
        wanted = f"neither {example} nor a duration like 2h" if or_duration else f"not {example}"
        fail(f"{option}: {value!r} is {wanted}", USAGE)
    if "t" not in text.lower() and " " not in text:
        fail(
            f"{option}: {value!r} is a date; give a time with a zone: {text[:10]}T00:00:00Z", USAGE
        )
    if parsed.tzinfo is None:
        fail(f"{option}: {value!r} has no time zone; add Z or an offset such as +02:00", USAGE)
    return parsed


# -- alerts --------------------------------------------------------------------------------------
ALERT_COLUMNS = [
    "id",
    "status",
    "severity",
    "title",
    "labels",
    "service",
    "integration",
    "count",
    "last seen",
    "incident",
    "marks",
]


SHOWN_LABELS_ELSEWHERE = frozenset({"alertname", "service", "severity"})
"""Labels the title, service and severity columns already stand for."""


def _labels(alert: dict[str, Any]) -> str:
    """The labels that tell apart alerts of one name and service (instance, job, path...)."""
    labels = alert.get("labels") or {}
    return " ".join(
        f"{key}={value}"
        for key, value in sorted(labels.items())
        if key not in SHOWN_LABELS_ELSEWHERE
    )


ROUTING_MARKS = {"drop": "dropped", "notify": "notify only"}
"""Routing actions that leave a firing alert without an incident, as the marks column says."""


def _marks(alert: dict[str, Any]) -> str:
    """Why a firing alert may page nobody: muted, dropped or notify-only by a rule, flapping,
    or of no service the catalog knows (it opens no incident)."""
    marks = [name for name in ("silenced", "inhibited", "flapping") if alert.get(name)]
    action = alert.get("routing_action") or ""
    routed = ROUTING_MARKS.get(action)
    if routed:
        rule = alert.get("routed_by")
        marks.append(f"{routed} (rule {rule})" if rule else routed)
    if alert.get("status") != "resolved" and not (alert.get("incident") or marks):
        if action in ("open", "attach") and not alert.get("service_name"):
            marks.append("no service")
        elif action == "attach":
            marks.append("waiting for an incident")
    return ", ".join(marks)


@alerts_app.command("list")
def list_alerts(
    status: Annotated[AlertStatus | None, typer.Option(help="Only alerts in this state.")] = None,
    integration: Annotated[
        str | None, typer.Option(help="Only alerts from this integration.")
    ] = None,
    silenced: Annotated[
        bool | None,
        typer.Option("--silenced/--not-silenced", help="Only alerts whose last firing was muted."),
    ] = None,
    flapping: Annotated[
        bool | None, typer.Option("--flapping/--not-flapping", help="Only flapping alerts.")
    ] = None,
    inhibited: Annotated[
        bool | None,
        typer.Option("--inhibited/--not-inhibited", help="Only alerts an inhibition rule mutes."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Only alerts of this group (a group key of `alerts groups`)."),
    ] = None,
    incident: Annotated[
        str | None,
        typer.Option(help="Only alerts that opened or last joined this incident (INC-7)."),
    ] = None,
    limit: LimitOption = 100,
    json_output: JsonOption = False,
) -> None:
    """List alerts: firing first, then acknowledged, then resolved; newest first in each."""
    params: dict[str, Any] = {}
    if integration is not None:  # an empty one too: the server says no such integration
        params["integration"] = integration
    if group is not None:  # "" too: the group of an integration that groups by no label
        params["group_key"] = group
    if incident is not None:
        params["incident"] = incident
    for name, wanted in (("silenced", silenced), ("flapping", flapping), ("inhibited", inhibited)):
        if wanted is not None:
            params[name] = str(wanted).lower()
    # The API lists last seen first across statuses, so one call cut at --limit could hold
    # only resolved alerts seen after a firing one: ask status by status, firing first.
    every = sorted(AlertStatus, key=lambda s: STATUS_ORDER.get(s, 2))
    statuses = [status] if status is not None else every
    ordered: list[dict[str, Any]] = []
    with connect() as client:
        for shown in statuses:
            left = limit - len(ordered)
            if left <= 0:
                break
            params.update(status=shown.value, limit=left)
            ordered += client.get("/api/v1/alerts", params=params)
    if json_output:
        print_json(ordered)
        return
    if not ordered:
        print_line("no alerts match")
        return
    print_table(
        None,
        ALERT_COLUMNS,
        [
            [
                a["id"],
                a["status"],
                a["severity"],
                a["title"],
                _labels(a),
                a["service_name"],
                a["integration"],
                a["count"],
                when(a["last_seen_at"]),
                a["incident"],
                _marks(a),
            ]
            for a in ordered
        ],
    )


AlertId = Annotated[int, typer.Argument(metavar="ID", help="The alert (its id in `alerts list`).")]


def _set_status(alert_id: int, action: str, json_output: bool) -> None:
    """POST the alert's acknowledge or resolve; print what it is now."""
    with connect() as client:
        alert = client.post(f"/api/v1/alerts/{alert_id}/{action}")
    if json_output:
        print_json(alert)
        return
    by = f" by {alert['status_by']}" if alert.get("status_by") else ""
    incident = f" (incident {alert['incident']})" if alert.get("incident") else ""
    print_line(f"alert {alert['id']} {alert['status']}{by}{incident}: {alert['title']}")


@alerts_app.command("ack")
def acknowledge_alert(alert_id: AlertId, json_output: JsonOption = False) -> None:
    """Acknowledge an alert by hand: someone is on it (a resolved one is refused)."""
    _set_status(alert_id, "acknowledge", json_output)


@alerts_app.command("resolve")
def resolve_alert(alert_id: AlertId, json_output: JsonOption = False) -> None:
    """Resolve an alert by hand, as its sender's resolve would; its sender may fire it again."""
    _set_status(alert_id, "resolve", json_output)


@alerts_app.command("groups")
def list_groups(
    integration: Annotated[
        str | None, typer.Option(help="Only groups of this integration.")
    ] = None,
    limit: LimitOption = 100,
    json_output: JsonOption = False,
) -> None:
    """List alert groups (alerts with the same group-by label values), most recent first."""
    params: dict[str, Any] = {"limit": limit}
    if integration is not None:  # an empty one too: the server says no such integration
        params["integration"] = integration
    with connect() as client:
        groups = client.get("/api/v1/alert-groups", params=params)
    if json_output:
        print_json(groups)
        return
    if not groups:
        print_line("no alert groups")
        return
    print_table(
        None,
        ["group", "integration", "firing", "resolved", "last seen", "incident"],
        [
            [
                g["group_key"] or "(all)",
                g["integration"],
                g["firing"],
                g["resolved"],
                when(g["last_seen_at"]),
                g["incident"],
            ]
            for g in groups
        ],
    )


# -- silences ------------------------------------------------------------------------------------
def _silence_line(silence: dict[str, Any]) -> str:
    matchers = " ".join(format_matcher(m) for m in silence["matchers"])
    return f"silence {silence['id']} until {when(silence['ends_at'])}: {matchers}"


@silence_app.command("add")
def add_silence(
    matcher: Annotated[
        list[str] | None,
        typer.Option(
            "--matcher",
            "-m",
            help="label=value, label!=value, label=~regex or label!~regex; repeatable, all "
            "must hold.",
        ),
    ] = None,
    alert: Annotated[
        int | None,
        typer.Option(help="Silence this alert (its exact labels) instead of giving matchers."),
    ] = None,
    duration: Annotated[
        str, typer.Option(help="How long from the start: 30m, 2h, 1h30m, 7d, ...")
    ] = "1h",
    start: Annotated[
        str | None,
        typer.Option(help="When it starts (ISO 8601 with a zone); now when left out."),
    ] = None,
    comment: Annotated[str, typer.Option(help="Why, and who to ask.")] = "",
    json_output: JsonOption = False,
) -> None:
    """Mute alerts whose labels match every matcher (or one alert's labels) for a while."""
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration: {exc}", USAGE)
    if length.total_seconds() > SILENCE_MAX_SECONDS:
        fail(f"--duration: a silence lasts at most {SILENCE_MAX_SECONDS // 86_400} days", USAGE)
    if alert is not None:
        if matcher or start:
            fail(
                "--alert silences from now on that alert's labels: leave out --matcher and --start",
                USAGE,
            )
        if length.total_seconds() % 60:
            fail("--duration: a silence made from an alert lasts whole minutes", USAGE)
        body: dict[str, Any] = {
            "duration_minutes": int(length.total_seconds() // 60),
            "comment": comment,
        }
        with connect() as client:
            silence = client.post(f"/api/v1/alerts/{alert}/silence", json=body)
    else:
        if not matcher:
            fail("give --matcher LABEL=VALUE (repeatable) or --alert ID", USAGE)
        try:
            parsed = [parse_matcher(m) for m in matcher]
        except InvalidInput as exc:
            fail(f"--matcher: {exc.detail.removeprefix('matchers: ')}", USAGE)
        body = {
            "matchers": [m.model_dump(mode="json") for m in parsed],
            "comment": comment,
        }
        if start:
            begins = _aware(start, "--start")
            try:
                ends = begins + length
            except OverflowError:
                fail("--duration: the silence would end after the year 9999", USAGE)
            body.update(starts_at=begins.isoformat(), ends_at=ends.isoformat())
        else:  # from the server's now: this machine's clock may be off
            body["duration_seconds"] = int(length.total_seconds())
        with connect() as client:
            try:
                silence = client.post("/api/v1/silences", json=body)
            except ApiError as exc:
                if not (start and exc.field == "ends_at"):
                    raise
                # The end is worked out here from the two options: name them, not ends_at.
                raise ApiError(
                    f"--start plus --duration ends at {when(body['ends_at'])}, in the past: "
                    "the silence would be over already",
                    status_code=exc.status_code,
                    field=exc.field,
                ) from None
    if json_output:
        print_json(silence)
    else:
        print_line(_silence_line(silence))


@silence_app.command("list")
def list_silences(
    show_all: Annotated[
        bool, typer.Option("--all", help="Expired and ended silences too.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List the active and pending silences (with --all, every one, newest first).

    A pending silence starts later. An expired silence (ended early) shows when it was
    expired as its end.
    """
    with connect() as client:
        silences = client.get("/api/v1/silences", params={"all": "true"} if show_all else None)
    if json_output:
        print_json(silences)
        return
    if not silences:
        print_line("no silences" if show_all else "no active or pending silences")
        return
    print_table(
        None,
        ["id", "state", "matchers", "starts", "ends", "by", "comment"],
        [
            [
                s["id"],
                s["state"],
                " ".join(format_matcher(m) for m in s["matchers"]),
                when(s["starts_at"]),
                when(s.get("expired_at") or s["ends_at"]),
                s["created_by"],
                s["comment"],
            ]
            for s in silences
        ],
    )


@silence_app.command("expire")
def expire_silence(
    silence_id: Annotated[int, typer.Argument(metavar="ID", help="The silence to end now.")],
    json_output: JsonOption = False,
) -> None:
    """End a silence now; the server says why when it will not."""
    with connect() as client:
        silence = client.post(f"/api/v1/silences/{silence_id}/expire")
    if json_output:
        print_json(silence)
    else:
        print_line(f"silence {silence['id']} expired")


# -- integrations ----------------------------------------------------------------------------------
def _key_lines(client: Client, integration: dict[str, Any], verb: str) -> None:
    name, key, kind = integration["name"], integration["key"], integration["kind"]
    print_line(f"integration {name} {verb}; its key (shown once, copy it now):")
    print_line(key)
    if kind == IntegrationKind.pagerduty.value:
        print_line(f"send PagerDuty events to {client.base_url}/v2/enqueue with this routing_key")
    else:
        print_line(f"send to {client.base_url}/ingest/{kind}/{key}")


def _mapping(pairs: list[str]) -> dict[str, str]:
    """``--map`` options as the API's mapping; a field given twice is refused, not the last
    one kept."""
    mapping: dict[str, str] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        field, sep, expression = pair.partition("=")
        field = field.strip()
        if not sep or field not in MAPPING_FIELDS or not expression.strip():
            fail(
                f"--map: {pair!r} is not FIELD=JMESPATH with FIELD one of "
                + ", ".join(MAPPING_FIELDS),
                USAGE,
            )
        if field in given:
            fail(
                f"--map: {field} is mapped twice ({given[field]!r} and {pair!r}); "
                "give each field once",
                USAGE,
            )
        given[field] = pair
        mapping[field] = expression.strip()
    return mapping


@integrations_app.command("create")
def create_integration(
    name: Annotated[str, typer.Argument(help="Lower case letters, digits, '.', '_' or '-'.")],
    kind: Annotated[IntegrationKind, typer.Option(help="What sends to it.")],
    service: Annotated[
        str | None, typer.Option(help="The catalog service its alerts open incidents for.")
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="A label key that groups alerts; repeatable."),
    ] = None,
    flap_threshold: Annotated[
        int | None, typer.Option(help="State changes within the window that mean flapping.")
    ] = None,
    flap_window_seconds: Annotated[int | None, typer.Option(help="The flapping window.")] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="Generic webhooks: FIELD=JMESPATH for title (required), severity, dedup_key, "
            "service, status; repeatable, each field once.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create an integration and print its ingest key, once."""
    body: dict[str, Any] = {"name": name, "kind": kind.value}
    if service:
        body["service_name"] = service
    if group_by:
        body["group_by"] = group_by
    if flap_threshold is not None:
        body["flap_threshold"] = flap_threshold
    if flap_window_seconds is not None:
        body["flap_window_seconds"] = flap_window_seconds
    if map_:
        body["mapping"] = _mapping(map_)
    with connect() as client:
        integration = client.post("/api/v1/integrations", json=body)
        if json_output:
            print_json(integration)
        else:
            _key_lines(client, integration, "created")


@integrations_app.command("list")
def list_integrations(json_output: JsonOption = False) -> None:
    """List integrations: kind, service, the start of their key, and whether revoked."""
    with connect() as client:
        integrations = client.get("/api/v1/integrations")
    if json_output:
        print_json(integrations)
        return
    if not integrations:
        print_line("no integrations")
        return
    print_table(
        None,
        ["name", "kind", "service", "key", "group by", "created", "revoked"],
        [
            [
                i["name"],
                i["kind"],
                i["service_name"],
                f"{i['key_prefix']}…",
                i["group_by"],
                when(i["created_at"]),
                when(i["revoked_at"]),
            ]
            for i in integrations
        ],
    )


@integrations_app.command("rotate")
def rotate_integration(
    name: Annotated[str, typer.Argument(help="The integration whose key to replace.")],
    json_output: JsonOption = False,
) -> None:
    """Give an integration a new key; the old one stops working at once."""
    with connect() as client:
        integration = client.post(f"/api/v1/integrations/{segment(name)}/rotate")
        if json_output:
            print_json(integration)
        else:
            _key_lines(client, integration, "rotated")


@integrations_app.command("revoke")
def revoke_integration(
    name: Annotated[str, typer.Argument(help="The integration to shut off.")],
) -> None:
    """Revoke an integration: its key stops working; its alerts stay."""
    with connect() as client:
        client.request("DELETE", f"/api/v1/integrations/{segment(name)}")
    print_line(f"integration {name} revoked")


# -- change events ------------------------------------------------------------------------------
def _moment(value: str, option: str) -> datetime:
    """An ISO 8601 time with a zone, or a duration back from now (``2h``: two hours ago)."""
    text = value.strip()
    if text[:1].isdigit() and not any(mark in text for mark in "-:Tt"):  # a duration's shape
        try:
            return datetime.now(UTC) - parse_duration(text)
        except ValueError as exc:
            fail(f"{option}: {exc}", USAGE)
        except OverflowError:
            fail(f"{option}: {value!r} reaches back before the year 1", USAGE)
    return _aware(value, option, or_duration=True)


@changes_app.command("list")
def list_changes(
    integration: Annotated[
        str | None, typer.Option(help="Only changes sent with this integration's key.")
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Only changes of this catalog service.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only changes at or after this: an ISO time, or 2h for two hours ago."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only changes at or before this: an ISO time or 2h.")
    ] = None,
    limit: LimitOption = 100,
    json_output: JsonOption = False,
) -> None:
    """List change events, newest first: what changed before an incident began?"""
    params: dict[str, Any] = {"limit": limit}
    if integration is not None:  # an empty one too: the server says no such integration
        params["integration"] = integration
    if service is not None:
        params["service"] = service
    if since is not None:
        params["since"] = _moment(since, "--since").isoformat()
    if until is not None:
        params["until"] = _moment(until, "--until").isoformat()
    with connect() as client:
        changes = client.get("/api/v1/change-events", params=params)
    if len(changes) == limit:  # on stderr, so it never mixes with the JSON
        print_note(f"the newest {limit} are shown; narrow the filters or raise --limit")
    if json_output:
        print_json(changes)
        return
    if not changes:
        print_line("no change events match")
        return
    print_table(
        None,
        ["id", "when", "service", "summary", "source", "integration", "link"],
        [
            [
                c["id"],
                when(c["timestamp"]),
                c["service_name"] or "—",
                c["summary"],
                c["source"] or "—",
                c["integration"],
                next((url for _, url in web_links(c["links"])), ""),
            ]
            for c in changes
        ],
    )


def _preview(body: str, chars: int = 60) -> str:
    flat = " ".join(body.split())
    return flat[:chars] + ("…" if len(flat) > chars else "")


@integrations_app.command("rejected")
def list_rejected(
    limit: LimitOption = 100,
    json_output: JsonOption = False,
) -> None:
    """List refused intake requests (dead letters): when, for which integration, and why."""
    with connect() as client:
        letters = client.get("/api/v1/rejected-payloads", params={"limit": limit})
    if json_output:
        print_json(letters)
        return
    if not letters:
        print_line("no refused requests")
        return
    print_table(
        None,
        ["id", "received", "integration", "reason", "bytes", "body"],
        [
            [
                d["id"],
                when(d["received_at"]),
                d["integration"] or "—",
                d["reason"],
                f"{d['received_bytes']:,}",
                _preview(d["body"]),
            ]
            for d in letters
        ],
    )
