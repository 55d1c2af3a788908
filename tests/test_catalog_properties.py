"""Properties of the dependency graph, checked against a reference model with hypothesis."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firetower.catalog import service
from firetower.catalog.schemas import CatalogDocument, CustomerCreate, FeatureCreate, ServiceCreate
from firetower.errors import Conflict, InvalidInput
from tests.factories import SYSTEM

_round = itertools.count()
SIZE = 6
edges_st = st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1)), max_size=14)
DB_SETTINGS = settings(
    max_examples=25,
    deadline=None,  # database round trips vary; nothing here is about speed
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def reaches(edges: set[tuple[int, int]], start: int, goal: int) -> bool:
    """Reference reachability: can ``start`` reach ``goal`` following depends-on edges?"""
    seen, frontier = {start}, [start]
    while frontier:
        node = frontier.pop()
        if node == goal:
            return True
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                frontier.append(b)
    return False


def reference_impacted(edges: set[tuple[int, int]], failing: set[int]) -> set[int]:
    """Every node that reaches a failing one (itself included)."""
    return {n for n in range(SIZE) if any(reaches(edges, n, f) for f in failing)}


@DB_SETTINGS
@given(
    attempts=edges_st,
    failing=st.sets(st.integers(0, SIZE - 1), min_size=1),
    tiers=st.lists(st.integers(1, 4), min_size=SIZE, max_size=SIZE),
    users=st.lists(st.integers(0, 10_000), min_size=SIZE, max_size=SIZE),
    in_feature=st.sets(st.integers(0, SIZE - 1)),
)
def test_graph_stays_acyclic_and_blast_radius_is_reachability(
    runtime, attempts, failing, tiers, users, in_feature
):
    prefix = f"p{next(_round)}-"
    names = [f"{prefix}{i}" for i in range(SIZE)]
    with runtime.transaction() as session:
        for i, name in enumerate(names):
            service.create_service(
                session, SYSTEM, ServiceCreate(name=name, tier=tiers[i], estimated_users=users[i])
            )
        service.upsert_feature(
            session,
            SYSTEM,
            FeatureCreate(name=f"{prefix}f", services=[names[i] for i in sorted(in_feature)]),
        )
        service.upsert_customer(
            session, SYSTEM, CustomerCreate(name=f"{prefix}c", services=[names[0]])
        )
    accepted: set[tuple[int, int]] = set()
    for a, b in attempts:
        closes_cycle = a == b or reaches(accepted, b, a)
        try:
            with runtime.transaction() as session:
                service.add_dependency(session, SYSTEM, names[a], names[b])
        except (Conflict, InvalidInput) as refused:
            assert closes_cycle, f"{a}->{b} refused but makes no cycle: {refused}"
            if a != b:
                assert refused.detail.startswith(f"this dependency would make a cycle: {names[a]}")
        else:
            assert not closes_cycle, f"{a}->{b} accepted but closes a cycle"
            accepted.add((a, b))

    with runtime.read() as session:
        stored = {
            (names.index(d.service), names.index(d.depends_on))
            for d in service.list_dependencies(session)
            if d.service.startswith(prefix)
        }
        assert stored == accepted
        assert service.find_cycle([(names[a], names[b]) for a, b in stored]) is None
        radius = service.blast_radius(session, [names[i] for i in failing])

    impacted = reference_impacted(accepted, failing)
    assert radius.impacted == sorted(names[i] for i in impacted)
    assert radius.dependents == sorted(names[i] for i in impacted - failing)
    assert radius.tier1_impacted == sorted(names[i] for i in impacted if tiers[i] == 1)
    assert radius.users_estimate == max(users[i] for i in impacted)
    assert radius.features == ([f"{prefix}f"] if impacted & in_feature else [])
    assert radius.customers == ([f"{prefix}c"] if 0 in impacted else [])


@DB_SETTINGS
@given(graph=st.dictionaries(st.integers(0, SIZE - 1), st.sets(st.integers(0, SIZE - 1))))
def test_a_document_applies_only_if_its_graph_is_acyclic(runtime, graph):
    prefix = f"d{next(_round)}-"
    names = [f"{prefix}{i}" for i in range(SIZE)]
    document = CatalogDocument(
        services=[
            ServiceCreate(name=names[i], depends_on=[names[j] for j in sorted(graph.get(i, ()))])
            for i in range(SIZE)
        ]
    )
    edges = {(a, b) for a, targets in graph.items() for b in targets}
    acyclic = not any(reaches(edges - {(a, b)}, b, a) or a == b for a, b in edges)
    try:
        with runtime.transaction() as session:
            service.apply_document(session, SYSTEM, document)
    except (Conflict, InvalidInput):
        assert not acyclic
        with runtime.read() as session:
            assert not any(s.name.startswith(prefix) for s in service.list_services(session))
    else:
        assert acyclic
        with runtime.read() as session:
            stored = {
                (names.index(d.service), names.index(d.depends_on))
                for d in service.list_dependencies(session)
                if d.service.startswith(prefix)
            }
        assert stored == edges


@given(edges=st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("abcdef"))))
def test_find_cycle_returns_a_real_cycle_exactly_when_there_is_one(edges):
    cycle = service.find_cycle(edges)
    numbered = {("abcdef".index(a), "abcdef".index(b)) for a, b in edges}
    has_cycle = any(reaches(numbered - {(a, b)}, b, a) or a == b for a, b in numbered)
    assert (cycle is not None) == has_cycle
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1
        assert all(step in set(edges) for step in itertools.pairwise(cycle))


@pytest.mark.parametrize("size", [1, 2, 3])
def test_find_cycle_on_rings(size):
    ring = [(str(i), str((i + 1) % size)) for i in range(size)]
    assert service.find_cycle(ring) is not None
    assert service.find_cycle(ring[1:]) is None
