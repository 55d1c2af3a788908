"""Import a catalog from YAML text: firetower's ``catalog:`` format or Backstage entities.

Everything is parsed and checked before the first write; the caller's transaction makes
the import all or nothing.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower.auth.models import Team
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog import service
from firetower.catalog.backstage import Known, read_backstage
from firetower.catalog.models import Service
from firetower.catalog.schemas import CatalogDocument, ImportFormat, ImportReport
from firetower.errors import InvalidInput
from firetower.problems import validation_message

BACKSTAGE_API_PREFIX = "backstage.io/"
# YAML aliases can make a small text expand into a huge tree ("billion laughs"); the
# expanded tree is walked with a budget before anything else looks at it.
MAX_YAML_NODES = 200_000


def _check_size(documents: list[Any], field: str) -> None:
    budget = MAX_YAML_NODES
    stack: list[Any] = list(documents)
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise InvalidInput(
                f"the YAML expands to more than {MAX_YAML_NODES} values; split it up", field=field
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class _UniqueKeysLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice. PyYAML keeps the last
    value without a word, so a routing rule with two ``action:`` lines, or a file with two
    ``routing:`` blocks, was applied as something its author did not read in it. A key a
    merge (``<<: *defaults``) brings in may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # a complex key is refused by the loader itself if unhashable
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml_documents(text: str, *, field: str = "content") -> list[Any]:
    """Every YAML document of ``text`` (safe loader, each key of a mapping once); an error
    names the document and line."""
    documents: list[Any] = []
    try:
        for document in yaml.load_all(text, Loader=_UniqueKeysLoader):
            documents.append(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        index = len(documents) + 1
        raise InvalidInput(
            f"document {index}{line}: invalid YAML: {problem}", field=field, document=index
        ) from None
    except RecursionError:
        raise InvalidInput("the YAML is nested too deeply", field=field) from None
    _check_size(documents, field)
    return documents


def load_yaml_mapping(text: str, *, field: str = "content") -> dict[str, Any]:
    """The one YAML document of ``text``, which must be a mapping (empty text: ``{}``)."""
    return single_mapping(load_yaml_documents(text, field=field), field=field)


def single_mapping(documents: list[Any], *, field: str = "content") -> dict[str, Any]:
    documents = [d for d in documents if d is not None]
    if len(documents) > 1:
        raise InvalidInput(
            f"expected one YAML document, found {len(documents)}", field=field, document=2
        )
    data = documents[0] if documents else {}
    if not isinstance(data, dict):
        raise InvalidInput("the document must be a mapping at the top level", field=field)
    return data


def detect_format(documents: list[Any]) -> str:
    """``backstage`` when any document has ``apiVersion: backstage.io/…``, else ``firetower``."""
    for document in documents:
        if isinstance(document, dict):
            version = document.get("apiVersion")
            if isinstance(version, str) and version.startswith(BACKSTAGE_API_PREFIX):
                return "backstage"
    return "firetower"


def _location(loc: tuple[Any, ...]) -> str:
    text = "catalog"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def parse_catalog_block(block: Any) -> CatalogDocument:
    """Validate a ``catalog:`` block; an error names the offending key as ``catalog.…``."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise InvalidInput("catalog must be a mapping", field="catalog")
    try:
        return CatalogDocument.model_validate(block)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _location(tuple(error["loc"]))
        raise InvalidInput(f"{where}: {validation_message(error)}", field=where) from None


def known_names(session: Session) -> Known:
    return Known(
        teams=frozenset(session.scalars(select(Team.name))),
        services=frozenset(session.scalars(select(Service.name))),
        features={f.name: f for f in service.list_features(session)},
    )


def import_catalog(
    session: Session, actor: Actor, text: str, format: ImportFormat = "auto"
) -> ImportReport:
    """Apply a firetower or Backstage catalog file; all or nothing, idempotent."""
    actor.require(Role.responder)
    documents = load_yaml_documents(text)
    chosen = detect_format(documents) if format == "auto" else format
    if chosen == "backstage":
        result = read_backstage(documents, known_names(session))
        report = service.apply_document(session, actor, result.document)
        report.skipped, report.skipped_kinds = result.skipped, result.skipped_kinds
        report.format = "backstage"
        return report
    data = single_mapping(documents)
    # A whole firetower.yaml is welcome: its catalog block is read, other keys are skipped.
    others = [key for key in data if key != "catalog"] if "catalog" in data else []
    block = data.get("catalog", data)
    report = service.apply_document(session, actor, parse_catalog_block(block))
    report.skipped = len(others)
    return report
