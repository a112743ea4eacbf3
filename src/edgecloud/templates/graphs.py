"""Dependency graphs: find a cycle, or order nodes dependencies-first. Pure, iterative.

A graph maps each node to the nodes it depends on; its key order is the declaration order,
which breaks ties so every answer is deterministic. templates/loading.py rejects cycles with
``find_cycle``; templates/resolving.py orders creation with ``topological_order``; edges to
nodes outside the graph are ignored here (the callers reject them first).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence

Graph = Mapping[str, Sequence[str]]

_VISITING, _DONE = 1, 2


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]`` (a depends on b ... depends on a), or None."""
    state: dict[str, int] = {}
    for root in graph:
        if root not in state:
            cycle = _cycle_from(graph, root, state)
            if cycle is not None:
                return cycle
    return None


def _cycle_from(graph: Graph, root: str, state: dict[str, int]) -> list[str] | None:
    path = [root]
    stack: list[Iterator[str]] = [iter(graph[root])]
    state[root] = _VISITING
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            state[path.pop()] = _DONE
        elif child in graph and state.get(child) == _VISITING:
            return [*path[path.index(child) :], child]
        elif child in graph and child not in state:
            state[child] = _VISITING
            path.append(child)
            stack.append(iter(graph[child]))
    return None


def topological_order(graph: Graph) -> list[str]:
    """Every node after the nodes it depends on, earliest-declared first among the ready.

    Raises ValueError naming a cycle when there is one.
    """
    position = {node: index for index, node in enumerate(graph)}
    waiting = {node: set(deps) & position.keys() for node, deps in graph.items()}
    dependents: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(node)
    ready = [(position[node], node) for node, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for dependent in dependents[node]:
            waiting[dependent].discard(node)
            if not waiting[dependent]:
                heapq.heappush(ready, (position[dependent], dependent))
    if len(order) < len(position):
        raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(graph) or [])}")
    return order
