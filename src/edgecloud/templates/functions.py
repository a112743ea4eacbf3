"""Intrinsic functions: recognising them, finding the resources they name, checking their shape.

Every HOT function of templates/versions.py is recognised; a template may use those its
version offers. ``yaql`` and ``resource_facade`` are refused with a reason, and so are the
CFN-style ``Fn::*`` / ``Ref`` functions. templates/loading.py checks shapes and the names
they refer to (``FunctionChecker``); templates/expanding.py resolves ``get_param``,
``get_file``, ``if`` and conditions and renames references; templates/resolving.py evaluates
the rest. templates/resolving.py and templates/diffing.py use ``referenced_resources`` for
implicit dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from edgecloud.templates.model import ParameterDef
from edgecloud.templates.problems import Fail, Path
from edgecloud.templates.resource_types import resource_type
from edgecloud.templates.versions import (
    CFN_FUNCTIONS,
    FIRST_VERSION,
    IF_WITHOUT_ELSE_SINCE,
    at_least,
    has_function,
)

GET_PARAM = "get_param"
GET_RESOURCE = "get_resource"
GET_ATTR = "get_attr"
LIST_JOIN = "list_join"
GET_FILE = "get_file"
IF = "if"
STR_REPLACE = ("str_replace", "str_replace_strict", "str_replace_vstrict")
CONDITION_FUNCTIONS = frozenset({"equals", "not", "and", "or", "contains"})
REFUSED: Mapping[str, str] = {
    "yaql": "yaql expressions are not evaluated (an open query language with no bound on its "
    "cost); use map_merge, repeat, list_concat or str_replace",
    "resource_facade": "resource_facade needs a provider resource's facade, which edgecloud "
    "does not keep",
}
KNOWN = frozenset({*FIRST_VERSION, *CFN_FUNCTIONS})

STACK_NAME = "OS::stack_name"
STACK_ID = "OS::stack_id"
PROJECT_ID = "OS::project_id"
PSEUDO_PARAMETERS = frozenset({STACK_NAME, STACK_ID, PROJECT_ID})


def function_call(value: object) -> tuple[str, object] | None:
    """``(name, argument)`` when ``value`` is a one-key map naming an intrinsic function."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((key, argument),) = value.items()
    if key in KNOWN or str(key).startswith("Fn::"):
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
    """Checks every intrinsic function in a value against the declared names (load time).

    ``resource_types`` maps each resource to its type; a type not in templates/resource_types.py
    (a nested template, a registry alias) accepts any attribute (checked once expanded).
    """

    parameters: Mapping[str, ParameterDef]
    resource_types: Mapping[str, str]
    fail: Fail
    version: str = "2021-04-16"
    conditions: frozenset[str] = frozenset()

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
        if name in CFN_FUNCTIONS or name.startswith("Fn::"):
            self.fail(path, f"the CFN-style function {name!r} is not supported; use its HOT form")
        if name in REFUSED:
            self.fail(path, f"{name} is refused: {REFUSED[name]}")
        if not has_function(self.version, name):
            self.fail(
                path,
                f"{name} needs heat_template_version {FIRST_VERSION[name]} or later "
                f"(this template is {self.version})",
            )
        checks = {
            GET_PARAM: self._get_param,
            GET_RESOURCE: self._get_resource,
            GET_ATTR: self._get_attr,
            LIST_JOIN: self._list_join,
            GET_FILE: self._get_file,
            IF: self._if,
            **dict.fromkeys(STR_REPLACE, self._str_replace),
        }
        check = checks.get(name)
        if check is not None:
            check(argument, path)
        elif name in CONDITION_FUNCTIONS:
            self.check_condition({name: argument}, path[:-1])
        else:
            self.check(argument, path)

    def check_condition(self, value: object, path: Path) -> None:
        """A condition: a boolean, a condition name, or equals/not/and/or/contains of them."""
        if isinstance(value, bool):
            return
        if isinstance(value, str):
            if value not in self.conditions:
                self.fail(path, f"condition {value!r} is not declared in conditions")
            return
        call = function_call(value)
        if call is not None and call[0] == GET_PARAM:
            self._get_param(call[1], (*path, GET_PARAM))  # a boolean parameter
            return
        if call is None or call[0] not in CONDITION_FUNCTIONS:
            self.fail(path, "a condition is true/false, a condition name, or equals/not/and/or")
        name, argument = call
        where = (*path, name)
        if name in ("equals", "contains"):
            if not isinstance(argument, list) or len(argument) != 2:
                self.fail(where, f"{name} takes a list of two values")
            self.check(argument, where)
        elif name == "not":
            self.check_condition(argument, where)
        else:
            if not isinstance(argument, list) or len(argument) < 2:
                self.fail(where, f"{name} takes a list of at least two conditions")
            for index, item in enumerate(argument):
                self.check_condition(item, (*where, index))

    def _if(self, argument: object, path: Path) -> None:
        low = 2 if at_least(self.version, IF_WITHOUT_ELSE_SINCE) else 3
        if not isinstance(argument, list) or not low <= len(argument) <= 3:
            self.fail(path, "if takes [condition, value if true, value if false]")
        self.check_condition(argument[0], (*path, 0))
        for index, item in enumerate(argument[1:], start=1):
            self.check(item, (*path, index))

    def _get_file(self, argument: object, path: Path) -> None:
        if not isinstance(argument, str) or not argument:
            self.fail(path, "get_file takes the name of a file sent with the template")

    def _str_replace(self, argument: object, path: Path) -> None:
        usage = f"{path[-1]} takes a map with template (a string) and params (a map)"
        if not isinstance(argument, dict) or set(argument) != {"template", "params"}:
            self.fail(path, usage)
        self.check(argument["template"], (*path, "template"))
        params = argument["params"]
        if not isinstance(params, dict) and function_call(params) is None:
            self.fail((*path, "params"), usage)
        self.check(params, (*path, "params"))

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

    def _get_resource(self, argument: object, path: Path) -> None:
        if not isinstance(argument, str):
            self.fail(path, "get_resource takes a resource name")
        self._declared(argument, path)

    def _get_attr(self, argument: object, path: Path) -> None:
        usage = "get_attr takes [resource, attribute, optional keys...]"
        if not isinstance(argument, list) or len(argument) < 2:
            self.fail(path, usage)
        resource, attribute, *_keys = argument
        if not isinstance(resource, str):
            self.fail(path, usage)
        for index, item in enumerate(argument[1:], start=1):
            if function_call(item) is not None:
                self.check(item, (*path, index))
            elif isinstance(item, bool) or not isinstance(item, str | int):
                self.fail(path, f"{usage}; keys are strings or numbers")
        type_name = self._declared(resource, path)
        known = resource_type(type_name)
        if (
            known is not None
            and not known.open_attributes
            and isinstance(attribute, str)
            and attribute not in known.attributes
        ):
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
        for key in argument[1:]:
            if function_call(key) is not None:
                self.check(key, path)
            elif isinstance(key, bool) or not isinstance(key, str | int):
                self.fail(path, f"{usage}; keys are strings or numbers")
        return argument[0], argument[1:]

    def _declared(self, resource: str, path: Path) -> str:
        type_name = self.resource_types.get(resource)
        if type_name is None:
            self.fail(path, f"resource {resource!r} is not declared")
        return type_name
