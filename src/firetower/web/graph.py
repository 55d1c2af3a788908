"""Server-side layout of the service dependency graph, drawn as inline SVG by the catalog page.

Layers follow the longest path from the roots (services nothing depends on), so every
arrow — from a service to what it depends on — points down. Within a layer, nodes sit
under the services that depend on them (the mean position of those), to keep lines short.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

NODE_WIDTH = 170
NODE_HEIGHT = 46
GAP_X = 28
GAP_Y = 70
MARGIN = 16
MAX_LABEL_CHARS = 20


@dataclass(frozen=True)
class GraphNode:
    name: str
    tier: int
    team: str | None = None
    impacted: bool = False


@dataclass(frozen=True)
class PlacedNode:
    name: str
    label: str
    tier: int
    team: str | None
    impacted: bool
    layer: int
    x: float
    y: float


@dataclass(frozen=True)
class PlacedEdge:
    source: str
    target: str
    path: str


@dataclass(frozen=True)
class GraphLayout:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: float
    height: float
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def layers_of(names: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: a root is layer 0, a dependency sits below all its dependents.

    ``edges`` are (service, depends_on). The catalog refuses cycles; should one appear
    anyway, its members go to one extra layer at the bottom rather than loop forever.
    """
    nodes = sorted(set(names))
    children: dict[str, list[str]] = defaultdict(list)
    incoming = dict.fromkeys(nodes, 0)
    for source, target in set(edges):
        if source in incoming and target in incoming and source != target:
            children[source].append(target)
            incoming[target] += 1
    layer = dict.fromkeys(nodes, 0)
    ready = [n for n in nodes if incoming[n] == 0]
    placed: set[str] = set()
    while ready:
        node = ready.pop()
        placed.add(node)
        for child in children[node]:
            layer[child] = max(layer[child], layer[node] + 1)
            incoming[child] -= 1
            if incoming[child] == 0:
                ready.append(child)
    leftovers = [n for n in nodes if n not in placed]
    if leftovers:
        bottom = max((layer[n] for n in placed), default=-1) + 1
        for n in leftovers:
            layer[n] = bottom
    return layer


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def layout(nodes: Iterable[GraphNode], edges: Iterable[tuple[str, str]]) -> GraphLayout:
    by_name = {n.name: n for n in nodes}
    edge_list = sorted({(a, b) for a, b in edges if a in by_name and b in by_name and a != b})
    layer = layers_of(by_name, edge_list)
    rows: dict[int, list[str]] = defaultdict(list)
    for name in sorted(by_name):
        rows[layer[name]].append(name)
    dependents: dict[str, list[str]] = defaultdict(list)
    for a, b in edge_list:
        dependents[b].append(a)

    slot: dict[str, float] = {}
    for depth in sorted(rows):

        def anchor(name: str) -> tuple[float, str]:
            above = [slot[d] for d in dependents[name] if d in slot]
            return (sum(above) / len(above) if above else float("inf"), name)

        rows[depth].sort(key=anchor)
        # Centre each row on the widest one once all rows are known; keep order for now.
        for index, name in enumerate(rows[depth]):
            slot[name] = index - (len(rows[depth]) - 1) / 2

    widest = max((len(r) for r in rows.values()), default=0)
    width = MARGIN * 2 + widest * NODE_WIDTH + max(widest - 1, 0) * GAP_X
    height = MARGIN * 2 + len(rows) * NODE_HEIGHT + max(len(rows) - 1, 0) * GAP_Y
    centre = width / 2
    placed: dict[str, PlacedNode] = {}
    for depth, row in rows.items():
        for name in row:
            node = by_name[name]
            x = centre + slot[name] * (NODE_WIDTH + GAP_X) - NODE_WIDTH / 2
            y = MARGIN + depth * (NODE_HEIGHT + GAP_Y)
            placed[name] = PlacedNode(
                name, _label(name), node.tier, node.team, node.impacted, depth, x, y
            )

    placed_edges = []
    for a, b in edge_list:
        start, end = placed[a], placed[b]
        x1, y1 = start.x + NODE_WIDTH / 2, start.y + NODE_HEIGHT
        x2, y2 = end.x + NODE_WIDTH / 2, end.y - 4  # stop short: the arrowhead fills the gap
        bend = (y2 - y1) / 2
        path = (
            f"M{x1:.1f},{y1:.1f} "
            f"C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
        )
        placed_edges.append(PlacedEdge(a, b, path))
    ordered = sorted(placed.values(), key=lambda n: (n.layer, n.x))
    return GraphLayout(ordered, placed_edges, width, height)
