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

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote

from edgecloud.errors import TemplateError
from edgecloud.templates.budget import MAX_TEXT, capped, tick
from edgecloud.templates.functions import (
    GET_ATTR,
    GET_PARAM,
    GET_RESOURCE,
    LIST_JOIN,
    STACK_NAME,
    STR_REPLACE,
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
    template: Template,
    values: Mapping[str, object],
    *,
    stack_name: str | None = None,
    defaults: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Every declared parameter's value: given or default, converted, constraints checked.

    Unknown and missing parameters are TemplateErrors with field ``parameters.<name>``. With
    ``stack_name``, the pseudo parameter ``OS::stack_name`` is set too. ``defaults`` (an
    environment's parameter_defaults) replace the template's defaults.
    """
    for name in sorted(values):
        if name not in template.parameters:
            _bad_value(name, "no such parameter in the template")
    given = {**{k: v for k, v in (defaults or {}).items() if k in template.parameters}, **values}
    resolved = {name: _parameter_value(template, name, given) for name in template.parameters}
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
        tick()
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
        evaluate = _VALUE_FUNCTIONS.get(name)
        if evaluate is None:
            self.fail(path, f"intrinsic function {name!r} is not supported here")
        args = self.evaluate(argument, path)
        if has_function(args):  # references left as written (substitute_parameters)
            return {name: args}
        try:
            result = evaluate(self, args, path)
        except TemplateError as exc:
            self.fail(path, str(exc))
        return capped(result, name) if not isinstance(result, bool) else result

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


# --- value functions (arguments already evaluated, no references left) --------------------


def _list_join(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) < 2 or not isinstance(args[0], str):
        ev.fail(path, "list_join takes [delimiter, list, optional more lists...]")
    delimiter, *lists = args
    strings: list[str] = []
    size = 0
    for index, items in enumerate(lists, start=1):
        if not isinstance(items, list):
            ev.fail((*path, index), f"list_join needs a list here, got {_preview(items)}")
        for item in items:
            strings.append(_join_text(item))
            size += len(strings[-1]) + len(delimiter)
            if size > MAX_TEXT:  # checked while joining, never built beyond the cap
                raise TemplateError(f"list_join makes a string of more than {MAX_TEXT} characters")
    return delimiter.join(strings)


def _str_replace(ev: _Evaluator, args: object, path: Path) -> object:
    name = str(path[-1])
    if not isinstance(args, dict) or not isinstance(args.get("params"), dict):
        ev.fail(path, f"{name} takes a map with template (a string) and params (a map)")
    template, params = args.get("template"), args["params"]
    if not isinstance(template, str):
        ev.fail(path, f"the {name} template must be a string, not {_preview(template)}")
    for key, value in params.items():
        if name != "str_replace" and key not in template:
            ev.fail(path, f"{name}: {key!r} does not occur in the template")
        if value is None and name == "str_replace_vstrict":
            ev.fail(path, f"{name}: the value of {key!r} is empty")
    # One pass, longest key first, replaced text never rescanned (as Heat): linear time.
    keys = sorted((str(key) for key in params if str(key)), key=len, reverse=True)
    if not keys:
        return template
    values = {str(key): _join_text(value) for key, value in params.items()}
    pattern = re.compile("|".join(re.escape(key) for key in keys))
    size = len(template)
    for count, match in enumerate(pattern.finditer(template)):  # the size before building it
        size += len(values[match.group(0)]) - len(match.group(0))
        if size > MAX_TEXT:
            raise TemplateError(f"{name} makes a string of more than {MAX_TEXT} characters")
        if count % 1024 == 0:
            tick()
    return pattern.sub(lambda match: values[match.group(0)], template)


def _str_split(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) not in (2, 3) or not isinstance(args[0], str):
        ev.fail(path, "str_split takes [delimiter, string, optional index]")
    if not isinstance(args[1], str) or not args[0]:
        ev.fail(path, "str_split splits a string by a non-empty delimiter")
    parts = args[1].split(args[0], MAX_SPLIT)
    if len(args) == 3:
        return _select(parts, [args[2]], path, ev.fail)
    return parts


MAX_SPLIT = 10_000


def _list_concat(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or not all(isinstance(item, list) for item in args):
        ev.fail(path, "list_concat takes a list of lists")
    return capped([item for items in args for item in items], "list_concat")


def _list_concat_unique(ev: _Evaluator, args: object, path: Path) -> object:
    joined = _list_concat(ev, args, path)
    assert isinstance(joined, list)
    unique: list[object] = []
    for item in joined:
        if item not in unique:
            unique.append(item)
    return unique


def _map_merge(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or not all(isinstance(item, dict) for item in args):
        ev.fail(path, "map_merge takes a list of maps")
    merged: dict[str, object] = {}
    for item in args:
        merged.update(item)
    return merged


def _map_replace(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) != 2 or not isinstance(args[0], dict):
        ev.fail(path, "map_replace takes [map, {keys: {...}, values: {...}}]")
    rules = args[1] if isinstance(args[1], dict) else {}
    keys, values = rules.get("keys") or {}, rules.get("values") or {}
    if not isinstance(keys, dict) or not isinstance(values, dict):
        ev.fail(path, "map_replace keys and values are maps")
    result: dict[str, object] = {}
    for key, value in args[0].items():
        new_key = str(keys.get(key, key))
        if new_key in result:
            ev.fail(path, f"map_replace makes the key {new_key!r} twice")
        result[new_key] = values.get(value, value) if isinstance(value, str | int) else value
    return result


def _repeat(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, dict) or not isinstance(args.get("for_each"), dict):
        ev.fail(path, "repeat takes {for_each: {placeholder: list}, template: value}")
    for_each = args["for_each"]
    lists = list(for_each.values())
    if not all(isinstance(items, list) for items in lists):
        ev.fail(path, "repeat: every for_each value must be a list")
    combinations = 1
    for items in lists:
        combinations *= len(items)
    capped([None] * min(combinations, MAX_SPLIT + 1), "repeat")
    results: list[object] = [args.get("template")]
    for placeholder, items in for_each.items():
        results = [_substitute(r, str(placeholder), _join_text(i)) for r in results for i in items]
    return results


def _substitute(value: object, placeholder: str, text: str) -> object:
    tick()
    if isinstance(value, str):
        return value.replace(placeholder, text)
    if isinstance(value, list):
        return [_substitute(item, placeholder, text) for item in value]
    if isinstance(value, dict):
        return {
            _substitute(k, placeholder, text): _substitute(v, placeholder, text)
            for k, v in value.items()
        }
    return value


def _digest(ev: _Evaluator, args: object, path: Path) -> object:
    algorithms = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
    if not isinstance(args, list) or len(args) != 2 or args[0] not in algorithms:
        ev.fail(path, f"digest takes [algorithm ({', '.join(algorithms)}), value]")
    return hashlib.new(str(args[0]), _join_text(args[1]).encode()).hexdigest()


def _equals(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) != 2:
        ev.fail(path, "equals takes two values")
    return args[0] == args[1]


def _contains(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) != 2 or not isinstance(args[1], list | str):
        ev.fail(path, "contains takes [value, list]")
    return args[0] in args[1]


def _not(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, bool):
        ev.fail(path, "not takes a condition")
    return not args


def _and(ev: _Evaluator, args: object, path: Path) -> object:
    return all(_booleans(ev, args, path))


def _or(ev: _Evaluator, args: object, path: Path) -> object:
    return any(_booleans(ev, args, path))


def _booleans(ev: _Evaluator, args: object, path: Path) -> list[bool]:
    if not isinstance(args, list) or not all(isinstance(item, bool) for item in args):
        ev.fail(path, f"{path[-1]} takes a list of conditions")
    return list(args)


def _filter(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, list) or len(args) != 2 or not isinstance(args[1], list):
        ev.fail(path, "filter takes [values to remove, list]")
    drop = args[0] if isinstance(args[0], list) else [args[0]]
    return [item for item in args[1] if item not in drop]


def _make_url(ev: _Evaluator, args: object, path: Path) -> object:
    if not isinstance(args, dict) or "host" not in args:
        ev.fail(path, "make_url takes a map with at least host")
    scheme, host = args.get("scheme", "http"), str(args["host"])
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    port = f":{args['port']}" if args.get("port") is not None else ""
    url = f"{scheme}://{host}{port}/{quote(str(args.get('path', '')).lstrip('/'))}"
    query = args.get("query")
    if isinstance(query, dict) and query:
        url += "?" + "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in query.items())
    if args.get("fragment"):
        url += "#" + quote(str(args["fragment"]))
    return url


_VALUE_FUNCTIONS: Mapping[str, Callable[[_Evaluator, object, Path], object]] = {
    LIST_JOIN: _list_join,
    **dict.fromkeys(STR_REPLACE, _str_replace),
    "str_split": _str_split,
    "list_concat": _list_concat,
    "list_concat_unique": _list_concat_unique,
    "map_merge": _map_merge,
    "map_replace": _map_replace,
    "repeat": _repeat,
    "digest": _digest,
    "equals": _equals,
    "contains": _contains,
    "not": _not,
    "and": _and,
    "or": _or,
    "filter": _filter,
    "make_url": _make_url,
}


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


def has_function(value: object) -> bool:
    """Whether ``value`` holds an intrinsic function call anywhere inside."""
    if function_call(value) is not None:
        return True
    if isinstance(value, dict):
        return any(has_function(item) for item in value.values())
    if isinstance(value, list):
        return any(has_function(item) for item in value)
    return False
