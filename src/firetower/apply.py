"""Apply a whole ``firetower.yaml`` (config as code): each top-level block goes to its domain.

This module sits above the domains: it may import any domain's service, and nothing below
it imports it. Today it applies ``catalog:``, ``routing:`` (the ordered routing rules),
``inhibit_rules:``, ``probes:`` and ``slos:``; ``settings:`` is read at start-up instead. A
rules block replaces the whole list (``routing: []`` removes every rule); a block left out
leaves its rules alone. Probes and SLOs are created or updated by name; those a file does not
list are left alone (delete them in the API, CLI or console). A list-valued key with no value
(``routing:`` and nothing after it) is refused: it reads as "no rules" to YAML but is far more
often a list whose items were lost, and applying it would remove every rule.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from firetower.auth.deps import Admin, RuntimeDep
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service as catalog_service
from firetower.catalog.importer import load_yaml_mapping, parse_catalog_block
from firetower.catalog.schemas import MAX_IMPORT_BYTES, ImportReport
from firetower.errors import InvalidInput
from firetower.monitors import probes as probes_service
from firetower.monitors import slos as slos_service
from firetower.monitors.probe_schemas import ProbeApplySummary, ProbeCreate
from firetower.monitors.slo_schemas import ApplySummary, SLOCreate
from firetower.problems import validation_message
from firetower.signals import service as signals_service
from firetower.signals.schemas import InhibitRuleIn, RoutingRuleIn

# Read by settings.py when the process starts; applying it at run time would half-apply it.
STARTUP_KEYS = ("settings",)
APPLIED_KEYS = ("catalog", "routing", "inhibit_rules", "probes", "slos")
KNOWN_KEYS = (*STARTUP_KEYS, *APPLIED_KEYS)


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=MAX_IMPORT_BYTES)


class RulesReport(BaseModel):
    """A rules block as applied: the whole list, in order (the same on every re-apply)."""

    rules: int
    names: list[str]


class ApplyReport(BaseModel):
    applied: list[str] = Field(description="Top-level blocks applied, in order.")
    skipped: list[str] = Field(description="Blocks read elsewhere (settings: at start-up).")
    catalog: ImportReport | None = None
    routing: RulesReport | None = None
    inhibit_rules: RulesReport | None = None
    probes: ProbeApplySummary | None = None
    slos: ApplySummary | None = None


def _where(key: str, loc: tuple[Any, ...]) -> str:
    text = key
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


# What ``key: []`` means, for the error that refuses ``key:`` with no value.
EMPTY_MEANS = {
    "routing": "no routing rules (every rule is removed)",
    "inhibit_rules": "no inhibition rules (every rule is removed)",
    "probes": "no probes listed (probes already defined are kept)",
    "slos": "no SLOs listed (SLOs already defined are kept)",
}


def _parse_rules(key: str, block: Any, model: type[BaseModel]) -> list[Any]:
    """A rules block (a list) validated; an error names its place, e.g. ``routing[2].action``.

    A key with no value is refused rather than read as an empty list: for the rule blocks it
    would remove every rule, and a file whose list items were lost (indentation, a bad merge,
    a template that rendered nothing) must not do that without a word.
    """
    if block is None:
        raise InvalidInput(
            f"{key} has no value; write '{key}: []' to mean {EMPTY_MEANS[key]}, "
            f"or leave the key out to change nothing",
            field=key,
        )
    if not isinstance(block, list):
        raise InvalidInput(f"{key} must be a list of rules", field=key)
    rules = []
    for index, item in enumerate(block):
        try:
            rules.append(model.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = _where(key, (index, *error["loc"]))
            message = validation_message(error)
            raise InvalidInput(f"{where}: {message}", field=where) from None
    return rules


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
    routing = _parse_rules("routing", data["routing"], RoutingRuleIn) if "routing" in data else None
    inhibit = (
        _parse_rules("inhibit_rules", data["inhibit_rules"], InhibitRuleIn)
        if "inhibit_rules" in data
        else None
    )
    probes = _parse_rules("probes", data["probes"], ProbeCreate) if "probes" in data else None
    slos = _parse_rules("slos", data["slos"], SLOCreate) if "slos" in data else None
    report = ApplyReport(applied=[], skipped=[k for k in STARTUP_KEYS if k in data])
    if catalog is not None:
        report.catalog = catalog_service.apply_document(session, actor, catalog)
        report.applied.append("catalog")
    # After the catalog: a rule may route to a service the same file adds. A rule that fails
    # its checks here raises, and the caller's transaction undoes the catalog too.
    if routing is not None:
        signals_service.replace_routing_rules(
            session, actor, routing, field=lambda i, name: f"routing[{i}].{name}"
        )
        report.routing = RulesReport(rules=len(routing), names=[r.name for r in routing])
        report.applied.append("routing")
    if inhibit is not None:
        signals_service.replace_inhibit_rules(
            session, actor, inhibit, field=lambda i, name: f"inhibit_rules[{i}].{name}"
        )
        report.inhibit_rules = RulesReport(rules=len(inhibit), names=[r.name for r in inhibit])
        report.applied.append("inhibit_rules")
    # Probes before SLOs: an SLO may measure a probe the same file defines.
    if probes is not None:
        report.probes = probes_service.apply_probes(session, actor, probes)
        report.applied.append("probes")
    if slos is not None:
        report.slos = slos_service.apply_slos(session, actor, slos)
        report.applied.append("slos")
    return report.model_dump()


router = APIRouter(tags=["apply"])


@router.post("/apply", response_model=ApplyReport)
def apply(data: ApplyRequest, runtime: RuntimeDep, actor: Admin) -> dict[str, Any]:
    """Apply a firetower.yaml document; admin only, as it sets organisation-wide config."""
    with runtime.transaction() as session:
        return apply_config(session, actor, data.content)
