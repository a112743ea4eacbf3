"""Load a HOT template: YAML text to a fully checked ``Template``, or a TemplateError.

The entry point of the template engine. templates/parsing.py turns text into data with the
line of every path; this module checks the sections (templates/parameters.py for parameter
definitions, templates/properties.py for property values against
templates/resource_types.py, templates/functions.py for intrinsic functions,
templates/graphs.py for dependency cycles) and builds templates/model.py objects. Nothing
is created anywhere: it is pure validation, so a stack is never half-made from a bad template.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from edgecloud.templates.functions import FunctionChecker, referenced_resources
from edgecloud.templates.graphs import find_cycle
from edgecloud.templates.model import OutputDef, ParameterDef, ResourceDef, Template
from edgecloud.templates.parameters import read_parameter
from edgecloud.templates.parsing import Lines, parse_yaml
from edgecloud.templates.problems import Path
from edgecloud.templates.properties import check_cross_references, check_literal_properties
from edgecloud.templates.resource_types import RESOURCE_TYPES, refusal, resource_type
from edgecloud.templates.versions import CONDITIONS_SINCE, VERSIONS, at_least

HOT_VERSIONS = VERSIONS
TOP_LEVEL_KEYS = (
    "heat_template_version", "description", "parameter_groups", "parameters", "resources",
    "outputs", "conditions",
)  # fmt: skip
RESOURCE_KEYS = (
    "type", "properties", "depends_on", "description", "condition", "metadata",
    "deletion_policy", "update_policy",
)  # fmt: skip
OUTPUT_KEYS = ("value", "description", "condition")
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".template", ".json", ".hot")


def is_template_name(type_name: str) -> bool:
    """Whether a resource type names a template file (a nested stack), as Heat decides it."""
    return type_name.endswith(TEMPLATE_SUFFIXES) or "://" in type_name


GROUP_KEYS = ("label", "description", "parameters")


def load_template(
    text: str, source: str = "template", *, template_types: Container[str] = ()
) -> Template:
    """The checked template in ``text``; TemplateError naming line and path otherwise.

    ``source`` names the template in messages (a file name, ``stack vcpe``...).
    ``template_types``: resource type names an environment maps to something else
    (templates/environment.py); they, and types that name a template file, are checked when
    templates/expanding.py expands them.
    """
    data, lines = parse_yaml(text, source)
    top = _mapping(data, (), lines, "a template is a mapping of sections")
    _known_keys(top, TOP_LEVEL_KEYS, (), lines, "top-level key")
    version = _version(top, lines)
    parameters = _parameters(top.get("parameters"), lines)
    _check_groups(top.get("parameter_groups"), parameters, lines)
    conditions = _conditions(top.get("conditions"), version, lines)
    resources = _resources(top.get("resources"), lines, template_types)
    checker = FunctionChecker(
        parameters,
        {n: r.type for n, r in resources.items()},
        lines.fail,
        version,
        frozenset(conditions),
    )
    for name, condition in conditions.items():
        checker.check_condition(condition, ("conditions", name))
    _check_properties(resources, checker, lines)
    outputs = _outputs(top.get("outputs"), checker, lines)
    _check_cycles(resources, lines)
    return Template(
        version=version,
        description=_description(top, (), lines),
        parameters=parameters,
        resources=resources,
        outputs=outputs,
        source=source,
        conditions=conditions,
    )


# --- sections --------------------------------------------------------------------------


def _version(top: Mapping[str, object], lines: Lines) -> str:
    path: Path = ("heat_template_version",)
    version = top.get("heat_template_version")
    if version is None:
        lines.fail(path, "missing: say which HOT version this is (e.g. 2018-08-31)")
    if not isinstance(version, str) or version not in HOT_VERSIONS:
        known = ", ".join(sorted(HOT_VERSIONS))
        lines.fail(path, f"unknown HOT version {version!r} (supported: {known})")
    return version


def _conditions(raw: object, version: str, lines: Lines) -> dict[str, object]:
    section = _section(raw, ("conditions",), lines)
    if section and not at_least(version, CONDITIONS_SINCE):
        lines.fail(("conditions",), f"conditions need heat_template_version {CONDITIONS_SINCE}")
    return section


def _parameters(raw: object, lines: Lines) -> dict[str, ParameterDef]:
    section = _section(raw, ("parameters",), lines)
    return {
        name: read_parameter(name, value, ("parameters", name), lines.fail)
        for name, value in section.items()
    }


def _check_groups(raw: object, parameters: Mapping[str, ParameterDef], lines: Lines) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        lines.fail(("parameter_groups",), "parameter_groups is a list of groups")
    for index, group in enumerate(raw):
        path: Path = ("parameter_groups", index)
        group = _mapping(group, path, lines, "a group is a mapping with parameters")
        _known_keys(group, GROUP_KEYS, path, lines, "key")
        names = group.get("parameters", [])
        if not isinstance(names, list):
            lines.fail((*path, "parameters"), "a list of parameter names")
        for position, name in enumerate(names):
            if not isinstance(name, str) or name not in parameters:
                lines.fail((*path, "parameters", position), f"parameter {name!r} is not declared")


def _resources(raw: object, lines: Lines, template_types: Container[str]) -> dict[str, ResourceDef]:
    section = _section(raw, ("resources",), lines)
    return {name: _resource(name, value, lines, template_types) for name, value in section.items()}


def _resource(name: str, raw: object, lines: Lines, template_types: Container[str]) -> ResourceDef:
    path: Path = ("resources", name)
    body = _mapping(raw, path, lines, "a resource is a mapping with a type")
    _known_keys(body, RESOURCE_KEYS, path, lines, "resource key")
    type_name = check_type(body.get("type"), (*path, "type"), lines, template_types)
    properties = _section(body.get("properties"), (*path, "properties"), lines)
    rtype = resource_type(type_name)
    if rtype is not None:
        properties = _renamed(properties, rtype.aliases, (*path, "properties"), lines)
    return ResourceDef(
        name=name,
        type=type_name,
        properties=properties,
        depends_on=_depends_on(body.get("depends_on"), (*path, "depends_on"), lines),
        line=lines.line(path),
        source=lines.source,
        condition=body.get("condition"),
    )


def check_type(type_name: object, path: Path, lines: Lines, template_types: Container[str]) -> str:
    """A resource type that is supported, mapped by the environment or a template file name;
    otherwise TemplateError saying why (refused types give their reason)."""
    if not isinstance(type_name, str):
        lines.fail(path, "missing: every resource needs a type")
    if type_name in template_types or is_template_name(type_name):
        return type_name
    why = refusal(type_name)
    if why is not None:
        lines.fail(path, f"{type_name} is refused on an edge site: {why}")
    if resource_type(type_name) is None:
        supported = ", ".join(RESOURCE_TYPES)
        lines.fail(path, f"unknown resource type {type_name!r}; supported types: {supported}")
    return type_name


def _renamed(
    properties: dict[str, object], aliases: Mapping[str, str], path: Path, lines: Lines
) -> dict[str, object]:
    """Heat's deprecated property names renamed to the current ones (network_id -> network)."""
    renamed: dict[str, object] = {}
    for key, value in properties.items():
        new = aliases.get(key, key)
        if new in renamed:
            lines.fail((*path, key), f"{key} and {new} are the same property: give one")
        renamed[new] = value
    return renamed


def _depends_on(raw: object, path: Path, lines: Lines) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        lines.fail(path, "depends_on is a resource name or a list of them")
    return tuple(dict.fromkeys(names))


def _outputs(raw: object, checker: FunctionChecker, lines: Lines) -> dict[str, OutputDef]:
    section = _section(raw, ("outputs",), lines)
    outputs: dict[str, OutputDef] = {}
    for name, value in section.items():
        path: Path = ("outputs", name)
        body = _mapping(value, path, lines, "an output is a mapping with a value")
        _known_keys(body, OUTPUT_KEYS, path, lines, "output key")
        if "value" not in body:
            lines.fail(path, "an output needs a value")
        checker.check(body["value"], (*path, "value"))
        description = _description(body, path, lines)
        condition = body.get("condition")
        if condition is not None:
            checker.check_condition(condition, (*path, "condition"))
        outputs[name] = OutputDef(name, body["value"], description, lines.line(path), condition)
    return outputs


# --- cross-resource checks -------------------------------------------------------------


def _check_properties(
    resources: Mapping[str, ResourceDef], checker: FunctionChecker, lines: Lines
) -> None:
    types = {name: resource.type for name, resource in resources.items()}
    others = {name: resource.properties for name, resource in resources.items()}
    for name, resource in resources.items():
        path: Path = ("resources", name, "properties")
        checker.check(dict(resource.properties), path)
        if resource.condition is not None:
            checker.check_condition(resource.condition, ("resources", name, "condition"))
        rtype = RESOURCE_TYPES.get(resource.type)
        if rtype is not None and not _has_conditional_values(resource.properties):
            check_literal_properties(rtype, resource.properties, path, lines.fail, types)
            check_cross_references(rtype, resource.properties, path, lines.fail, others)
        for position, target in enumerate(resource.depends_on):
            if target not in resources:
                where = ("resources", name, "depends_on", position)
                lines.fail(where, f"resource {target!r} is not declared")


def _check_cycles(resources: Mapping[str, ResourceDef], lines: Lines) -> None:
    graph = {
        name: [*resource.depends_on, *referenced_resources(dict(resource.properties))]
        for name, resource in resources.items()
    }
    cycle = find_cycle(graph)
    if cycle is not None:
        lines.fail(("resources", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}")


# --- small helpers ---------------------------------------------------------------------


def _has_conditional_values(value: object) -> bool:
    """Whether ``if`` (which may remove a property) occurs; such properties are checked once
    templates/expanding.py has chosen the branches."""
    if isinstance(value, dict):
        return "if" in value or any(_has_conditional_values(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_conditional_values(v) for v in value)
    return False


def _mapping(raw: object, path: Path, lines: Lines, what: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        lines.fail(path, what)
    return raw


def _section(raw: object, path: Path, lines: Lines) -> dict[str, object]:
    """A mapping section; absent or empty (``parameters:``) is an empty mapping."""
    return {} if raw is None else _mapping(raw, path, lines, "must be a mapping")


def _known_keys(
    raw: Mapping[str, object], allowed: tuple[str, ...], path: Path, lines: Lines, noun: str
) -> None:
    for key in raw:
        if key not in allowed:
            lines.fail((*path, key), f"unknown {noun} (allowed: {', '.join(allowed)})")


def _description(raw: Mapping[str, object], path: Path, lines: Lines) -> str:
    value = raw.get("description")
    if value is not None and not isinstance(value, str):
        lines.fail((*path, "description"), "description must be a string")
    return value or ""
