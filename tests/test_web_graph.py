"""The dependency graph layout: layers by longest path, arrows always pointing down."""

from __future__ import annotations

import itertools

from firetower.web.graph import GraphNode, layers_of, layout


def test_a_service_sits_below_everything_that_depends_on_it():
    edges = [("web", "api"), ("api", "db"), ("web", "db"), ("batch", "db")]
    layers = layers_of(["web", "api", "db", "batch"], edges)
    # db is reached by web → db directly but by web → api → db too: the longest path wins.
    assert layers == {"web": 0, "batch": 0, "api": 1, "db": 2}


def test_every_arrow_points_down_and_nodes_never_overlap():
    names = ["a", "b", "c", "d", "e", "f"]
    edges = [("a", "c"), ("b", "c"), ("c", "d"), ("c", "e"), ("a", "f"), ("f", "e")]
    placed = layout([GraphNode(n, tier=2) for n in names], edges)
    at = {n.name: n for n in placed.nodes}
    assert set(at) == set(names)
    for source, target in edges:
        assert at[source].y < at[target].y
    boxes = sorted((n.y, n.x) for n in placed.nodes)
    for (y1, x1), (y2, x2) in itertools.pairwise(boxes):
        assert y1 != y2 or x2 - x1 >= placed.node_width
    assert all(n.x >= 0 and n.x + placed.node_width <= placed.width for n in placed.nodes)
    assert {(e.source, e.target) for e in placed.edges} == set(edges)


def test_a_cycle_does_not_hang_the_layout():
    layers = layers_of(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])
    assert layers["a"] == 0
    assert layers["b"] == layers["c"] == 1


def test_long_names_are_shortened_for_the_box_only():
    long = "a-very-long-service-name-indeed"
    (node,) = layout([GraphNode(long, tier=1)], []).nodes
    assert node.name == long
    assert node.label.endswith("…") and len(node.label) <= 20


def test_an_empty_catalog_lays_out_nothing():
    placed = layout([], [])
    assert placed.nodes == [] and placed.edges == []
