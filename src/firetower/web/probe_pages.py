"""Console pages of synthetic probes: the list with status-history bars, one probe with its
latency chart (server-side SVG, no chart library), and "run now" for responders.

The chart reads raw results for short ranges and hourly roll-ups for long ones, so a 90-day
chart costs ~2,000 rows whatever the probe's interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from firetower import clock
from firetower.auth.deps import Responder, Viewer
from firetower.auth.schemas import Role
from firetower.errors import DomainError
from firetower.monitors import probes
from firetower.monitors.probe_models import Probe, ProbeResult, ProbeRollup
from firetower.monitors.probe_schemas import NAME
from firetower.runtime import Runtime
from firetower.web.templating import flash, render

router = APIRouter(include_in_schema=False)
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "90d": timedelta(days=90)}  # fmt: skip
RAW_RANGES = ("1h", "24h")
CHART_WIDTH = 760
CHART_HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 12, 28
MAX_POINTS = 360
DETAIL_HISTORY = 60
MIN_FITTED_SPAN = timedelta(minutes=5)
"""The shortest chart of a new probe's default view (a wider span than a few seconds)."""
ProbeName = Annotated[str, Path(pattern=NAME, max_length=100)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# -- the chart -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    at: datetime
    latency_ms: float | None
    ok: bool
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    path: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    series: list[Series]
    failures: list[Marker]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    empty: bool


def _nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def latency_chart(
    lines: Mapping[str, Sequence[Point]], start: datetime, end: datetime, *, hourly: bool = False
) -> Chart:
    """Lay out latency lines over [start, end); failed points become red markers on the axis.

    Times map linearly onto x; latencies onto y from 0 to a rounded maximum.
    """
    plot_left, plot_right = PAD_LEFT, CHART_WIDTH - PAD_RIGHT
    plot_top, plot_bottom = PAD_TOP, CHART_HEIGHT - PAD_BOTTOM
    span = max((end - start).total_seconds(), 1.0)
    highest = max(
        (p.latency_ms for pts in lines.values() for p in pts if p.latency_ms is not None),
        default=0.0,
    )
    top = _nice_ceiling(highest * 1.1)

    def x_of(at: datetime) -> float:
        fraction = min(max((at - start).total_seconds() / span, 0.0), 1.0)
        return round(plot_left + fraction * (plot_right - plot_left), 1)

    def y_of(latency: float) -> float:
        return round(plot_bottom - (latency / top) * (plot_bottom - plot_top), 1)

    series = []
    failures: dict[float, Marker] = {}
    for name, points in lines.items():
        parts: list[str] = []
        pen_down = False
        for p in points:
            if p.latency_ms is None:
                pen_down = False  # a gap, not a line through nothing
            else:
                parts.append(f"{'L' if pen_down else 'M'}{x_of(p.at)},{y_of(p.latency_ms)}")
                pen_down = True
            if not p.ok:
                failures.setdefault(x_of(p.at), Marker(x_of(p.at), plot_bottom, p.label))
        series.append(Series(name, " ".join(parts)))
    y_ticks = [
        Tick(y_of(top * i / 4), f"{top * i / 4:g} ms") for i in range(5)
    ]  # 0, 25, 50, 75, 100 %
    fmt = "%m-%d" if hourly and span > 2 * 86_400 else "%H:%M" if span >= 3600 else "%H:%M:%S"
    x_ticks = [
        Tick(x_of(start + timedelta(seconds=span * i / 4)),
             (start + timedelta(seconds=span * i / 4)).strftime(fmt))
        for i in range(5)
    ]  # fmt: skip
    return Chart(
        CHART_WIDTH,
        CHART_HEIGHT,
        series,
        list(failures.values()),
        y_ticks,
        x_ticks,
        plot_left,
        plot_right,
        plot_top,
        plot_bottom,
        empty=not any(lines.values()),
    )


def _raw_points(results: Sequence[ProbeResult], start: datetime, end: datetime) -> list[Point]:
    """Raw results thinned to ``MAX_POINTS`` buckets: each keeps its slowest run, and a bucket
    with any failure is a failure (so a thinned chart never hides one)."""
    if len(results) <= MAX_POINTS:
        return [
            Point(r.checked_at, r.latency_ms, r.ok, f"{r.checked_at:%H:%M:%S} {r.error or 'ok'}")
            for r in results
        ]
    width = (end - start) / MAX_POINTS
    buckets: dict[int, list[ProbeResult]] = {}
    for r in results:
        buckets.setdefault(int((r.checked_at - start) / width), []).append(r)
    points = []
    for index in sorted(buckets):
        group = buckets[index]
        latencies = [r.latency_ms for r in group if r.latency_ms is not None]
        failed = [r for r in group if not r.ok]
        label = f"{len(failed)} of {len(group)} failed" if failed else f"{len(group)} ok"
        points.append(
            Point(start + width * index, max(latencies) if latencies else None, not failed, label)
        )
    return points


def _rollup_lines(rollups: Sequence[ProbeRollup]) -> dict[str, list[Point]]:
    def label(r: ProbeRollup) -> str:
        return f"{r.hour_start:%m-%d %H:00}: {r.failures} of {r.count} failed"

    return {
        "p50": [Point(r.hour_start, r.latency_p50_ms, r.failures == 0, label(r)) for r in rollups],
        "p95": [Point(r.hour_start, r.latency_p95_ms, r.failures == 0, label(r)) for r in rollups],
    }


# -- pages -----------------------------------------------------------------------------------
@router.get("/probes")
def probe_list(request: Request, actor: Viewer) -> Response:
    runtime = _runtime(request)
    with runtime.read() as session:
        found = probes.list_probes(session)
        history = probes.recent_history(session, [p.id for p in found])
        rows = [
            {
                "probe": p,
                "service": p.service.name if p.service else None,
                "target": probes.target_of(p),
                "history": history[p.id],
            }
            for p in found
        ]
    return render(
        request,
        "probes/list.html",
        {"rows": rows, "can_run": actor.role.allows(Role.responder)},
        actor=actor,
    )


@router.get("/probes/{name}")
def probe_page(
    request: Request,
    name: ProbeName,
    actor: Viewer,
    range: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """Without a ``range`` the chart shows the last 24 hours, or, for a probe younger than
    that, its whole life (so a new probe's runs are not squeezed against the right edge)."""
    runtime = _runtime(request)
    chosen = range if range in RANGES else "24h"
    end = clock.now()
    start = end - RANGES[chosen]
    with runtime.read() as session:
        probe: Probe = probes.get_probe(session, name)
        fitted = range not in RANGES and probe.created_at > start
        if fitted:
            start = min(probe.created_at, end - MIN_FITTED_SPAN)
        service = probe.service.name if probe.service else None
        recent = probes.list_results_by_id(session, probe.id, DETAIL_HISTORY)
        if chosen in RAW_RANGES:
            results = probes.list_results(session, probe, since=start, limit=100_000)
            chart = latency_chart({"latency": _raw_points(results, start, end)}, start, end)
        else:
            rollups = probes.rollups_to_now(session, probe, since=start)
            chart = latency_chart(_rollup_lines(rollups), start, end, hourly=True)
        definition = probes.read_probe(probe, reveal_headers=actor.role.allows(Role.admin))
    return render(
        request,
        "probes/show.html",
        {
            "probe": probe,
            "definition": definition,
            "service": service,
            "target": probes.target_of(probe),
            "recent": recent,
            "chart": chart,
            "ranges": list(RANGES),
            "chosen": chosen,
            "fitted_since": start if fitted else None,
            # Not ``tojson``: it escapes quotes and non-ASCII (``\u0027``) for <script>; in
            # <pre> the text is HTML-escaped by autoescaping instead.
            "definition_json": json.dumps(
                getattr(definition, probe.kind) or {}, indent=2, sort_keys=True, ensure_ascii=False
            ),
            "can_run": actor.role.allows(Role.responder),
            "raw_retention_days": probes.RAW_RETENTION_DAYS,
            "rollup_retention_days": probes.ROLLUP_RETENTION_DAYS,
        },
        actor=actor,
    )


@router.post("/probes/{name}/run")
def run_from_page(request: Request, name: ProbeName, actor: Responder) -> Response:
    """Run now; the page shows the outcome as a flash message after the redirect."""
    try:
        outcome = probes.run_now(_runtime(request), name)
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        flash(request, exc.detail, "error")
        return RedirectResponse(f"/probes/{name}", status_code=303)
    latency = f" in {outcome.latency_ms:.0f} ms" if outcome.latency_ms is not None else ""
    state = (
        f"it is {outcome.state}"
        if outcome.enabled
        else f"it is paused, so its runs move no state (it stays {outcome.state})"
    )
    if outcome.ok:
        flash(request, f"{name} passed{latency}; {state}.")
    else:
        flash(request, f"{name} failed{latency}: {outcome.error}; {state}.", "error")
    return RedirectResponse(f"/probes/{name}", status_code=303)
