"""Console pages of SLOs and SLA reports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
