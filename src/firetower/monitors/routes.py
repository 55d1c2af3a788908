"""The monitors API: probes and SLOs, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from firetower.monitors import probe_routes, slo_routes

router = APIRouter()
router.include_router(probe_routes.router)
router.include_router(slo_routes.router)
