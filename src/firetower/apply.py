"""Apply a whole ``firetower.yaml`` (config as code): each top-level block goes to its domain.

This module sits above the domains: it may import any domain's service, and nothing below
it imports it. Today it applies ``catalog:``; ``settings:`` is read at start-up instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from firetower.auth.deps import Admin, RuntimeDep
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog_service
from firetower.catalog.importer import load_yaml_mapping, parse_catalog_block
from firetower.catalog.schemas import MAX_IMPORT_BYTES, ImportReport
from firetower.errors import InvalidInput

# Read by settings.py when the process starts; applying it at run time would half-apply it.
STARTUP_KEYS = ("settings",)
APPLIED_KEYS = ("catalog",)
KNOWN_KEYS = (*STARTUP_KEYS, *APPLIED_KEYS)


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=MAX_IMPORT_BYTES)


class ApplyReport(BaseModel):
    applied: list[str] = Field(description="Top-level blocks applied, in order.")
    skipped: list[str] = Field(description="Blocks read elsewhere (settings: at start-up).")
    catalog: ImportReport | None = None


def apply_config(session: Session, actor: Actor, text: str) -> dict[str, Any]:
    """Apply every block of a firetower.yaml in the caller's transaction (all or nothing)."""
    actor.require(Role.admin)
    data = load_yaml_mapping(text)
    for key in data:
        if key not in KNOWN_KEYS:
            raise InvalidInput(
                f"unknown top-level key {key!r} in firetower.yaml; "
                f"known keys: {', '.join(KNOWN_KEYS)}",
                field=str(key),
            )
    # Check every block before applying any, so a bad later block writes nothing either.
    catalog = parse_catalog_block(data["catalog"]) if "catalog" in data else None
    report = ApplyReport(applied=[], skipped=[k for k in STARTUP_KEYS if k in data])
    if catalog is not None:
        report.catalog = catalog_service.apply_document(session, actor, catalog)
        report.applied.append("catalog")
    return report.model_dump()


router = APIRouter(tags=["apply"])


@router.post("/apply", response_model=ApplyReport)
def apply(data: ApplyRequest, runtime: RuntimeDep, actor: Admin) -> dict[str, Any]:
    """Apply a firetower.yaml document; admin only, as it sets organisation-wide config."""
    with runtime.transaction() as session:
        return apply_config(session, actor, data.content)
