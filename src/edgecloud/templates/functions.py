"""Intrinsic functions: recognising them, finding the resources they name, checking their shape.

Supported: ``get_param`` (a name, or ``[name, key-or-index, ...]``), ``get_resource``
(a name), ``get_attr`` (``[resource, attribute, key-or-index, ...]``) and ``list_join``
(``[delimiter, list, more lists...]``). Other Heat functions (``str_replace``, ``Fn::*``...)
are recognised only to be rejected by name. templates/loading.py calls ``check_functions``;
templates/resolving.py evaluates them; templates/resolving.py and templates/diffing.py use
``referenced_resources`` for implicit dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from edgecloud.templates.model import ParameterDef
from edgecloud.templates.problems import Fail, Path
from edgecloud.templates.resource_types import resource_type

GET_PARAM = "get_param"
GET_RESOURCE = "get_resource"
GET_ATTR = "get_attr"
LIST_JOIN = "list_join"
SUPPORTED = frozenset({GET_PARAM, GET_RESOURCE, GET_ATTR, LIST_JOIN})
UNSUPPORTED = frozenset(
    {
        "str_replace", "str_replace_strict", "str_replace_vstrict", "str_split", "get_file",
        "repeat", "digest", "resource_facade", "map_merge", "map_replace", "yaql", "equals",
        "if", "not", "and", "or", "filter", "make_url", "list_concat", "list_concat_unique",
        "contains", "Ref",
    }
)  # fmt: skip

STACK_NAME = "OS::stack_name"
PSEUDO_PARAMETERS = frozenset({STACK_NAME})


def function_call(value: object) -> tuple[str, object] | None:
    """``(name, argument)`` when ``value`` is a one-key map naming an intrinsic function."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((key, argument),) = value.items()
    if key in SUPPORTED or key in UNSUPPORTED or str(key).startswith("Fn::"):
        return str(key), argument
    return None


def referenced_resources(value: object) -> list[str]:
    """Resources named by get_resource / get_attr anywhere in ``value``, first use first."""
    return list(dict.fromkeys(_references(value)))


def _references(value: object) -> Iterator[str]:
    call = function_call(value)
    if call is not None:
        name, argument = call
        if name == GET_RESOURCE and isinstance(argument, str):
            yield argument
        elif name == GET_ATTR and isinstance(argument, list) and argument:
            if isinstance(argument[0], str):
                yield argument[0]
            yield from _references(argument[1:])
        else:
            yield from _references(argument)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@dataclass(frozen=True)
class FunctionChecker:
    """Checks every intrinsic function in a value against the declared names (load time)."""

    parameters: Mapping[str, ParameterDef]
    resource_types: Mapping[str, str]
    fail: Fail

    def check(self, value: object, path: Path) -> None:
        """Fail on the first malformed function or reference to something undeclared."""
        call = function_call(value)
        if call is not None:
            self._call(call[0], call[1], (*path, call[0]))
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check(item, (*path, index))

    def _call(self, name: str, argument: object, path: Path) -> None:
        if name == GET_PARAM:
            self._get_param(argument, path)
        elif name == GET_RESOURCE:
            self._get_resource(argument, path)
        elif name == GET_ATTR:
            self._get_attr(argument, path)
        elif name == LIST_JOIN:
            self._list_join(argument, path)
        else:
            self.fail(path, f"intrinsic function {name!r} is not supported")

    def _get_param(self, argument: object, path: Path) -> None:
        name, keys = self._name_and_keys(argument, path, GET_PARAM, "a parameter name")
        if name in PSEUDO_PARAMETERS:
            if keys:
                self.fail(path, f"parameter {name!r} is a string and has no keys")
            return
        definition = self.parameters.get(name)
        if definition is None:
            self.fail(path, f"parameter {name!r} is not declared")
        if keys and definition.type not in ("json", "comma_delimited_list"):
            self.fail(path, f"parameter {name!r} is a {definition.type} and has no keys")
        if keys and definition.type == "comma_delimited_list" and not isinstance(keys[0], int):
            self.fail(path, f"parameter {name!r} is a list: index it with a number")

    def _get_resource(self, argument: object, path: Path) -> None:
        if not isinstance(argument, str):
            self.fail(path, "get_resource takes a resource name")
        self._declared(argument, path)

    def _get_attr(self, argument: object, path: Path) -> None:
        usage = "get_attr takes [resource, attribute, optional keys...]"
        if not isinstance(argument, list) or len(argument) < 2:
            self.fail(path, usage)
        resource, attribute, *keys = argument
        if not isinstance(resource, str) or not isinstance(attribute, str):
            self.fail(path, usage)
        self._check_keys(keys, path, usage)
        type_name = self._declared(resource, path)
        known = resource_type(type_name)
        if known is not None and attribute not in known.attributes:
            attributes = ", ".join(sorted(known.attributes))
            self.fail(path, f"{type_name} has no attribute {attribute!r} (it has: {attributes})")

    def _list_join(self, argument: object, path: Path) -> None:
        usage = "list_join takes [delimiter, list, optional more lists...]"
        if not isinstance(argument, list) or len(argument) < 2:
            self.fail(path, usage)
        if not isinstance(argument[0], str):
            self.fail((*path, 0), "the list_join delimiter must be a string")
        for index, item in enumerate(argument[1:], start=1):
            if not isinstance(item, list) and function_call(item) is None:
                self.fail((*path, index), "list_join joins lists (or functions giving lists)")
            self.check(item, (*path, index))

    def _name_and_keys(
        self, argument: object, path: Path, function: str, what: str
    ) -> tuple[str, list[object]]:
        usage = f"{function} takes {what}, or a list of it and keys"
        if isinstance(argument, str):
            return argument, []
        if not isinstance(argument, list) or not argument or not isinstance(argument[0], str):
            self.fail(path, usage)
        self._check_keys(argument[1:], path, usage)
        return argument[0], argument[1:]

    def _check_keys(self, keys: list[object], path: Path, usage: str) -> None:
        for key in keys:
            if isinstance(key, bool) or not isinstance(key, str | int):
                self.fail(path, f"{usage}; keys are strings or numbers")

    def _declared(self, resource: str, path: Path) -> str:
        type_name = self.resource_types.get(resource)
        if type_name is None:
            self.fail(path, f"resource {resource!r} is not declared")
        return type_name
