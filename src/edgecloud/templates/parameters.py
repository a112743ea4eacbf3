"""Parameters: reading their definitions, converting values to their types, checking constraints.

templates/loading.py calls ``read_parameter`` for each entry of ``parameters:`` (a default
must convert and pass the constraints); templates/resolving.py calls ``convert`` and
``violation`` for the values a stack is created or updated with. Conversions follow Heat:
numbers from strings, comma_delimited_list from a comma-separated string (items stripped),
json from a map, a list or a JSON string of one, boolean from true/false/yes/no/on/off/1/0.
``custom_constraint`` is kept for a later step with access to the store; it is not checked.
``allowed_pattern`` runs through templates/budget.py (the ``regex`` package with a timeout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import replace

from edgecloud.templates.budget import PatternError, compile_pattern, match_pattern
from edgecloud.templates.model import PARAMETER_TYPES, Constraint, ParameterDef
from edgecloud.templates.problems import Fail, Path

DEFINITION_KEYS = frozenset(
    {"type", "label", "description", "default", "hidden", "constraints", "immutable", "tags"}
)
CONSTRAINT_KINDS: Mapping[str, tuple[str, ...]] = {
    "length": ("string", "comma_delimited_list", "json"),
    "range": ("number",),
    "modulo": ("number",),
    "allowed_values": ("string", "number", "comma_delimited_list", "boolean"),
    "allowed_pattern": ("string",),
    "custom_constraint": PARAMETER_TYPES,
}
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


# --- converting values -----------------------------------------------------------------


def convert(type_name: str, value: object) -> object:
    """``value`` as a ``type_name`` parameter value; ValueError saying why it cannot be."""
    return _CONVERTERS[type_name](value)


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError("is not a string")


def _to_number(value: object) -> int | float:
    if isinstance(value, bool):
        raise ValueError("is not a number")
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str):
        number = _parse_number(value)
    else:
        raise ValueError("is not a number")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("is not a finite number")
    return number


def _parse_number(text: str) -> int | float:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("is not a number") from None


def _to_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")] if value.strip() else []
    if isinstance(value, list | tuple):
        return [_to_string(item) for item in value]
    raise ValueError("is not a list or a comma-separated string")


def _to_json(value: object) -> dict[str, object] | list[object]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("is not valid JSON") from None
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError("is not a JSON map or list")


def _to_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("is not a boolean (true/false, yes/no, on/off, 1/0)")


_CONVERTERS: Mapping[str, Callable[[object], object]] = {
    "string": _to_string,
    "number": _to_number,
    "comma_delimited_list": _to_list,
    "json": _to_json,
    "boolean": _to_boolean,
}


# --- checking constraints --------------------------------------------------------------


def violation(definition: ParameterDef, value: object) -> str | None:
    """Why a converted value breaks one of the parameter's constraints, or None."""
    for constraint in definition.constraints:
        problem = _CHECKS[constraint.kind](constraint.value, value)
        if problem is not None:
            shown = "the value" if definition.hidden else repr(value)
            if constraint.description:
                return f"{shown} is not allowed: {constraint.description}"
            return f"{shown} {problem}"
    return None


def _bounds(limits: object) -> tuple[float | None, float | None]:
    assert isinstance(limits, Mapping)
    return limits.get("min"), limits.get("max")


def _check_length(limits: object, value: object) -> str | None:
    assert isinstance(value, str | list | dict)
    return _outside(len(value), limits, "must have a length of")


def _check_range(limits: object, value: object) -> str | None:
    assert isinstance(value, int | float)
    return _outside(value, limits, "must be")


def _outside(amount: float, limits: object, what: str) -> str | None:
    low, high = _bounds(limits)
    if low is not None and amount < low:
        return f"{what} at least {low}"
    if high is not None and amount > high:
        return f"{what} at most {high}"
    return None


def _check_modulo(spec: object, value: object) -> str | None:
    assert isinstance(spec, Mapping) and isinstance(value, int | float)
    step, offset = spec["step"], spec["offset"]
    if value % step != offset:
        return f"must be {offset} modulo {step}"
    return None


def _check_allowed(allowed: object, value: object) -> str | None:
    assert isinstance(allowed, tuple)
    if isinstance(value, list):
        wrong = [item for item in value if item not in allowed]
        return f"has {wrong[0]!r}, which is not one of {list(allowed)}" if wrong else None
    return None if value in allowed else f"must be one of {list(allowed)}"


def _check_pattern(pattern: object, value: object) -> str | None:
    assert isinstance(pattern, str) and isinstance(value, str)
    if not match_pattern(pattern, value):
        return f"must match the pattern {pattern!r}"
    return None


def _not_checked(spec: object, value: object) -> str | None:
    return None


_CHECKS: Mapping[str, Callable[[object, object], str | None]] = {
    "length": _check_length,
    "range": _check_range,
    "modulo": _check_modulo,
    "allowed_values": _check_allowed,
    "allowed_pattern": _check_pattern,
    "custom_constraint": _not_checked,
}


# --- reading definitions ---------------------------------------------------------------


def read_parameter(name: str, raw: object, path: Path, fail: Fail) -> ParameterDef:
    """The ParameterDef declared at ``path``; TemplateError (through ``fail``) if malformed."""
    if not isinstance(raw, dict):
        fail(path, "a parameter is a mapping with at least a type")
    _known_keys(raw, DEFINITION_KEYS, path, fail)
    type_name = raw.get("type")
    if type_name not in PARAMETER_TYPES:
        fail((*path, "type"), f"type must be one of {', '.join(PARAMETER_TYPES)}")
    constraints = _read_constraints(raw.get("constraints"), type_name, (*path, "constraints"), fail)
    definition = ParameterDef(
        name=name,
        type=type_name,
        description=_text(raw, "description", path, fail),
        constraints=constraints,
        hidden=_flag(raw, "hidden", path, fail),
        label=_text(raw, "label", path, fail),
        immutable=_flag(raw, "immutable", path, fail),
    )
    default = _read_default(definition, raw.get("default"), (*path, "default"), fail)
    return replace(definition, default=default)


def _read_default(definition: ParameterDef, raw: object, path: Path, fail: Fail) -> object:
    if raw is None:
        return None
    try:
        value = convert(definition.type, raw)
    except ValueError as exc:
        fail(path, f"the default {exc}")
    problem = violation(definition, value)
    if problem is not None:
        fail(path, f"the default breaks a constraint: {problem}")
    return value


def _read_constraints(
    raw: object, type_name: str, path: Path, fail: Fail
) -> tuple[Constraint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        fail(path, "constraints is a list")
    return tuple(
        _read_constraint(item, type_name, (*path, index), fail) for index, item in enumerate(raw)
    )


def _read_constraint(raw: object, type_name: str, path: Path, fail: Fail) -> Constraint:
    if not isinstance(raw, dict):
        fail(path, "a constraint is a mapping such as {range: {min: 1}}")
    kinds = [key for key in raw if key != "description"]
    if len(kinds) != 1 or kinds[0] not in CONSTRAINT_KINDS:
        fail(path, f"a constraint has exactly one of: {', '.join(CONSTRAINT_KINDS)}")
    kind = kinds[0]
    if type_name not in CONSTRAINT_KINDS[kind]:
        fail((*path, kind), f"a {kind} constraint does not apply to a {type_name} parameter")
    value = _CONSTRAINT_READERS[kind](raw[kind], (*path, kind), fail)
    if kind == "allowed_values":
        value = _convert_allowed(value, type_name, (*path, kind), fail)
    return Constraint(kind, value, _text(raw, "description", path, fail) or None)


def _read_bounds(raw: object, path: Path, fail: Fail) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw or set(raw) - {"min", "max"}:
        fail(path, "give min and/or max")
    bounds = {key: _number(raw[key], (*path, key), fail) for key in ("min", "max") if key in raw}
    if len(bounds) == 2 and bounds["min"] > bounds["max"]:
        fail(path, "min is greater than max")
    return bounds


def _read_modulo(raw: object, path: Path, fail: Fail) -> dict[str, float]:
    if not isinstance(raw, dict) or set(raw) != {"step", "offset"}:
        fail(path, "give step and offset")
    spec = {key: _number(raw[key], (*path, key), fail) for key in ("step", "offset")}
    if spec["step"] == 0:
        fail((*path, "step"), "step must not be 0")
    return spec


def _read_allowed(raw: object, path: Path, fail: Fail) -> tuple[object, ...]:
    if not isinstance(raw, list) or not raw:
        fail(path, "allowed_values is a non-empty list")
    return tuple(raw)


def _convert_allowed(values: object, type_name: str, path: Path, fail: Fail) -> tuple[object, ...]:
    item_type = "string" if type_name == "comma_delimited_list" else type_name
    assert isinstance(values, tuple)
    try:
        return tuple(convert(item_type, value) for value in values)
    except ValueError as exc:
        fail(path, f"an allowed value {exc}")


def _read_pattern(raw: object, path: Path, fail: Fail) -> str:
    if not isinstance(raw, str):
        fail(path, "allowed_pattern is a regular expression string")
    try:
        compile_pattern(raw)
    except PatternError as exc:
        fail(path, f"invalid regular expression: {exc}")
    return raw


def _read_custom(raw: object, path: Path, fail: Fail) -> str:
    if not isinstance(raw, str):
        fail(path, "custom_constraint is a name such as nova.flavor")
    return raw


_CONSTRAINT_READERS: Mapping[str, Callable[[object, Path, Fail], object]] = {
    "length": _read_bounds,
    "range": _read_bounds,
    "modulo": _read_modulo,
    "allowed_values": _read_allowed,
    "allowed_pattern": _read_pattern,
    "custom_constraint": _read_custom,
}


def _number(raw: object, path: Path, fail: Fail) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        fail(path, "must be a number")
    return raw


def _text(raw: Mapping[str, object], key: str, path: Path, fail: Fail) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        fail((*path, key), f"{key} must be a string")
    return value


def _flag(raw: Mapping[str, object], key: str, path: Path, fail: Fail) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        fail((*path, key), f"{key} must be true or false")
    return value


def _known_keys(raw: Mapping[str, object], allowed: frozenset[str], path: Path, fail: Fail) -> None:
    for key in raw:
        if key not in allowed:
            fail((*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
