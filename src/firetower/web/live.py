"""The live timeline: new entries pushed to browsers as server-sent events.

Several server processes may share one PostgreSQL, so a stream polls the database for
entries newer than the last one it sent (about once a second). Changes committed in this
process wake the stream at once: an after-commit listener on ``TimelineAppended`` sets the
waiting streams' events from whichever thread committed, through the stream's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from firetower.auth.deps import Viewer, authenticate
from firetower.db import MAX_ID
from firetower.errors import Unauthenticated
from firetower.incidents import service as incidents
from firetower.incidents.events import TimelineAppended
from firetower.incidents.schemas import TimelineEventRead
from firetower.runtime import Runtime
from firetower.web.templating import templates

POLL_INTERVAL_SECONDS = 1.0
RECONNECT_MS = 2000
BATCH = 200

router = APIRouter(include_in_schema=False)


@dataclass(eq=False)
class _Waiter:
    incident_id: int
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class TimelineHub:
    """Streams waiting for new entries in this process; called after every commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()

    def subscribe(self, incident_id: int) -> _Waiter:
        waiter = _Waiter(incident_id, asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def __call__(self, event: TimelineAppended) -> None:
        with self._lock:
            matching = [w for w in self._waiters if w.incident_id == event.incident_id]
        for waiter in matching:
            try:
                waiter.loop.call_soon_threadsafe(waiter.wake.set)
            except RuntimeError:  # its loop has closed: the stream is gone
                self.unsubscribe(waiter)


def install(runtime: Runtime) -> None:
    runtime.bus.listen(TimelineAppended, TimelineHub())


def hub_of(runtime: Runtime) -> TimelineHub:
    for listener in runtime.bus.listeners.get(TimelineAppended, ()):
        if isinstance(listener, TimelineHub):
            return listener
    raise RuntimeError("the live timeline was not installed: call register_listeners(runtime)")


def render_entry(entry: TimelineEventRead) -> str:
    return templates.get_template("partials/timeline_entry.html").render(entry=entry)


def _last_seen(last_event_id: str | None, after: int) -> int:
    """A reconnecting browser says what it saw last; otherwise the page said it."""
    if last_event_id and last_event_id.strip().isdigit() and int(last_event_id) <= MAX_ID:
        return int(last_event_id.strip())
    return max(after, 0)


@router.get("/incidents/{ref}/timeline/stream")
async def timeline_stream(
    ref: str,
    request: Request,
    actor: Viewer,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    runtime: Runtime = request.app.state.runtime

    def incident_id() -> int:
        with runtime.read() as session:
            return incidents.get_incident(session, ref).id

    def newer_than(last_id: int) -> list[TimelineEventRead]:
        with runtime.read() as session:
            # The credential is checked again on every read, not once at the start: a stream
            # outlives a logout, a revoked token or a deactivated user otherwise.
            authenticate(session, request)
            incident = incidents.get_incident(session, ref)
            return incidents.timeline(session, incident, after_id=last_id)[:BATCH]

    found = await anyio.to_thread.run_sync(incident_id)  # a 404 before the stream opens
    hub = hub_of(runtime)
    start = _last_seen(last_event_id, after)

    async def entries() -> AsyncIterator[dict[str, Any]]:
        last_id = start
        waiter = hub.subscribe(found)
        try:
            while True:
                waiter.wake.clear()  # before reading: a commit during the read wakes us again
                try:
                    batch = await anyio.to_thread.run_sync(newer_than, last_id)
                except Unauthenticated:
                    return  # the browser reconnects, gets a 401 and stops
                for entry in batch:
                    last_id = entry.id
                    yield {
                        "event": "entry",
                        "id": str(entry.id),
                        "data": render_entry(entry),
                        "retry": RECONNECT_MS,
                    }
                if len(batch) == BATCH:
                    continue  # more are waiting: send them before sleeping
                # Woken by a commit here, or time to poll for other processes' writes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wake.wait(), POLL_INTERVAL_SECONDS)
        finally:
            hub.unsubscribe(waiter)

    return EventSourceResponse(
        entries(), ping=15, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
