"""The monitors domain's jobs and reactions."""

from __future__ import annotations

from firetower.monitors import probe_reactions, slo_reactions
from firetower.runtime import Runtime


def register(runtime: Runtime) -> None:
    probe_reactions.register(runtime)
    slo_reactions.register(runtime)
