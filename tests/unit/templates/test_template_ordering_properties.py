"""Ordering properties, checked with Hypothesis against an independent reachability oracle.

Random dependency graphs are written as real templates (edges as depends_on, get_resource or
get_attr) and loaded: acyclic ones must load and order every resource after what it depends
on; any graph with a cycle must be rejected naming a genuine cycle.
"""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.errors import TemplateError
from edgecloud.templates import ResourceDef, Template, creation_order, dependencies, load_template
from edgecloud.templates.graphs import find_cycle, topological_order

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)
EDGE_FORMS = ("depends_on", "get_resource", "get_attr")

Edges = dict[str, list[tuple[str, str]]]  # node -> [(dependency, how)]


@st.composite
def acyclic_graphs(draw: st.DrawFn) -> Edges:
    """Nodes r0..rN; ri may depend only on rj with j < i; declared in a random order."""
    count = draw(st.integers(1, 9))
    names = [f"r{i}" for i in range(count)]
    edges: Edges = {}
    for index, name in enumerate(names):
        targets = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
        edges[name] = [(target, draw(st.sampled_from(EDGE_FORMS))) for target in targets]
    order = draw(st.permutations(names))
    return {name: edges[name] for name in order}


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> Edges:
    """An acyclic graph plus a cycle through some of its nodes (perhaps a self-loop)."""
    edges = draw(acyclic_graphs())
    names = list(edges)
    cycle = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    for source, target in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        if target not in [existing for existing, _ in edges[source]]:
            edges[source].append((target, draw(st.sampled_from(EDGE_FORMS))))
    return edges


def template_text(edges: Edges) -> str:
    resources: dict[str, object] = {}
    for name, deps in edges.items():
        metadata: dict[str, object] = {}
        depends_on = []
        for index, (target, how) in enumerate(deps):
            if how == "depends_on":
                depends_on.append(target)
            elif how == "get_resource":
                metadata[f"m{index}"] = {"get_resource": target}
            else:
                metadata[f"m{index}"] = {"get_attr": [target, "id"]}
        properties = {"image": "img", "flavor": "small", "metadata": metadata}
        body: dict[str, object] = {"type": "OS::Nova::Server", "properties": properties}
        if depends_on:
            body["depends_on"] = depends_on
        resources[name] = body
    document = {"heat_template_version": "2018-08-31", "resources": resources}
    return yaml.safe_dump(document, sort_keys=False)


def reaches_itself(graph: dict[str, list[str]]) -> bool:
    """Oracle: transitive closure; a node that reaches itself means a cycle."""
    reach = {node: set(deps) for node, deps in graph.items()}
    for middle in graph:
        for node in graph:
            if middle in reach[node]:
                reach[node] |= reach[middle]
    return any(node in reach[node] for node in graph)


def plain(edges: Edges) -> dict[str, list[str]]:
    return {name: [target for target, _ in deps] for name, deps in edges.items()}


def assert_valid_order(order: list[str], graph: dict[str, list[str]]) -> None:
    assert sorted(order) == sorted(graph)
    position = {name: index for index, name in enumerate(order)}
    for name, deps in graph.items():
        for dep in deps:
            assert position[dep] < position[name], f"{name} ordered before its dependency {dep}"


def assert_genuine_cycle(cycle: list[str], graph: dict[str, list[str]]) -> None:
    assert len(cycle) >= 2 and cycle[0] == cycle[-1]
    for source, target in pairwise(cycle):
        assert target in graph[source], f"{source} -> {target} is not an edge"


@PROPERTY_SETTINGS
@given(acyclic_graphs())
def test_creation_order_is_topological_for_acyclic_templates(edges: Edges) -> None:
    template = load_template(template_text(edges))
    graph = plain(edges)
    assert {name: sorted(deps) for name, deps in dependencies(template).items()} == {
        name: sorted(deps) for name, deps in graph.items()
    }
    order = creation_order(template)
    assert_valid_order(order, graph)
    assert creation_order(template) == order


@PROPERTY_SETTINGS
@given(cyclic_graphs())
def test_cycles_are_always_detected_and_named(edges: Edges) -> None:
    graph = plain(edges)
    assert reaches_itself(graph)
    with pytest.raises(TemplateError) as info:
        load_template(template_text(edges))
    match = re.search(r"dependency cycle: (.+)$", str(info.value))
    assert match is not None, str(info.value)
    cycle = match.group(1).split(" -> ")
    assert_genuine_cycle(cycle, graph)
    assert info.value.field == f"resources.{cycle[0]}"


@PROPERTY_SETTINGS
@given(cyclic_graphs())
def test_creation_order_rejects_hand_built_cyclic_templates(edges: Edges) -> None:
    resources = {
        name: ResourceDef(name, "OS::Neutron::Net", depends_on=tuple(deps))
        for name, deps in plain(edges).items()
    }
    with pytest.raises(TemplateError, match="dependency cycle"):
        creation_order(Template(version="2018-08-31", resources=resources))


@st.composite
def any_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    names = [f"n{i}" for i in range(draw(st.integers(0, 8)))]
    if not names:
        return {}
    return {name: draw(st.lists(st.sampled_from(names), unique=True)) for name in names}


@PROPERTY_SETTINGS
@given(any_graphs())
def test_graph_functions_agree_with_the_oracle(graph: dict[str, list[str]]) -> None:
    cyclic = reaches_itself(graph)
    cycle = find_cycle(graph)
    assert (cycle is not None) == cyclic
    if cycle is not None:
        assert_genuine_cycle(cycle, graph)
        with pytest.raises(ValueError, match="dependency cycle"):
            topological_order(graph)
    else:
        assert_valid_order(topological_order(graph), graph)
