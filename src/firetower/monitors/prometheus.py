"""A small client of the Prometheus HTTP API: instant queries, and the event counts of a
ratio SLI per window.

Only ``GET /api/v1/query`` is used. A query's vector result is summed over its series;
an empty result or NaN (a rate over no traffic divided by itself) means "no data".
Every failure (transport, HTTP status, Prometheus error, odd shape, a spent time budget) is a
PrometheusError whose message says what went wrong, in one line.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from firetower.monitors.slo_schemas import MAX_WINDOW_EVENTS, WINDOW_PLACEHOLDER

TIMEOUT_SECONDS = 10.0
"""The longest one query waits for each step of its answer (connect, send, each read)."""
BUDGET_SECONDS = 30.0
"""The longest all the queries of one SLO take together (up to 16: two per window), so an
evaluation ends well inside the worker's job lease (60 s by default). It bounds each query
as a whole: a Prometheus that trickles its answer never trips the per-step timeouts."""
MIN_WINDOW_SECONDS = 1
"""The shortest window asked for: a range vector needs a positive duration, in whole seconds."""


T = TypeVar("T")


class PrometheusError(Exception):
    """A query that did not give a number; the message is for people."""


def render(template: str, window: str) -> str:
    """The query with ``{{window}}`` (spaces allowed inside the braces) set to ``window``."""
    return WINDOW_PLACEHOLDER.sub(window, template)


def _number(value: Any) -> float | None:
    """A sample's value: None for NaN (no data), refused when infinite (a count of events
    cannot be, and the burn rates and the SLA report would be nonsense or fail on it)."""
    try:
        number = float(value[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise PrometheusError(f"unexpected sample {value!r}") from None
    if math.isinf(number):
        raise PrometheusError(f"the query gave {value[1]}, not a count of events")
    return None if math.isnan(number) else number


def query(
    base_url: str,
    promql: str,
    *,
    at: datetime | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> float | None:
    """One instant query; the sum of its series, or None when there is no data."""
    try:
        with httpx.Client(timeout=timeout_seconds, transport=transport) as client:
            response = client.get(_query_url(base_url), params=_params(promql, at))
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, exc) from None
    return _value(base_url, promql, response)


async def _query_async(
    client: httpx.AsyncClient, base_url: str, promql: str, at: datetime | None
) -> float | None:
    """``query`` on a shared client, so that a deadline can cancel it at any step."""
    try:
        response = await client.get(_query_url(base_url), params=_params(promql, at))
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, exc) from None
    return _value(base_url, promql, response)


def _query_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/api/v1/query"


def _params(promql: str, at: datetime | None) -> dict[str, str]:
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at.timestamp():.3f}"
    return params


def _unreachable(base_url: str, exc: httpx.HTTPError) -> PrometheusError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return PrometheusError(f"cannot reach Prometheus at {base_url}: {reason}")


def _value(base_url: str, promql: str, response: httpx.Response) -> float | None:
    """The number an answer gives: the sum of its series, or None when there is no data."""
    try:
        body = response.json()
    except ValueError:
        raise PrometheusError(
            f"Prometheus at {base_url} answered {response.status_code} without JSON"
        ) from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(
            f"Prometheus refused the query {promql!r}: {error or response.status_code}"
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise PrometheusError("Prometheus answered without data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result)
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"the query {promql!r} gave a {kind}, not an instant vector")
    values = [
        _number(series.get("value")) if isinstance(series, dict) else _number(None)
        for series in result
    ]
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def window_counts(
    base_url: str,
    total_query: str,
    windows_seconds: Mapping[str, int],
    *,
    error_query: str | None = None,
    good_query: str | None = None,
    at: datetime | None = None,
    budget_seconds: float | None = None,
) -> dict[str, tuple[float, float]]:
    """(bad, total) events per window label, from per-second rates times the window.

    A window whose total has no data is left out (no events), and so is one shorter than
    ``MIN_WINDOW_SECONDS``, without asking: Prometheus refuses a ``[0s]`` range, which is
    what the SLA report's month so far is at its first instant. A total above
    ``MAX_WINDOW_EVENTS`` over its window is a PrometheusError. A good query above the total
    (scrape timing) counts as no bad events rather than negative ones. The queries share one
    deadline, ``budget_seconds`` (``BUDGET_SECONDS`` by default), that cancels whatever
    step a query is at when it passes; the whole fetch then fails rather than give partial
    counts. For synchronous callers (a job's prepare step, a report): it runs its own event
    loop, so it cannot be called from a running one.
    """
    budget = BUDGET_SECONDS if budget_seconds is None else budget_seconds
    answered = 0

    async def fetch() -> dict[str, tuple[float, float]]:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:

            async def ask(template: str, label: str) -> float | None:
                nonlocal answered
                value = await _query_async(client, base_url, render(template, label), at)
                answered += 1
                return value

            try:
                async with asyncio.timeout(budget):
                    return await _counts(ask, total_query, error_query, good_query, windows_seconds)
            except TimeoutError:
                raise PrometheusError(
                    f"Prometheus at {base_url} took more than the {budget:g}s allowed for one "
                    f"SLO's queries ({answered} of them answered in time)"
                ) from None

    return _run(fetch())


async def _counts(
    ask: Callable[[str, str], Awaitable[float | None]],
    total_query: str,
    error_query: str | None,
    good_query: str | None,
    windows_seconds: Mapping[str, int],
) -> dict[str, tuple[float, float]]:
    counts: dict[str, tuple[float, float]] = {}
    for label, seconds in windows_seconds.items():
        if seconds < MIN_WINDOW_SECONDS:  # nothing happened in it yet, and "[0s]" is refused
            continue
        total = await ask(total_query, label)
        if total is None or total <= 0:
            continue
        if not total * seconds <= MAX_WINDOW_EVENTS:  # inf too (a huge rate times the window)
            raise PrometheusError(
                f"the query {render(total_query, label)!r} gave {total:g} events per second: "
                f"over {label} that is more than the {MAX_WINDOW_EVENTS:,} events a window "
                "can count"
            )
        if error_query is not None:
            bad = await ask(error_query, label) or 0.0
        else:
            assert good_query is not None
            good = await ask(good_query, label) or 0.0
            bad = total - good
        bad = min(max(bad, 0.0), total)
        counts[label] = (bad * seconds, total * seconds)
    return counts


def _run(fetch: Coroutine[Any, Any, T]) -> T:
    """``fetch`` on an event loop of its own. Not ``asyncio.run``: on the way out it waits
    for the loop's executor threads, and a DNS lookup left there by a cancelled connect
    would hold the caller past the deadline; closing the loop leaves it to finish alone."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fetch)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
