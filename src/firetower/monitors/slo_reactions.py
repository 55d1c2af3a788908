"""Job handlers and schedules of SLO evaluation."""

from __future__ import annotations

from firetower.runtime import Runtime


def register(runtime: Runtime) -> None:
    """Wire the SLO jobs into the runtime's job registry."""
