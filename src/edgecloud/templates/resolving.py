"""Evaluate a loaded template: parameter values, creation order, properties and outputs.

Called by the step that turns a stack into edgecloud objects, with a ``Template`` from
templates/loading.py. ``resolve_parameters`` converts and checks the caller's values
(templates/parameters.py); ``creation_order`` orders resources dependencies-first
(templates/graphs.py); ``resolve_properties`` and ``resolve_outputs`` evaluate intrinsic
functions, asking the caller for what only exists once resources are created: ``refs(name)``
for ``get_resource`` and ``attrs(name, attribute)`` for ``get_attr``; properties are then
checked and coerced against templates/resource_types.py by templates/properties.py.
templates/diffing.py uses ``substitute_parameters`` and ``dependencies``. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from edgecloud.templates.functions import (
    GET_ATTR,
    GET_PARAM,
    GET_RESOURCE,
    LIST_JOIN,
    STACK_NAME,
    function_call,
    referenced_resources,
)
from edgecloud.templates.graphs import find_cycle, topological_order
from edgecloud.templates.model import ResourceDef, Template
from edgecloud.templates.parameters import convert, violation
from edgecloud.templates.problems import Fail, Path, failing_at_line, template_error
from edgecloud.templates.properties import conform_properties
from edgecloud.templates.resource_types import resource_type

Refs = Callable[[str], object]
Attrs = Callable[[str, str], object]


# --- parameters ------------------------------------------------------------------------


def resolve_parameters(
    template: Template, values: Mapping[str, object], *, stack_name: str | None = None
) -> dict[str, object]:
    """Every declared parameter's value: given or default, converted, constraints checked.

    Unknown and missing parameters are TemplateErrors with field ``parameters.<name>``. With
    ``stack_name``, the pseudo parameter ``OS::stack_name`` is set too.
    """
    for name in sorted(values):
        if name not in template.parameters:
            _bad_value(name, "no such parameter in the template")
    resolved = {name: _parameter_value(template, name, values) for name in template.parameters}
    if stack_name is not None:
        resolved[STACK_NAME] = stack_name
    return resolved


def _parameter_value(template: Template, name: str, values: Mapping[str, object]) -> object:
    definition = template.parameters[name]
    raw = values.get(name, definition.default)
    if raw is None:
        _bad_value(name, "a value is required (the parameter has no default)")
    try:
        value = convert(definition.type, raw)
    except ValueError as exc:
        shown = "the value" if definition.hidden else repr(raw)
        _bad_value(name, f"{shown} {exc}")
    problem = violation(definition, value)
    if problem is not None:
        _bad_value(name, problem)
    return value


def _bad_value(name: str, message: str) -> NoReturn:
    raise template_error(None, None, ("parameters", name), message)


# --- order -----------------------------------------------------------------------------


def dependencies(template: Template) -> dict[str, list[str]]:
    """What each resource depends on: ``depends_on`` first, then get_resource/get_attr targets."""
    graph: dict[str, list[str]] = {}
    for name, resource in template.resources.items():
        targets = [*resource.depends_on, *referenced_resources(dict(resource.properties))]
        for target in targets:
            if target not in template.resources:
                fail = failing_at_line(resource.source, resource.line)
                fail(("resources", name), f"depends on undeclared resource {target!r}")
        graph[name] = list(dict.fromkeys(targets))
    return graph


def creation_order(template: Template) -> list[str]:
    """Resource names, each after everything it depends on; ties in declaration order."""
    graph = dependencies(template)
    cycle = find_cycle(graph)
    if cycle is not None:
        resource = template.resources[cycle[0]]
        fail = failing_at_line(resource.source, resource.line)
        fail(("resources", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}")
    return topological_order(graph)


# --- evaluation ------------------------------------------------------------------------


def resolve_properties(
    resource: ResourceDef, params: Mapping[str, object], refs: Refs, attrs: Attrs
) -> dict[str, object]:
    """The resource's properties with every intrinsic function evaluated, checked and coerced.

    ``params`` comes from ``resolve_parameters``; ``refs`` and ``attrs`` give the created
    resources' references and attributes (edgecloud ids, names, MAC addresses...).
    """
    fail = failing_at_line(resource.source, resource.line)
    path: Path = ("resources", resource.name, "properties")
    evaluator = _Evaluator(params, fail, refs, attrs)
    values = {
        key: evaluator.evaluate(raw, (*path, key)) for key, raw in resource.properties.items()
    }
    rtype = resource_type(resource.type)
    if rtype is None:
        fail(("resources", resource.name, "type"), f"unknown resource type {resource.type!r}")
    return conform_properties(rtype, values, path, fail)


def resolve_outputs(
    template: Template, params: Mapping[str, object], refs: Refs, attrs: Attrs
) -> dict[str, object]:
    """Every output's value, evaluated like properties."""
    results: dict[str, object] = {}
    for name, output in template.outputs.items():
        fail = failing_at_line(template.source, output.line)
        evaluator = _Evaluator(params, fail, refs, attrs)
        results[name] = evaluator.evaluate(output.value, ("outputs", name, "value"))
    return results


def substitute_parameters(resource: ResourceDef, params: Mapping[str, object]) -> dict[str, object]:
    """Properties with get_param evaluated and get_resource/get_attr left as written.

    A ``list_join`` is joined when its parts are then all known. For comparing a resource
    across template versions, where references compare by the resource name.
    """
    fail = failing_at_line(resource.source, resource.line)
    evaluator = _Evaluator(params, fail)
    path: Path = ("resources", resource.name, "properties")
    return {key: evaluator.evaluate(raw, (*path, key)) for key, raw in resource.properties.items()}


@dataclass(frozen=True)
class _Evaluator:
    """Evaluates intrinsic functions; without ``refs``/``attrs`` references stay as written."""

    params: Mapping[str, object]
    fail: Fail
    refs: Refs | None = None
    attrs: Attrs | None = None

    def evaluate(self, value: object, path: Path) -> object:
        call = function_call(value)
        if call is not None:
            return self._call(call[0], call[1], (*path, call[0]))
        if isinstance(value, dict):
            return {key: self.evaluate(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.evaluate(item, (*path, index)) for index, item in enumerate(value)]
        return value

    def _call(self, name: str, argument: object, path: Path) -> object:
        if name == GET_PARAM:
            return self._get_param(argument, path)
        if name == GET_RESOURCE:
            return self._get_resource(argument, path)
        if name == GET_ATTR:
            return self._get_attr(argument, path)
        if name == LIST_JOIN:
            return self._list_join(argument, path)
        self.fail(path, f"intrinsic function {name!r} is not supported")

    def _get_param(self, argument: object, path: Path) -> object:
        if argument == []:
            self.fail(path, "get_param takes a parameter name")
        name, *keys = argument if isinstance(argument, list) else [argument]
        if not isinstance(name, str) or name not in self.params:
            self.fail(path, f"parameter {name!r} has no value")
        return _select(self.params[name], keys, path, self.fail)

    def _get_resource(self, argument: object, path: Path) -> object:
        if not isinstance(argument, str):
            self.fail(path, "get_resource takes a resource name")
        if self.refs is None:
            return {GET_RESOURCE: argument}
        return self.refs(argument)

    def _get_attr(self, argument: object, path: Path) -> object:
        if not isinstance(argument, list) or len(argument) < 2:
            self.fail(path, "get_attr takes [resource, attribute, optional keys...]")
        resource, attribute, *keys = argument
        if self.attrs is None:
            return {GET_ATTR: list(argument)}
        if not isinstance(resource, str) or not isinstance(attribute, str):
            self.fail(path, "get_attr takes [resource, attribute, optional keys...]")
        return _select(self.attrs(resource, attribute), keys, path, self.fail)

    def _list_join(self, argument: object, path: Path) -> object:
        if not isinstance(argument, list) or len(argument) < 2:
            self.fail(path, "list_join takes [delimiter, list, optional more lists...]")
        delimiter, *lists = (self.evaluate(item, (*path, i)) for i, item in enumerate(argument))
        if not isinstance(delimiter, str):
            self.fail(path, "the list_join delimiter must be a string")
        if _has_function([delimiter, *lists]):
            return {LIST_JOIN: [delimiter, *lists]}
        strings: list[str] = []
        for index, items in enumerate(lists, start=1):
            if not isinstance(items, list):
                self.fail((*path, index), f"list_join needs a list here, got {items!r}")
            strings.extend(_join_text(item) for item in items)
        return delimiter.join(strings)


def _select(value: object, keys: list[object], path: Path, fail: Fail) -> object:
    """``value[key0][key1]...`` through maps and lists, failing with the key that is missing."""
    for key in keys:
        if isinstance(value, dict) and str(key) in value:
            value = value[str(key)]
        elif isinstance(value, list) and _is_index(key, len(value)):
            value = value[int(str(key))]
        else:
            fail(path, f"no key or index {key!r} in {_preview(value)}")
    return value


def _is_index(key: object, length: int) -> bool:
    text = str(key)
    return not isinstance(key, bool) and text.isdigit() and int(text) < length


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join_text(item: object) -> str:
    if item is None:
        return ""
    if isinstance(item, str):
        return item
    return json.dumps(item, sort_keys=True, default=str)


def _has_function(value: object) -> bool:
    if function_call(value) is not None:
        return True
    if isinstance(value, dict):
        return any(_has_function(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_function(item) for item in value)
    return False
