"""Property values against their schemas from templates/resource_types.py.

Two uses of one walk. At load time (templates/loading.py) ``check_literal_properties``
rejects unknown and missing properties, checks every literal value, skips values that are
intrinsic functions (their values are not known yet) and checks that a ``get_resource``
names a resource of an allowed type; ``check_cross_references`` then checks indexes into
another resource's list (a Chain::Service NIC index against its server's networks). At
resolve time (templates/resolving.py) ``conform_properties`` checks the evaluated values and
coerces them (numbers to strings, numeric strings to numbers) to their declared kinds.
Values that are not plain data (whatever a ``refs`` callback returned) pass unchecked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgecloud.templates.budget import match_pattern
from edgecloud.templates.functions import GET_RESOURCE, function_call
from edgecloud.templates.problems import Fail, Path
from edgecloud.templates.resource_types import ResourceType, Schema

_PLAIN = (str, int, float, bool, list, dict, type(None))
_KIND_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "list": "a list",
    "map": "a map",
}


def check_literal_properties(
    rtype: ResourceType,
    properties: Mapping[str, object],
    path: Path,
    fail: Fail,
    resource_types: Mapping[str, str],
) -> None:
    """Load time: property names, required ones, literal values, get_resource target types."""
    if rtype.open_properties:
        return
    walk = _Walk(fail, loading=True, resource_types=resource_types)
    walk.fields(rtype.properties, properties, path, rtype.name)
    _check_distinct(rtype, properties, path, fail)


def conform_properties(
    rtype: ResourceType, properties: Mapping[str, object], path: Path, fail: Fail
) -> dict[str, object]:
    """Resolve time: evaluated values checked and coerced; unset (null) properties dropped."""
    if rtype.open_properties:
        return dict(properties)
    walk = _Walk(fail, loading=False, resource_types={})
    result = walk.fields(rtype.properties, properties, path, rtype.name)
    _check_distinct(rtype, result, path, fail)
    return result


def check_cross_references(
    rtype: ResourceType,
    properties: Mapping[str, object],
    path: Path,
    fail: Fail,
    others: Mapping[str, Mapping[str, object]],
) -> None:
    """Load time: ``index_into`` properties index a literal list of the referenced resource."""
    for name, schema in rtype.properties.items():
        index = properties.get(name)
        if schema.index_into is None or not isinstance(index, int):
            continue
        sibling, list_property = schema.index_into
        call = function_call(properties.get(sibling))
        if call is None or call[0] != GET_RESOURCE or not isinstance(call[1], str):
            continue
        items = others.get(call[1], {}).get(list_property)
        if isinstance(items, list) and index >= len(items):
            fail(
                (*path, name),
                f"{index} is out of range: {call[1]} has {len(items)} {list_property} "
                f"(indexes 0..{len(items) - 1})",
            )


def _check_distinct(
    rtype: ResourceType, properties: Mapping[str, object], path: Path, fail: Fail
) -> None:
    for first, second in rtype.distinct:
        value = properties.get(first)
        if value is not None and function_call(value) is None and value == properties.get(second):
            fail((*path, second), f"{first} and {second} must differ")


@dataclass(frozen=True)
class _Walk:
    fail: Fail
    loading: bool
    resource_types: Mapping[str, str]

    def fields(
        self,
        schemas: Mapping[str, Schema],
        values: Mapping[str, object],
        path: Path,
        owner: str | None = None,
    ) -> dict[str, object]:
        """Check a resource's properties (``owner``: its type) or a map property's keys."""
        noun = f"property for {owner}" if owner else "key"
        for key in values:
            if key not in schemas:
                self.fail((*path, key), f"unknown {noun} (known: {', '.join(schemas)})")
        result: dict[str, object] = {}
        for key, schema in schemas.items():
            value = values.get(key)
            if value is not None:
                result[key] = self.value(schema, value, (*path, key))
            elif schema.required:
                self.fail((*path, key), f"missing required {noun}")
        return result

    def value(self, schema: Schema, value: object, path: Path) -> object:
        if not isinstance(value, _PLAIN):
            return value
        call = function_call(value) if self.loading else None
        if self.loading and schema.reference_only:
            self._reference_only(schema, call, path)
        if call is not None:
            self._reference_type(schema, call, path)
            return value
        return self._checked(schema, self._kind(schema, value, path), path)

    def _reference_only(self, schema: Schema, call: tuple[str, object] | None, path: Path) -> None:
        if call is None or call[0] != GET_RESOURCE:
            kinds = " or ".join(schema.references)
            self.fail(path, f"must be {{get_resource: <a {kinds} of this template>}}")

    def _reference_type(self, schema: Schema, call: tuple[str, object], path: Path) -> None:
        name, target = call
        if name != GET_RESOURCE or not schema.references or not isinstance(target, str):
            return
        target_type = self.resource_types.get(target)
        if target_type is not None and target_type not in schema.references:
            kinds = " or ".join(schema.references)
            self.fail(path, f"{target!r} is a {target_type}, not a {kinds}")

    def _kind(self, schema: Schema, value: object, path: Path) -> object:
        try:
            return _COERCE[schema.kind](value)
        except ValueError:
            self.fail(path, f"must be {_KIND_NAMES[schema.kind]}, not {_describe(value)}")

    def _checked(self, schema: Schema, value: object, path: Path) -> object:
        if isinstance(value, list) and schema.items is not None:
            items = schema.items
            return [self.value(items, item, (*path, i)) for i, item in enumerate(value)]
        if isinstance(value, dict) and schema.fields is not None:
            return self._map(schema, value, path)
        self._limits(schema, value, path)
        return value

    def _map(self, schema: Schema, value: Mapping[str, object], path: Path) -> dict[str, object]:
        assert schema.fields is not None
        present = [key for key in schema.one_of if value.get(key) is not None]
        if schema.one_of and len(present) != 1:
            self.fail(path, f"give exactly one of: {', '.join(schema.one_of)}")
        return self.fields(schema.fields, value, path)

    def _limits(self, schema: Schema, value: object, path: Path) -> None:
        if schema.allowed and value not in schema.allowed:
            self.fail(path, f"{value!r} is not one of: {', '.join(map(str, schema.allowed))}")
        if isinstance(value, int | float) and not _within(schema, value):
            self.fail(path, f"{value} is outside {schema.minimum}..{schema.maximum}")
        if schema.pattern and isinstance(value, str) and not match_pattern(schema.pattern, value):
            self.fail(path, f"{value!r} does not match {schema.pattern!r}")
        if schema.format is not None and isinstance(value, str):
            problem = _FORMATS[schema.format](value)
            if problem is not None:
                self.fail(path, f"{value!r} {problem}")


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not an IPv4 or IPv6 address"
    return None


def _cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "is not a CIDR such as 192.0.2.0/24 or 2001:db8::/64"
    return None


_FORMATS: Mapping[str, Callable[[str], str | None]] = {"ip": _ip, "cidr": _cidr}


def _within(schema: Schema, value: float) -> bool:
    low_ok = schema.minimum is None or value >= schema.minimum
    return low_ok and (schema.maximum is None or value <= schema.maximum)


def _describe(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "a map"})
    return names.get(type(value), type(value).__name__)


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError


def _integer(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError


def _number(value: object) -> int | float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return float(value.strip()) if "." in value or "e" in value.lower() else int(value)
    raise ValueError


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError


def _of_type(kind: type) -> Callable[[object], object]:
    def coerce(value: object) -> object:
        if not isinstance(value, kind):
            raise ValueError
        return value

    return coerce


_COERCE: Mapping[str, Callable[[object], object]] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "list": _of_type(list),
    "map": _of_type(dict),
}
