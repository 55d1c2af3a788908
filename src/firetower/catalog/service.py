"""Catalog operations: services, the dependency DAG, features, customers, blast radius."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth import service as auth_service
from firetower.auth.models import Team
from firetower.auth.schemas import Role
from firetower.auth.service import Actor
from firetower.catalog.events import BlastRadiusInputsChanged
from firetower.catalog.models import (
    Customer,
    Dependency,
    Feature,
    Service,
    ServiceCheck,
    customer_services,
    feature_services,
)
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
from firetower.events import record


def get_service(session: Session, name: str, *, field: str = "service") -> Service:
    service = session.scalar(select(Service).where(Service.name == name))
    if service is None:
        raise NotFound(f"no service named {name!r}", field=field)
    return service


def hold_services(session: Session, names: Iterable[str | None]) -> set[str]:
    """Which of these services exist, each row held until the transaction ends so that it
    cannot be deleted meanwhile (PostgreSQL: ``FOR KEY SHARE``, in name order; SQLite has one
    writer at a time anyway).

    For a record that names a service by name, with no foreign key to stop the delete (a
    routing rule, an integration, a maintenance window): ``delete_service`` takes the row
    before it looks for references, so either it waits for the record to commit and then
    sees it, or the record waits for the delete and then finds no such service. Checked
    with a plain read, the record could commit naming a service just deleted."""
    wanted = sorted({name for name in names if name})
    if not wanted:
        return set()
    held = (
        select(Service.name)
        .where(Service.name.in_(wanted))
        .order_by(Service.name)
        .with_for_update(read=True, key_share=True)
    )
    return set(session.scalars(held))


def services_by_name(session: Session, names: Iterable[str], *, field: str) -> list[Service]:
    wanted = list(dict.fromkeys(names))
    found = {s.name: s for s in session.scalars(select(Service).where(Service.name.in_(wanted)))}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise NotFound(f"no service named {', '.join(map(repr, missing))}", field=field)
    return [found[n] for n in wanted]


def list_services(session: Session) -> list[Service]:
    return list(session.scalars(select(Service).order_by(Service.name)))


def _names(session: Session) -> dict[int, str]:
    return {
        service_id: name for service_id, name in session.execute(select(Service.id, Service.name))
    }


def _edges(session: Session) -> list[tuple[int, int]]:
    return [(d.service_id, d.depends_on_id) for d in session.scalars(select(Dependency))]


def _reach(adjacent: dict[int, list[int]], start: Iterable[int]) -> set[int]:
    """Every node reachable from ``start`` (not counting ``start`` unless a path returns)."""
    seen: set[int] = set()
    queue = deque(start)
    while queue:
        for nxt in adjacent.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _adjacency(edges: list[tuple[int, int]]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(what each service depends on, what depends on each service)."""
    depends_on: dict[int, list[int]] = {}
    dependents_of: dict[int, list[int]] = {}
    for a, b in edges:
        depends_on.setdefault(a, []).append(b)
        dependents_of.setdefault(b, []).append(a)
    return depends_on, dependents_of


def failing_checks(session: Session) -> dict[int, list[str]]:
    """The failing checks of each service that has any, by service id."""
    failing: dict[int, list[str]] = {}
    query = (
        select(ServiceCheck.service_id, ServiceCheck.check)
        .where(ServiceCheck.failing.is_(True))
        .order_by(ServiceCheck.check)
    )
    for service_id, check in session.execute(query):
        failing.setdefault(service_id, []).append(check)
    return failing


def report_health(
    session: Session, *, service_name: str, check: str, failing: bool, detail: str = ""
) -> None:
    """Record the state of one check (``probe:home``, ``slo:checkout``) of a service.

    A failing check makes the service *failing* and every service that depends on it,
    directly or not, *at risk*; read models (services, blast radius) show both. Checks of a
    service that is not in the catalog (deleted since) are ignored.
    """
    service = session.scalar(select(Service).where(Service.name == service_name))
    if service is None:
        return
    query = select(ServiceCheck).where(
        ServiceCheck.service_id == service.id, ServiceCheck.check == check
    )
    row = session.scalar(query)
    if row is None:
        row = ServiceCheck(
            service_id=service.id,
            check=check,
            failing=failing,
            detail=detail,
            changed_at=clock.now(),
        )
        try:
            with session.begin_nested():
                session.add(row)
            return
        except IntegrityError:  # reported at the same moment by another transaction
            found = session.scalar(query)
            assert found is not None
            row = found
    if row.failing != failing:
        row.failing = failing
        row.changed_at = clock.now()
    row.detail = detail


def read_service(session: Session, service: Service) -> ServiceRead:
    names = _names(session)
    edges = _edges(session)
    failing = failing_checks(session)
    depends_on, _ = _adjacency(edges)
    upstream_failing = sorted(names[i] for i in _reach(depends_on, [service.id]) if i in failing)
    health = "failing" if service.id in failing else "at_risk" if upstream_failing else "ok"
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
        health=health,
        failing_checks=failing.get(service.id, []),
        at_risk_from=upstream_failing,
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
    grows = False
    for key, value in changes.items():
        if value is None:
            raise InvalidInput(f"{key} cannot be null", field=key)
        grows |= key in ("tier", "estimated_users") and getattr(service, key) != value
        setattr(service, key, value)
    if grows:
        record(session, BlastRadiusInputsChanged(name))
    return service


ServiceReferrer = Callable[[Session, Service], list[str]]
"""What of one domain still names a service, each as a short phrase ("routing rule 'db'")."""
_REFERRERS: dict[str, ServiceReferrer] = {}
MAX_REFERENCES_NAMED = 10


def refer_to_services(domain: str, finder: ServiceReferrer) -> None:
    """Tell the catalog how ``domain`` finds what still names a service, so that deleting one
    is refused while something does: the domains above the catalog hold those records, and
    it may not ask them. Called when a runtime is assembled (``build_runtime``), never at
    import, like ``signals.own_severity_from``; a second call for a domain replaces the first."""
    _REFERRERS[domain] = finder


def _catalog_references(session: Session, service: Service) -> list[str]:
    dependents = session.scalars(
        select(Service.name)
        .join(Dependency, Dependency.service_id == Service.id)
        .where(Dependency.depends_on_id == service.id)
        .order_by(Service.name)
    )
    features = session.scalars(
        select(Feature.name)
        .join(feature_services, feature_services.c.feature_id == Feature.id)
        .where(feature_services.c.service_id == service.id)
        .order_by(Feature.name)
    )
    customers = session.scalars(
        select(Customer.name)
        .join(customer_services, customer_services.c.customer_id == Customer.id)
        .where(customer_services.c.service_id == service.id)
        .order_by(Customer.name)
    )
    return [
        *(f"service {name!r} (depends on it)" for name in dependents),
        *(f"feature {name!r}" for name in features),
        *(f"customer {name!r}" for name in customers),
    ]


def service_references(session: Session, service: Service) -> list[str]:
    """Everything that still names ``service``: the catalog's own records, then each
    registered domain's."""
    found = _catalog_references(session, service)
    for domain in sorted(_REFERRERS):
        found.extend(_REFERRERS[domain](session, service))
    return found


def delete_service(session: Session, actor: Actor, name: str) -> None:
    """Remove a service; refused while anything still names it.

    Refused (409, naming them) while another service depends on it, a feature or customer
    lists it, or a registered domain's record names it (incidents, integrations, routing
    rules, maintenance windows not over, probes, SLOs, SLA targets): deleting would leave
    them pointing at nothing, or take them along, without a word. What only describes the
    service itself goes with it: the services it depends on and its checks' latest states.
    """
    actor.require(Role.admin)
    # The row first, then the references: a record that names the service holds the row
    # (``hold_services``) until it commits, and is then seen here.
    service = session.scalar(
        select(Service)
        .where(Service.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if service is None:
        raise NotFound(f"no service named {name!r}", field="service")
    references = service_references(session, service)
    if references:
        named = ", ".join(references[:MAX_REFERENCES_NAMED])
        more = len(references) - MAX_REFERENCES_NAMED
        if more > 0:
            named += f" and {more} more"
        raise Conflict(
            f"service {name!r} is still referred to by {named}; change or delete those first",
            field="name",
            references=references,
        )
    try:
        with session.begin_nested():
            session.delete(service)
            session.flush()
    except IntegrityError:
        # A record of a domain that registered no referrer (a runtime not assembled by
        # build_runtime): its foreign key still refuses.
        raise Conflict(
            f"{name} is still named by incidents or other records; it stays in the catalog "
            "for their history",
            field="name",
        ) from None


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


GRAPH_LOCK_KEY = 0x66697265  # any constant; names the one advisory lock of the graph


def lock_graph(session: Session) -> None:
    """Serialise changes to the dependency graph for the rest of this transaction.

    Two transactions adding a→b and b→a each see no cycle on their own; under READ
    COMMITTED both would commit one. SQLite already has a single writer (BEGIN IMMEDIATE);
    PostgreSQL takes a transaction-scoped advisory lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(GRAPH_LOCK_KEY)))


def add_dependency(session: Session, actor: Actor, service_name: str, depends_on: str) -> None:
    """Add ``service_name`` → ``depends_on``; refuse an edge that would close a cycle."""
    actor.require(Role.responder)
    lock_graph(session)
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
        names = _names(session)
        shown = " → ".join([names[service.id], *(names[i] for i in cycle)])
        raise Conflict(f"this dependency would make a cycle: {shown}", field="depends_on")
    session.add(Dependency(service_id=service.id, depends_on_id=target.id))
    session.flush()
    record(session, BlastRadiusInputsChanged(service_name))


def remove_dependency(session: Session, actor: Actor, service_name: str, depends_on: str) -> None:
    actor.require(Role.responder)
    service = get_service(session, service_name, field="service")
    target = get_service(session, depends_on, field="depends_on")
    edge = session.get(Dependency, (service.id, target.id))
    if edge is None:
        raise NotFound(f"{service_name} does not depend on {depends_on}", field="depends_on")
    session.delete(edge)


def list_dependencies(session: Session) -> list[DependencyRead]:
    names = _names(session)
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


def read_feature(feature: Feature) -> FeatureRead:
    return FeatureRead(
        name=feature.name,
        description=feature.description,
        services=sorted(s.name for s in feature.services),
    )


def list_features(session: Session) -> list[FeatureRead]:
    return [read_feature(f) for f in session.scalars(select(Feature).order_by(Feature.name))]


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


def read_customer(customer: Customer) -> CustomerRead:
    return CustomerRead(
        name=customer.name,
        contact=customer.contact,
        services=sorted(s.name for s in customer.services),
    )


def list_customers(session: Session) -> list[CustomerRead]:
    return [read_customer(c) for c in session.scalars(select(Customer).order_by(Customer.name))]


def blast_radius(session: Session, failing_names: Iterable[str]) -> BlastRadius:
    """Everything that depends, directly or not, on the failing services."""
    failing = services_by_name(session, failing_names, field="services")
    failing_ids = {s.id for s in failing}
    depends_on, dependents_of = _adjacency(_edges(session))
    impacted_ids = failing_ids | _reach(dependents_of, failing_ids)
    checks = failing_checks(session)
    checked_failing = [i for i in impacted_ids if i in checks]
    at_risk_ids = _reach(dependents_of, checked_failing) - set(checks)
    upstream_ids = _reach(depends_on, failing_ids) - failing_ids
    names = _names(session)
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
        failing_checks={
            names[i]: checks[i] for i in sorted(checked_failing, key=lambda i: names[i])
        },
        at_risk=sorted(names[i] for i in at_risk_ids),
        failing_dependencies=sorted(names[i] for i in upstream_ids if i in checks),
        users_estimate=max((s.estimated_users for s in impacted), default=0),
    )


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """A cycle of the graph as ``[a, b, …, a]`` (a depends on b …), or None if it is a DAG."""
    forward: dict[str, list[str]] = {}
    for a, b in edges:
        forward.setdefault(a, []).append(b)
        forward.setdefault(b, [])
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(forward):
        if root in state:
            continue
        path = [root]
        state[root] = 1
        stack = [iter(sorted(forward[root]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(forward[nxt])))
    return None


def _duplicates(names: Iterable[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def check_document(session: Session, document: CatalogDocument) -> None:
    """Refuse a document that cannot apply cleanly, before anything is written."""
    for key, listed in (
        ("teams", [t.name for t in document.teams]),
        ("services", [s.name for s in document.services]),
        ("features", [f.name for f in document.features]),
        ("customers", [c.name for c in document.customers]),
    ):
        if dup := _duplicates(listed):
            raise InvalidInput(
                f"{key} named more than once: {', '.join(map(repr, dup))}", field=f"catalog.{key}"
            )
    teams = {t.name for t in document.teams} | set(session.scalars(select(Team.name)))
    names = _names(session)
    services = {s.name for s in document.services} | set(names.values())
    for i, data in enumerate(document.services):
        if data.team and data.team not in teams:
            raise NotFound(f"no team named {data.team!r}", field=f"catalog.services[{i}].team")
        for target in data.depends_on:
            if target not in services:
                raise NotFound(
                    f"{data.name} depends on {target!r}, which is not a service",
                    field=f"catalog.services[{i}].depends_on",
                )
            if target == data.name:
                raise InvalidInput(
                    f"{data.name} cannot depend on itself",
                    field=f"catalog.services[{i}].depends_on",
                )
    linked: list[tuple[str, Sequence[FeatureCreate | CustomerCreate]]] = [
        ("features", document.features),
        ("customers", document.customers),
    ]
    for key, entries in linked:
        for i, entry in enumerate(entries):
            if missing := [n for n in entry.services if n not in services]:
                raise NotFound(
                    f"{entry.name} names no service called {', '.join(map(repr, missing))}",
                    field=f"catalog.{key}[{i}].services",
                )
    replaced = {s.name for s in document.services if "depends_on" in s.model_fields_set}
    edges = [(names[a], names[b]) for a, b in _edges(session) if names[a] not in replaced] + [
        (s.name, t) for s in document.services if s.name in replaced for t in s.depends_on
    ]
    if cycle := find_cycle(edges):
        # Start the message at an edge the document adds: that is the one to look at.
        new = {(s.name, t) for s in document.services if s.name in replaced for t in s.depends_on}
        at = next((k for k in range(len(cycle) - 1) if (cycle[k], cycle[k + 1]) in new), 0)
        cycle = [*cycle[at:-1], *cycle[:at], cycle[at]]
        raise Conflict(
            f"these dependencies would make a cycle: {' → '.join(cycle)}",
            field="catalog.services.depends_on",
        )


def _set_dependencies(session: Session, service: Service, targets: list[str]) -> None:
    """Make ``targets`` the whole set of what ``service`` depends on (graph already checked).

    A new edge can widen open incidents' blast radii, as ``add_dependency``'s does: it
    records ``BlastRadiusInputsChanged`` so the severity policy is applied to them again.
    """
    wanted = {t.id for t in services_by_name(session, targets, field="depends_on")}
    current = {
        d.depends_on_id: d
        for d in session.scalars(select(Dependency).where(Dependency.service_id == service.id))
    }
    for target_id, edge in current.items():
        if target_id not in wanted:
            session.delete(edge)
    added = wanted - current.keys()
    for target_id in added:
        session.add(Dependency(service_id=service.id, depends_on_id=target_id))
    session.flush()
    if added:
        record(session, BlastRadiusInputsChanged(service.name))


def apply_document(session: Session, actor: Actor, document: CatalogDocument) -> ImportReport:
    """Create or update everything a catalog document names; idempotent, all or nothing.

    The whole document is checked first (names, references, the resulting graph); a
    failure raises before any write. A service entry's fields that the document leaves out
    keep their current values, and ``depends_on``, when given, replaces the service's set.
    """
    actor.require(Role.responder)
    lock_graph(session)
    check_document(session, document)
    report = ImportReport()
    for team in document.teams:
        auth_service.ensure_team(session, actor, team.name, team.description)
        report.teams += 1
    for data in document.services:
        existing = session.scalar(select(Service).where(Service.name == data.name))
        if existing is None:
            create_service(session, actor, data.model_copy(update={"depends_on": []}))
        else:
            fields = data.model_dump(exclude={"name", "depends_on"}, exclude_unset=True)
            update_service(session, actor, data.name, ServiceUpdate(**fields))
        report.services += 1
    session.flush()
    for data in document.services:
        if "depends_on" in data.model_fields_set:
            _set_dependencies(session, get_service(session, data.name), data.depends_on)
            report.dependencies += len(set(data.depends_on))
    for feature in document.features:
        upsert_feature(session, actor, feature)
        report.features += 1
    for customer in document.customers:
        upsert_customer(session, actor, customer)
        report.customers += 1
    return report
