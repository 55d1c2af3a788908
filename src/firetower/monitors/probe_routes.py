"""API of synthetic probes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["probes"])
