"""Events the catalog emits; incidents react to them, the catalog knows none of its readers."""

from __future__ import annotations

from dataclasses import dataclass

from firetower.events import Event


@dataclass(frozen=True)
class BlastRadiusInputsChanged(Event):
    """A tier, a users estimate or a dependency changed: blast radii may have grown."""

    service: str
