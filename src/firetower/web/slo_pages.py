"""Console pages of SLOs: the list, and one SLO with its budget burn chart (server-side SVG)
and burn rates; the SLA report of a month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from firetower import clock
from firetower.auth.deps import Viewer
from firetower.errors import InvalidInput
from firetower.monitors import sla, slos
from firetower.monitors.burn import RULES, WINDOWS_SECONDS
from firetower.monitors.rounding import percent_shown, percent_text
from firetower.monitors.slo_schemas import SlaLine
from firetower.runtime import Runtime
from firetower.web.templating import render

router = APIRouter(include_in_schema=False)

CHART_WIDTH = 760
CHART_HEIGHT = 240
PAD_LEFT = 48
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 28


@dataclass(frozen=True)
class Gridline:
    y: float
    label: str


@dataclass(frozen=True)
class BudgetChart:
    """A polyline of the budget left (percent) over time, with its axes, ready to draw."""

    points: str
    gridlines: list[Gridline]
    first: datetime | None
    last: datetime | None
    last_value: float | None
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = PAD_LEFT
    right: int = CHART_WIDTH - PAD_RIGHT
    zero_y: float = 0.0


def budget_chart(history: list[tuple[datetime, float]]) -> BudgetChart:
    """Scale (time, remaining fraction) points into the chart box.

    The y axis runs from 100 % down to 0 %, or lower when the budget was overspent, so the
    zero line (budget gone) is always drawn.
    """
    values = [v * 100 for _, v in history]
    top = 100.0
    bottom = min(0.0, min(values, default=0.0))
    span_y = top - bottom or 1.0
    inner_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    inner_w = CHART_WIDTH - PAD_LEFT - PAD_RIGHT

    def y_of(value: float) -> float:
        return PAD_TOP + (top - value) / span_y * inner_h

    points = ""
    if history:
        start, end = history[0][0], history[-1][0]
        span_x = (end - start).total_seconds() or 1.0
        coordinates = []
        for (at, _), value in zip(history, values, strict=True):
            x = PAD_LEFT + (at - start).total_seconds() / span_x * inner_w
            coordinates.append(f"{x:.1f},{y_of(value):.1f}")
        if len(coordinates) == 1:  # one evaluation: a flat line across
            coordinates.append(f"{PAD_LEFT + inner_w:.1f},{y_of(values[0]):.1f}")
        points = " ".join(coordinates)
    gridlines = [Gridline(y_of(m), f"{m:g}%") for m in (100.0, 50.0, 0.0)]  # fixed marks
    # The overspent bottom is any number: as the page's budget figures, to two decimals,
    # never an exponent; none where it reads as the zero line already.
    lowest = percent_text(round(bottom, 2) + 0.0)  # + 0.0: -0.0 reads "0"
    if bottom < 0 and lowest != "0":
        gridlines.append(Gridline(y_of(bottom), f"{lowest}%"))
    return BudgetChart(
        points=points,
        gridlines=gridlines,
        first=history[0][0] if history else None,
        last=history[-1][0] if history else None,
        last_value=values[-1] if values else None,
        zero_y=y_of(0.0),
    )


@router.get("/slos")
def slo_list(request: Request, actor: Viewer) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.read() as session:
        items = [slos.read_slo(session, s) for s in slos.list_slos(session)]
    return render(request, "slos/list.html", {"slos": items}, actor=actor)


@router.get("/slos/{name}")
def slo_page(request: Request, name: str, actor: Viewer) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.read() as session:
        slo = slos.get_slo(session, name)
        item = slos.read_slo(session, slo)
        chart = budget_chart(slos.budget_history(session, slo))
        recent = slos.read_evaluations(slos.evaluations(session, slo, limit=30))
    return render(
        request,
        "slos/show.html",
        {
            "slo": item,
            "chart": chart,
            "evaluations": recent,
            "windows": [*WINDOWS_SECONDS, slos.window_label(item.window_days)],
            "rules": RULES,
        },
        actor=actor,
    )


@router.get("/sla")
def sla_page(
    request: Request,
    actor: Viewer,
    month: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    runtime: Runtime = request.app.state.runtime
    chosen = month or f"{clock.now():%Y-%m}"
    error: InvalidInput | None = None
    with runtime.read() as session:
        try:
            report = sla.report(session, chosen)
        except InvalidInput as exc:
            error = exc  # shown above this month's report, which stands in for it
            chosen = f"{clock.now():%Y-%m}"
            report = sla.report(session, chosen)
    return render(
        request,
        "slos/sla.html",
        {"report": report, "achieved": _achieved, "error": error},
        actor=actor,
    )


def _achieved(line: SlaLine) -> str:
    """The line's achieved percentage, on the side of its target that ``breached`` says
    (99.8996 against 99.9 reads 99.899%, never 99.900%); a dash without events."""
    if line.achieved_percent is None:
        return "—"
    shown = percent_shown(
        line.achieved_percent, line.target_percent, breached=line.breached, digits=3
    )
    return f"{shown:.3f}%"
