"""API of SLOs and SLA reports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["slos"])
