"""Job handlers and schedules of synthetic probes."""

from __future__ import annotations

from firetower.runtime import Runtime


def register(runtime: Runtime) -> None:
    """Wire the probe jobs into the runtime's job registry."""
