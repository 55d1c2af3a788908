"""Import SLOs from Sloth (``prometheus/v1``) and OpenSLO v1 YAML; docs/slos.md lists the subset.

Each file becomes a list of ``SLOCreate`` applied with ``slos.apply_slos`` (created or updated
by name, all or nothing). What firetower cannot honour is refused with an error naming the
field (``slos[0].sli.raw``, ``document 2: spec.budgetingMethod``) rather than half-read.
Alerting settings are ignored: firetower's own multi-window burn-rate rules replace them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog.importer import load_yaml_documents
from firetower.catalog.models import Service
from firetower.errors import InvalidInput
from firetower.monitors import slos
from firetower.monitors.slo_schemas import ApplySummary, ImportFormat, SLOCreate

SLOTH_VERSION = "prometheus/v1"
OPENSLO_VERSION = "openslo/v1"
SLOTH_WINDOW_DAYS = 30
SLOTH_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")
DURATION = re.compile(r"^(\d{1,4})([hdw])$")
METADATA_KEYS = {"name", "displayName", "labels", "annotations", "namespace"}
"""What an OpenSLO ``metadata`` may hold: the name is read, the rest ignored."""
DOCUMENT_KEYS = {"apiVersion", "kind", "metadata", "spec"}


class Refused(InvalidInput):
    """A document firetower does not read; ``field`` is the path inside the file."""


def _where(document: int | None, path: str) -> str:
    return f"document {document}: {path}" if document is not None else path


def _fail(path: str, message: str, document: int | None = None) -> Refused:
    return Refused(f"{_where(document, path)}: {message}", field=path, document=document)


def _mapping(value: Any, path: str, document: int | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "must be a mapping", document)
    return value


def _text(value: Any, path: str, document: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "must be a non-empty string", document)
    return value.strip()


def _only(data: dict[str, Any], allowed: set[str], path: str, document: int | None) -> None:
    """Refuse keys firetower does not read; ``allowed`` includes the ones it ignores."""
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise _fail(where, "is not supported by firetower's import", document)


def _metadata(value: Any, path: str, document: int) -> dict[str, Any]:
    metadata = _mapping(value, path, document)
    _only(metadata, METADATA_KEYS, path, document)
    return metadata


def _build(values: dict[str, Any], paths: dict[str, str], document: int | None) -> SLOCreate:
    """An SLOCreate; a refused value is reported under the file's own field name."""
    try:
        return SLOCreate.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(p) for p in error["loc"]]
        key = ".".join(loc[:2]) if loc[:1] == ["sli"] else (loc[0] if loc else "")
        path = paths.get(key) or paths.get(loc[0] if loc else "") or "content"
        raise _fail(path, str(error["msg"]), document) from None


def _queries_with_window(query: str, path: str, document: int | None) -> str:
    query = SLOTH_WINDOW.sub("{{window}}", query)
    if "{{window}}" not in query.replace(" ", ""):
        raise _fail(path, "the query must use {{window}} (or {{.window}}) as its range", document)
    return query


# -- Sloth -------------------------------------------------------------------------------------
SLOTH_ALERTS = {
    "page_alert": "firetower pages on every SLO's fast burn",
    "ticket_alert": "firetower files a ticket on every SLO's slow burn",
}


def _sloth_alerting(item: dict[str, Any], base: str) -> None:
    """Sloth's alert settings are ignored (firetower's rules replace them), except one that
    turns an alert off: ignoring it would page (or ticket) where the file says never to."""
    alerting = item.get("alerting")
    if not isinstance(alerting, dict):
        return
    for key, what in SLOTH_ALERTS.items():
        alert = alerting.get(key)
        if isinstance(alert, dict) and alert.get("disable", False) is not False:
            raise _fail(
                f"{base}.alerting.{key}.disable",
                f"is not supported: {what} (its own rules replace Sloth's alerts)",
            )


def read_sloth(data: dict[str, Any], prometheus_url: str | None) -> list[SLOCreate]:
    """A Sloth ``prometheus/v1`` spec: one service, its SLOs over error and total queries."""
    _only(data, {"version", "service", "labels", "slos"}, "", None)
    service = _text(data.get("service"), "service")
    items = data.get("slos")
    if not isinstance(items, list) or not items:
        raise _fail("slos", "must be a non-empty list")
    result = []
    for index, raw in enumerate(items):
        base = f"slos[{index}]"
        item = _mapping(raw, base)
        _only(item, {"name", "objective", "description", "labels", "sli", "alerting"}, base, None)
        _sloth_alerting(item, base)
        sli = _mapping(item.get("sli"), f"{base}.sli")
        for unsupported in ("raw", "plugin"):
            if unsupported in sli:
                raise _fail(f"{base}.sli.{unsupported}", "is not supported; use sli.events")
        _only(sli, {"events"}, f"{base}.sli", None)
        events = _mapping(sli.get("events"), f"{base}.sli.events")
        _only(events, {"error_query", "total_query"}, f"{base}.sli.events", None)
        error_query = _text(events.get("error_query"), f"{base}.sli.events.error_query")
        total_query = _text(events.get("total_query"), f"{base}.sli.events.total_query")
        name = _text(item.get("name"), f"{base}.name")
        sli_values: dict[str, Any] = {
            "kind": "prometheus",
            "error_query": _queries_with_window(
                error_query, f"{base}.sli.events.error_query", None
            ),
            "total_query": _queries_with_window(
                total_query, f"{base}.sli.events.total_query", None
            ),
        }
        if prometheus_url:
            sli_values["url"] = prometheus_url
        result.append(
            _build(
                {
                    "name": f"{service}-{name}",
                    "service": service,
                    "objective_percent": item.get("objective"),
                    "window_days": SLOTH_WINDOW_DAYS,
                    "description": item.get("description") or "",
                    "sli": sli_values,
                },
                {
                    "name": f"{base}.name",
                    "service": "service",
                    "objective_percent": f"{base}.objective",
                    "description": f"{base}.description",
                    "sli.error_query": f"{base}.sli.events.error_query",
                    "sli.total_query": f"{base}.sli.events.total_query",
                    "sli.url": "prometheus_url",
                    "sli": f"{base}.sli",
                },
                None,
            )
        )
    return result


# -- OpenSLO -----------------------------------------------------------------------------------
def _window_days(spec: dict[str, Any], document: int) -> int:
    windows = spec.get("timeWindow")
    if windows is None:
        raise _fail("spec.timeWindow", "is required (one rolling window)", document)
    if not isinstance(windows, list) or len(windows) != 1:
        raise _fail("spec.timeWindow", "must hold exactly one window", document)
    window = _mapping(windows[0], "spec.timeWindow[0]", document)
    if "calendar" in window:
        raise _fail(
            "spec.timeWindow[0].calendar",
            "calendar windows are not supported; use rolling",
            document,
        )
    _only(window, {"duration", "isRolling"}, "spec.timeWindow[0]", document)
    if window.get("isRolling") is not True:
        raise _fail("spec.timeWindow[0].isRolling", "must be true (rolling windows only)", document)
    duration = window.get("duration")
    match = DURATION.match(duration) if isinstance(duration, str) else None
    if match is None:
        raise _fail(
            "spec.timeWindow[0].duration", "must be whole days like 30d, 4w or 720h", document
        )
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "h" and amount % 24:
        raise _fail("spec.timeWindow[0].duration", "must be whole days (hours / 24)", document)
    return {"h": amount // 24, "d": amount, "w": amount * 7}[unit]


def _objective(spec: dict[str, Any], document: int) -> tuple[Any, str]:
    """``objective_percent`` and the path of the field it was read from."""
    objectives = spec.get("objectives")
    if not isinstance(objectives, list) or len(objectives) != 1:
        raise _fail("spec.objectives", "must hold exactly one objective", document)
    objective = _mapping(objectives[0], "spec.objectives[0]", document)
    _only(
        objective,
        {"displayName", "target", "targetPercent"},
        "spec.objectives[0]",
        document,
    )
    if "target" in objective and "targetPercent" in objective:
        raise _fail("spec.objectives[0]", "give target or targetPercent, not both", document)
    if "targetPercent" in objective:
        percent = objective["targetPercent"]
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise _fail(
                "spec.objectives[0].targetPercent", "must be a number between 0 and 100", document
            )
        return percent, "spec.objectives[0].targetPercent"
    target = objective.get("target")
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < 1:
        raise _fail("spec.objectives[0].target", "must be a number between 0 and 1", document)
    return round(target * 100, 6), "spec.objectives[0].target"


def _query(metric: Any, path: str, document: int) -> str:
    metric = _mapping(metric, path, document)
    _only(metric, {"metricSource"}, path, document)
    source = _mapping(metric.get("metricSource"), f"{path}.metricSource", document)
    _only(source, {"type", "spec", "metricSourceRef"}, f"{path}.metricSource", document)
    if "metricSourceRef" in source:
        raise _fail(
            f"{path}.metricSource.metricSourceRef",
            "data source references are not supported; put the query inline",
            document,
        )
    kind = source.get("type")
    if not isinstance(kind, str) or kind.lower() != "prometheus":
        raise _fail(f"{path}.metricSource.type", "only Prometheus is supported", document)
    spec = _mapping(source.get("spec"), f"{path}.metricSource.spec", document)
    _only(spec, {"query"}, f"{path}.metricSource.spec", document)
    query = _text(spec.get("query"), f"{path}.metricSource.spec.query", document)
    return _queries_with_window(query, f"{path}.metricSource.spec.query", document)


def _indicator(
    spec: dict[str, Any], slis: dict[str, tuple[int, dict[str, Any]]], document: int
) -> tuple[dict[str, Any], str, int]:
    """The SLI's ``spec``, the path it was found at, and the document holding it."""
    if "indicator" in spec and "indicatorRef" in spec:
        raise _fail("spec", "give indicator or indicatorRef, not both", document)
    if "indicatorRef" in spec:
        ref = _text(spec["indicatorRef"], "spec.indicatorRef", document)
        if ref not in slis:
            raise _fail("spec.indicatorRef", f"no kind: SLI named {ref!r} in this file", document)
        where, sli = slis[ref]
        return _mapping(sli.get("spec"), "spec", where), "spec", where
    indicator = _mapping(spec.get("indicator"), "spec.indicator", document)
    _only(indicator, {"metadata", "spec"}, "spec.indicator", document)
    if "metadata" in indicator:
        _metadata(indicator["metadata"], "spec.indicator.metadata", document)
    return (
        _mapping(indicator.get("spec"), "spec.indicator.spec", document),
        "spec.indicator.spec",
        document,
    )


def _ratio(sli: dict[str, Any], path: str, document: int) -> dict[str, Any]:
    if "thresholdMetric" in sli:
        raise _fail(f"{path}.thresholdMetric", "is not supported; use ratioMetric", document)
    _only(sli, {"ratioMetric", "description"}, path, document)  # description: ignored
    ratio = _mapping(sli.get("ratioMetric"), f"{path}.ratioMetric", document)
    base = f"{path}.ratioMetric"
    if "raw" in ratio or "rawType" in ratio:
        raise _fail(f"{base}.raw", "is not supported; give good or bad, and total", document)
    _only(ratio, {"counter", "good", "bad", "total"}, base, document)
    if ratio.get("counter", True) is not True:
        raise _fail(
            f"{base}.counter",
            "only counter: true is supported (the queries return rates; gauges are not read)",
            document,
        )
    if ("good" in ratio) == ("bad" in ratio):
        raise _fail(base, "give exactly one of good and bad, and total", document)
    if "total" not in ratio:
        raise _fail(f"{base}.total", "is required", document)
    values: dict[str, Any] = {
        "kind": "prometheus",
        "total_query": _query(ratio["total"], f"{base}.total", document),
    }
    if "good" in ratio:
        values["good_query"] = _query(ratio["good"], f"{base}.good", document)
    else:
        values["error_query"] = _query(ratio["bad"], f"{base}.bad", document)
    return values


def read_openslo(documents: list[Any], prometheus_url: str | None) -> list[SLOCreate]:
    """Every ``kind: SLO`` of the file; ``kind: SLI`` documents serve their indicatorRefs."""
    slis: dict[str, tuple[int, dict[str, Any]]] = {}
    slo_documents: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(documents, start=1):
        if raw is None:
            continue
        document = _mapping(raw, "content", number)
        if document.get("apiVersion") != OPENSLO_VERSION:
            raise _fail("apiVersion", f"must be {OPENSLO_VERSION}", number)
        kind = document.get("kind")
        if kind == "SLI":
            _only(document, DOCUMENT_KEYS, "", number)
            metadata = _metadata(document.get("metadata"), "metadata", number)
            name = _text(metadata.get("name"), "metadata.name", number)
            if name in slis:  # else the last one would silently answer every indicatorRef
                raise _fail(
                    "metadata.name",
                    f"an SLI named {name!r} is already in document {slis[name][0]}",
                    number,
                )
            slis[name] = (number, document)
        elif kind == "SLO":
            slo_documents.append((number, document))
        elif kind != "Service":  # services come from firetower's catalog: ignored
            raise _fail("kind", f"{kind!r} is not supported (SLO, SLI and Service are)", number)
    if not slo_documents:
        raise _fail("kind", "the file holds no kind: SLO document")
    result = []
    for number, document in slo_documents:
        _only(document, DOCUMENT_KEYS, "", number)
        metadata = _metadata(document.get("metadata"), "metadata", number)
        name = _text(metadata.get("name"), "metadata.name", number)
        spec = _mapping(document.get("spec"), "spec", number)
        _only(
            spec,
            {
                "description",
                "service",
                "indicator",
                "indicatorRef",
                "timeWindow",
                "budgetingMethod",
                "objectives",
                "alertPolicies",
            },
            "spec",
            number,
        )
        method = spec.get("budgetingMethod", "Occurrences")
        if method != "Occurrences":
            raise _fail(
                "spec.budgetingMethod", f"{method!r} is not supported (Occurrences is)", number
            )
        service = _text(spec.get("service"), "spec.service", number)
        window_days = _window_days(spec, number)
        objective, objective_path = _objective(spec, number)
        sli_spec, sli_path, sli_document = _indicator(spec, slis, number)
        sli_values = _ratio(sli_spec, sli_path, sli_document)
        if prometheus_url:
            sli_values["url"] = prometheus_url
        result.append(
            _build(
                {
                    "name": name,
                    "service": service,
                    "objective_percent": objective,
                    "window_days": window_days,
                    "description": spec.get("description") or "",
                    "sli": sli_values,
                },
                {
                    "name": "metadata.name",
                    "service": "spec.service",
                    "objective_percent": objective_path,
                    "window_days": "spec.timeWindow[0].duration",
                    "description": "spec.description",
                    "sli.url": "prometheus_url",
                    "sli": sli_path,
                },
                number,
            )
        )
    return result


# -- entry point -------------------------------------------------------------------------------
def detect(documents: list[Any]) -> ImportFormat:
    for document in documents:
        if isinstance(document, dict):
            if document.get("version") == SLOTH_VERSION:
                return ImportFormat.sloth
            if document.get("apiVersion") == OPENSLO_VERSION:
                return ImportFormat.openslo
    raise InvalidInput(
        f"neither a Sloth file (version: {SLOTH_VERSION}) nor OpenSLO "
        f"(apiVersion: {OPENSLO_VERSION})",
        field="content",
    )


def parse(
    text: str, format: ImportFormat, prometheus_url: str | None
) -> tuple[str, list[SLOCreate]]:
    documents = load_yaml_documents(text)
    chosen = detect(documents) if format == ImportFormat.auto else format
    if chosen == ImportFormat.sloth:
        present = [d for d in documents if d is not None]
        if len(present) != 1:
            raise InvalidInput(
                f"a Sloth file holds one document, this one {len(present)}", field="content"
            )
        data = _mapping(present[0], "content")
        if data.get("version") != SLOTH_VERSION:
            raise _fail("version", f"must be {SLOTH_VERSION}")
        return chosen.value, read_sloth(data, prometheus_url)
    return chosen.value, read_openslo(documents, prometheus_url)


def import_slos(
    session: Session,
    actor: Actor,
    text: str,
    format: ImportFormat = ImportFormat.auto,
    prometheus_url: str | None = None,
) -> ApplySummary:
    """Create or update the file's SLOs; all or nothing."""
    actor.require(Role.responder)
    chosen, items = parse(text, format, prometheus_url)
    known = set(
        session.scalars(select(Service.name).where(Service.name.in_({i.service for i in items})))
    )
    for item in items:
        if item.service not in known:
            field = "service" if chosen == ImportFormat.sloth else "spec.service"
            raise InvalidInput(
                f"{field}: no service named {item.service!r} in the catalog", field=field
            )
    if not prometheus_url and not slos.default_prometheus_url(session):
        raise InvalidInput(
            "the file does not say where Prometheus is: give prometheus_url "
            "(or set the server's prometheus_url)",
            field="prometheus_url",
        )
    summary = slos.apply_slos(session, actor, items)
    summary.format = chosen
    return summary
