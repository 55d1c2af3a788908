"""Console pages of signals: alerts, alert groups, silences, dead letters."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
