"""The parsed form of a HOT template: frozen dataclasses, no behaviour.

templates/loading.py builds a ``Template`` from YAML text after checking all of it;
templates/resolving.py evaluates its parameters, properties and outputs; templates/diffing.py
compares two of them. Property and output values are kept raw, intrinsic functions included
(``{"get_param": "flavor"}``); the mappings are not to be mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PARAMETER_TYPES = ("string", "number", "comma_delimited_list", "json", "boolean")


@dataclass(frozen=True)
class Constraint:
    """One parameter constraint.

    ``kind`` is ``length`` or ``range`` (value: ``{"min": .., "max": ..}``, either optional),
    ``modulo`` (``{"step": .., "offset": ..}``), ``allowed_values`` (a tuple),
    ``allowed_pattern`` (a regular expression the whole value must match) or
    ``custom_constraint`` (a name such as ``nova.flavor``; kept, not checked here).
    """

    kind: str
    value: object
    description: str | None = None


@dataclass(frozen=True)
class ParameterDef:
    """A declared parameter; ``default`` is already converted to ``type`` (None: no default)."""

    name: str
    type: str
    default: object = None
    description: str = ""
    constraints: tuple[Constraint, ...] = ()
    hidden: bool = False
    label: str = ""
    immutable: bool = False


@dataclass(frozen=True)
class ResourceDef:
    """A declared resource: its type, raw properties and explicit dependencies."""

    name: str
    type: str
    properties: Mapping[str, object] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    line: int | None = None
    source: str = "template"
    condition: object = None  # a condition name or expression; None: always


@dataclass(frozen=True)
class OutputDef:
    """A declared output; ``value`` is raw (may hold intrinsic functions)."""

    name: str
    value: object
    description: str = ""
    line: int | None = None
    condition: object = None


@dataclass(frozen=True)
class Template:
    """A whole validated template; dict order is the order of declaration."""

    version: str
    description: str = ""
    parameters: Mapping[str, ParameterDef] = field(default_factory=dict)
    resources: Mapping[str, ResourceDef] = field(default_factory=dict)
    outputs: Mapping[str, OutputDef] = field(default_factory=dict)
    source: str = "template"
    conditions: Mapping[str, object] = field(default_factory=dict)
