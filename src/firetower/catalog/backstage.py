"""Read Backstage ``catalog-info.yaml`` entities into a firetower ``CatalogDocument``.

Pure translation: nothing here touches the database. What the catalog already holds comes
in as ``Known``; the rules are documented in docs/catalog.md ("Backstage import").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from firetower.catalog.schemas import (
    NAME_PATTERN,
    CatalogDocument,
    FeatureCreate,
    FeatureRead,
    ServiceCreate,
    TeamSpec,
)
from firetower.errors import InvalidInput, NotFound
from firetower.problems import validation_message

TIER_ANNOTATION = "firetower.io/tier"
USERS_ANNOTATION = "firetower.io/estimated-users"
RUNBOOK_ANNOTATION = "firetower.io/runbook-url"
SERVICE_KINDS = ("component", "resource")
MAPPED_KINDS = (*SERVICE_KINDS, "system", "api", "group")
FIELD = "content"


@dataclass(frozen=True)
class Known:
    """Names the catalog already holds, which a file may refer to without defining."""

    teams: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    features: Mapping[str, FeatureRead] = field(default_factory=dict)


@dataclass(frozen=True)
class EntityRef:
    kind: str | None
    namespace: str
    name: str


@dataclass
class Entity:
    index: int  # 1-based position of the YAML document in the file
    kind: str  # lower case
    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]

    def label(self) -> str:
        return f"document {self.index} ({self.kind} {self.name})"


@dataclass
class BackstageResult:
    document: CatalogDocument
    skipped_kinds: dict[str, int]

    @property
    def skipped(self) -> int:
        return sum(self.skipped_kinds.values())


def parse_ref(value: object, *, where: str) -> EntityRef:
    """Parse ``[kind:][namespace/]name``; Backstage compares refs without regard to case."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: an entity ref must be a non-empty string", field=FIELD)
    text = value.strip().lower()
    kind: str | None = None
    if ":" in text:
        kind, text = text.split(":", 1)
    namespace, _, name = text.rpartition("/")
    if not name or (kind is not None and not kind) or ":" in name or "/" in namespace:
        raise InvalidInput(f"{where}: {value!r} is not an entity ref", field=FIELD)
    return EntityRef(kind=kind, namespace=namespace or "default", name=name)


def _entities(documents: list[Any]) -> tuple[list[Entity], Counter[str]]:
    entities: list[Entity] = []
    skipped: Counter[str] = Counter()
    for index, raw in enumerate(documents, start=1):
        if raw is None:  # an empty document, e.g. after a trailing '---'
            continue
        if not isinstance(raw, dict):
            raise InvalidInput(f"document {index} is not a mapping", field=FIELD, document=index)
        kind = raw.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidInput(f"document {index} has no kind", field=FIELD, document=index)
        metadata = raw.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(
                f"document {index} has no metadata.name", field=FIELD, document=index
            )
        spec = raw.get("spec") or {}
        if not isinstance(spec, dict):
            raise InvalidInput(f"document {index}: spec must be a mapping", field=FIELD)
        assert isinstance(metadata, dict)
        if kind.lower() not in MAPPED_KINDS:
            skipped[kind] += 1
            continue
        entity = Entity(index, kind.lower(), name.strip().lower(), metadata, spec)
        if kind.lower() != "api" and not re.match(NAME_PATTERN, entity.name):
            raise InvalidInput(
                f"{entity.label()}: firetower names use letters, digits, '.', '_' and '-' "
                "and start with a letter or digit",
                field=FIELD,
                document=index,
            )
        entities.append(entity)
    return entities, skipped


def _by_name(entities: list[Entity], kinds: tuple[str, ...]) -> dict[str, Entity]:
    found: dict[str, Entity] = {}
    for entity in entities:
        if entity.kind not in kinds:
            continue
        if entity.name in found:
            first = found[entity.name]
            raise InvalidInput(
                f"{entity.label()}: {entity.name!r} is already defined by {first.label()}",
                field=FIELD,
                document=entity.index,
            )
        found[entity.name] = entity
    return found


def _refs(entity: Entity, key: str) -> list[Any]:
    value = entity.spec.get(key) or []
    if not isinstance(value, list):
        raise InvalidInput(f"{entity.label()}: spec.{key} must be a list", field=FIELD)
    return value


def _ref_to(entity: Entity, value: object, key: str, kinds: tuple[str, ...]) -> EntityRef:
    ref = parse_ref(value, where=f"{entity.label()} spec.{key}")
    if ref.kind is not None and ref.kind not in kinds:
        raise InvalidInput(
            f"{entity.label()}: spec.{key} ref {value!r} must name a "
            f"{' or '.join(k.capitalize() for k in kinds)}",
            field=FIELD,
            document=entity.index,
        )
    return ref


def _missing(entity: Entity, value: object, key: str) -> NotFound:
    return NotFound(
        f"{entity.label()}: spec.{key} ref {value!r} names an entity that is neither in "
        "this file nor in the catalog",
        field=FIELD,
        document=entity.index,
    )


def _text(entity: Entity, value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{entity.label()}: {where} must be a string", field=FIELD)
    return value.strip()


def _annotation_int(entity: Entity, annotations: dict[str, Any], key: str) -> int | None:
    value = annotations.get(key)
    if value is None:
        return None
    text = str(value).strip().replace("_", "")
    if isinstance(value, bool) or not text.isdigit():
        raise InvalidInput(
            f"{entity.label()}: annotation {key} must be a whole number, got {value!r}",
            field=FIELD,
            document=entity.index,
        )
    return int(text)


def _runbook(entity: Entity, annotations: dict[str, Any]) -> str | None:
    if annotations.get(RUNBOOK_ANNOTATION) is not None:
        return _text(entity, annotations[RUNBOOK_ANNOTATION], f"annotation {RUNBOOK_ANNOTATION}")
    links = entity.metadata.get("links") or []
    if not isinstance(links, list):
        raise InvalidInput(f"{entity.label()}: metadata.links must be a list", field=FIELD)
    for link in links:
        if (
            isinstance(link, dict)
            and isinstance(link.get("title"), str)
            and link["title"].strip().lower() == "runbook"
        ):
            return _text(entity, link.get("url"), "the runbook link's url")
    return None


def read_backstage(documents: list[Any], known: Known) -> BackstageResult:
    """Translate parsed YAML documents; raise InvalidInput/NotFound naming the document."""
    entities, skipped = _entities(documents)
    groups = _by_name(entities, ("group",))
    services = _by_name(entities, SERVICE_KINDS)
    systems = _by_name(entities, ("system",))
    apis = _by_name(entities, ("api",))

    providers: dict[str, list[str]] = {}
    for entity in services.values():
        for value in _refs(entity, "providesApis"):
            ref = _ref_to(entity, value, "providesApis", ("api",))
            if ref.name not in apis:
                raise _missing(entity, value, "providesApis")
            providers.setdefault(ref.name, []).append(entity.name)

    teams = []
    for group in groups.values():
        profile = group.spec.get("profile")
        display = profile.get("displayName") if isinstance(profile, dict) else None
        description = _text(group, group.metadata.get("description"), "metadata.description")
        teams.append(
            _validated(
                group,
                TeamSpec,
                name=group.name,
                description=description or _text(group, display, "spec.profile.displayName"),
            )
        )

    feature_members: dict[str, list[str]] = {name: [] for name in systems}
    service_specs = []
    for entity in services.values():
        fields: dict[str, Any] = {"name": entity.name}
        if "description" in entity.metadata:
            fields["description"] = _text(
                entity, entity.metadata["description"], "metadata.description"
            )
        if entity.spec.get("owner") is not None:
            owner = _ref_to(entity, entity.spec["owner"], "owner", ("group", "user"))
            if (owner.kind in (None, "group")) and (
                owner.name in groups or owner.name in known.teams
            ):
                fields["team"], fields["owner"] = owner.name, ""
            else:
                fields["team"], fields["owner"] = None, str(entity.spec["owner"]).strip()
        annotations = entity.metadata.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise InvalidInput(
                f"{entity.label()}: metadata.annotations must be a mapping", field=FIELD
            )
        if (tier := _annotation_int(entity, annotations, TIER_ANNOTATION)) is not None:
            fields["tier"] = tier
        if (users := _annotation_int(entity, annotations, USERS_ANNOTATION)) is not None:
            fields["estimated_users"] = users
        if (runbook := _runbook(entity, annotations)) is not None:
            fields["runbook_url"] = runbook
        if "dependsOn" in entity.spec or "consumesApis" in entity.spec:
            fields["depends_on"] = _dependencies(entity, services, apis, providers, known)
        if entity.kind == "component" and entity.spec.get("system") is not None:
            system = _ref_to(entity, entity.spec["system"], "system", ("system",))
            if system.name in systems:
                feature_members[system.name].append(entity.name)
            elif system.name in known.features:
                feature_members.setdefault(system.name, []).append(entity.name)
            else:
                raise _missing(entity, entity.spec["system"], "system")
        service_specs.append(_validated(entity, ServiceCreate, **fields))

    features = []
    for name, members in feature_members.items():
        if name in systems:
            source = systems[name]
            description = _text(source, source.metadata.get("description"), "description")
            features.append(
                _validated(
                    source, FeatureCreate, name=name, description=description, services=members
                )
            )
        else:  # a system the catalog already has: add this file's components to it
            current = known.features[name]
            merged = sorted({*current.services, *members})
            features.append(
                FeatureCreate(name=name, description=current.description, services=merged)
            )

    document = CatalogDocument(teams=teams, services=service_specs, features=features)
    return BackstageResult(document=document, skipped_kinds=dict(sorted(skipped.items())))


def _dependencies(
    entity: Entity,
    services: dict[str, Entity],
    apis: dict[str, Entity],
    providers: dict[str, list[str]],
    known: Known,
) -> list[str]:
    targets: set[str] = set()
    for value in _refs(entity, "dependsOn"):
        ref = _ref_to(entity, value, "dependsOn", SERVICE_KINDS)
        if ref.name not in services and ref.name not in known.services:
            raise _missing(entity, value, "dependsOn")
        if ref.name == entity.name:
            raise InvalidInput(
                f"{entity.label()}: a component cannot depend on itself",
                field=FIELD,
                document=entity.index,
            )
        targets.add(ref.name)
    for value in _refs(entity, "consumesApis"):
        ref = _ref_to(entity, value, "consumesApis", ("api",))
        if ref.name not in apis:
            raise _missing(entity, value, "consumesApis")
        # A component that provides what it consumes does not depend on itself.
        targets.update(p for p in providers.get(ref.name, ()) if p != entity.name)
    return sorted(targets)


M = TypeVar("M", TeamSpec, ServiceCreate, FeatureCreate)


def _validated(entity: Entity, model: type[M], **fields: Any) -> M:
    try:
        return model(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInput(
            f"{entity.label()}: {where}: {validation_message(error)}",
            field=FIELD,
            document=entity.index,
        ) from None
