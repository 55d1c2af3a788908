"""Tables of synthetic probes."""

from __future__ import annotations
