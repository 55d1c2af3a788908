"""Catalog operations: services, the dependency DAG, features, customers, blast radius."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth import service as auth_service
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog.models import Customer, Dependency, Feature, Service
from firetower.catalog.schemas import (
    BlastRadius,
    CatalogDocument,
    CustomerCreate,
    CustomerRead,
    DependencyRead,
    FeatureCreate,
    FeatureRead,
    ImportReport,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
)
from firetower.errors import Conflict, InvalidInput, NotFound


def get_service(session: Session, name: str, *, field: str = "service") -> Service:
    service = session.scalar(select(Service).where(Service.name == name))
    if service is None:
        raise NotFound(f"no service named {name!r}", field=field)
    return service


def services_by_name(session: Session, names: Iterable[str], *, field: str) -> list[Service]:
    wanted = list(dict.fromkeys(names))
    found = {s.name: s for s in session.scalars(select(Service).where(Service.name.in_(wanted)))}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise NotFound(f"no service named {', '.join(map(repr, missing))}", field=field)
    return [found[n] for n in wanted]


def list_services(session: Session) -> list[Service]:
    return list(session.scalars(select(Service).order_by(Service.name)))


def _edges(session: Session) -> list[tuple[int, int]]:
    return [(d.service_id, d.depends_on_id) for d in session.scalars(select(Dependency))]


def read_service(session: Session, service: Service) -> ServiceRead:
    names = dict(session.execute(select(Service.id, Service.name)).tuples())
    edges = _edges(session)
    return ServiceRead(
        id=service.id,
        name=service.name,
        team=service.team.name if service.team else None,
        owner=service.owner,
        tier=service.tier,
        description=service.description,
        runbook_url=service.runbook_url,
        estimated_users=service.estimated_users,
        depends_on=sorted(names[b] for a, b in edges if a == service.id),
        dependents=sorted(names[a] for a, b in edges if b == service.id),
    )


def create_service(session: Session, actor: Actor, data: ServiceCreate) -> Service:
    actor.require(Role.responder)
    if session.scalar(select(Service).where(Service.name == data.name)) is not None:
        raise Conflict(f"a service named {data.name!r} already exists", field="name")
    team = auth_service.get_team(session, data.team) if data.team else None
    service = Service(
        name=data.name,
        team=team,
        owner=data.owner,
        tier=data.tier,
        description=data.description,
        runbook_url=data.runbook_url,
        estimated_users=data.estimated_users,
        created_at=clock.now(),
    )
    session.add(service)
    session.flush()
    for target in data.depends_on:
        add_dependency(session, actor, data.name, target)
    return service


def update_service(session: Session, actor: Actor, name: str, data: ServiceUpdate) -> Service:
    actor.require(Role.responder)
    service = get_service(session, name)
    changes = data.model_dump(exclude_unset=True)
    if "team" in changes:
        team_name = changes.pop("team")
        service.team = auth_service.get_team(session, team_name) if team_name else None
    for key, value in changes.items():
        if value is None:
            raise InvalidInput(f"{key} cannot be null", field=key)
        setattr(service, key, value)
    return service


def delete_service(session: Session, actor: Actor, name: str) -> None:
    actor.require(Role.admin)
    session.delete(get_service(session, name))


def _path(edges: list[tuple[int, int]], start: int, goal: int) -> list[int] | None:
    """A path start → … → goal following depends-on edges, if one exists (BFS)."""
    forward: dict[int, list[int]] = {}
    for a, b in edges:
        forward.setdefault(a, []).append(b)
    previous: dict[int, int | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while (step := previous[path[-1]]) is not None:
                path.append(step)
            return path[::-1]
        for nxt in forward.get(node, ()):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return None


def add_dependency(session: Session, actor: Actor, service_name: str, depends_on: str) -> None:
    """Add ``service_name`` → ``depends_on``; refuse an edge that would close a cycle."""
    actor.require(Role.responder)
    service = get_service(session, service_name, field="service")
    target = get_service(session, depends_on, field="depends_on")
    if service.id == target.id:
        raise InvalidInput(f"{service_name} cannot depend on itself", field="depends_on")
    session.flush()
    edges = _edges(session)
    if (service.id, target.id) in edges:
        return
    cycle = _path(edges, target.id, service.id)
    if cycle is not None:
        names = dict(session.execute(select(Service.id, Service.name)).tuples())
        shown = " → ".join([names[service.id], *(names[i] for i in cycle)])
        raise Conflict(f"this dependency would make a cycle: {shown}", field="depends_on")
    session.add(Dependency(service_id=service.id, depends_on_id=target.id))
    session.flush()


def remove_dependency(session: Session, actor: Actor, service_name: str, depends_on: str) -> None:
    actor.require(Role.responder)
    service = get_service(session, service_name, field="service")
    target = get_service(session, depends_on, field="depends_on")
    edge = session.get(Dependency, (service.id, target.id))
    if edge is None:
        raise NotFound(f"{service_name} does not depend on {depends_on}", field="depends_on")
    session.delete(edge)


def list_dependencies(session: Session) -> list[DependencyRead]:
    names = dict(session.execute(select(Service.id, Service.name)).tuples())
    return sorted(
        (DependencyRead(service=names[a], depends_on=names[b]) for a, b in _edges(session)),
        key=lambda d: (d.service, d.depends_on),
    )


def upsert_feature(session: Session, actor: Actor, data: FeatureCreate) -> Feature:
    actor.require(Role.responder)
    services = services_by_name(session, data.services, field="services")
    feature = session.scalar(select(Feature).where(Feature.name == data.name))
    if feature is None:
        feature = Feature(name=data.name)
        session.add(feature)
    feature.description = data.description
    feature.services = services
    session.flush()
    return feature


def list_features(session: Session) -> list[FeatureRead]:
    return [
        FeatureRead(
            name=f.name, description=f.description, services=sorted(s.name for s in f.services)
        )
        for f in session.scalars(select(Feature).order_by(Feature.name))
    ]


def upsert_customer(session: Session, actor: Actor, data: CustomerCreate) -> Customer:
    actor.require(Role.responder)
    services = services_by_name(session, data.services, field="services")
    customer = session.scalar(select(Customer).where(Customer.name == data.name))
    if customer is None:
        customer = Customer(name=data.name)
        session.add(customer)
    customer.contact = data.contact
    customer.services = services
    session.flush()
    return customer


def list_customers(session: Session) -> list[CustomerRead]:
    return [
        CustomerRead(name=c.name, contact=c.contact, services=sorted(s.name for s in c.services))
        for c in session.scalars(select(Customer).order_by(Customer.name))
    ]


def blast_radius(session: Session, failing_names: Iterable[str]) -> BlastRadius:
    """Everything that depends, directly or not, on the failing services."""
    failing = services_by_name(session, failing_names, field="services")
    dependents_of: dict[int, list[int]] = {}
    for a, b in _edges(session):
        dependents_of.setdefault(b, []).append(a)
    impacted_ids = {s.id for s in failing}
    queue = deque(impacted_ids)
    while queue:
        for dependent in dependents_of.get(queue.popleft(), ()):
            if dependent not in impacted_ids:
                impacted_ids.add(dependent)
                queue.append(dependent)
    impacted = list(session.scalars(select(Service).where(Service.id.in_(impacted_ids))))
    failing_set = {s.name for s in failing}
    features = session.scalars(
        select(Feature).where(Feature.services.any(Service.id.in_(impacted_ids)))
    )
    customers = session.scalars(
        select(Customer).where(Customer.services.any(Service.id.in_(impacted_ids)))
    )
    return BlastRadius(
        failing=sorted(failing_set),
        impacted=sorted(s.name for s in impacted),
        dependents=sorted(s.name for s in impacted if s.name not in failing_set),
        tier1_impacted=sorted(s.name for s in impacted if s.tier == 1),
        features=sorted(f.name for f in features),
        customers=sorted(c.name for c in customers),
        users_estimate=max((s.estimated_users for s in impacted), default=0),
    )


def apply_document(session: Session, actor: Actor, document: CatalogDocument) -> ImportReport:
    """Create or update everything a catalog document names; idempotent, all or nothing."""
    actor.require(Role.responder)
    report = ImportReport()
    for team in document.teams:
        if "name" not in team:
            raise InvalidInput("every team needs a name", field="catalog.teams")
        auth_service.ensure_team(session, actor, team["name"], team.get("description", ""))
        report.teams += 1
    for data in document.services:
        existing = session.scalar(select(Service).where(Service.name == data.name))
        fields = data.model_dump(exclude={"name", "depends_on"})
        if existing is None:
            create_service(session, actor, data.model_copy(update={"depends_on": []}))
        else:
            update_service(session, actor, data.name, ServiceUpdate(**fields))
        report.services += 1
    for data in document.services:
        for target in data.depends_on:
            add_dependency(session, actor, data.name, target)
            report.dependencies += 1
    for feature in document.features:
        upsert_feature(session, actor, feature)
        report.features += 1
    for customer in document.customers:
        upsert_customer(session, actor, customer)
        report.customers += 1
    return report
