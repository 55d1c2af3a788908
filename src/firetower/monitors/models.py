"""Every table of the monitors domain (imported by Alembic's env to know them all)."""

from __future__ import annotations

from firetower.monitors import probe_models, slo_models

__all__ = ["probe_models", "slo_models"]
