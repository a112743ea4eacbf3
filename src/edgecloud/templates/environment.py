"""Heat environment files: parameters, parameter_defaults and the resource_registry.

templates/expanding.py merges the environment files a stack names (in order, later files
win, as ``heat stack-create -e a.env -e b.env``) and uses the result: ``parameters`` are
values for the top template (the caller's own values win over them), ``parameter_defaults``
replace the defaults of parameters of that name in the top and every nested template, and
``resource_registry`` maps a resource type to another type (``OS::Heat::None`` switches a
resource off) or to a template file sent in the stack's ``files`` (a nested stack). File names
in an environment are relative to the environment file (``file_key``). Parsing goes through
templates/parsing.py, so an environment has the same size, alias and time limits as a template.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgecloud.templates.parsing import parse_yaml

KEYS = (
    "parameters", "parameter_defaults", "resource_registry", "encrypted_param_names",
    "event_sinks", "parameter_merge_strategies", "description",
)  # fmt: skip
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".template", ".json", ".hot")


@dataclass(frozen=True)
class Environment:
    """A merged environment; ``registry`` values are types or file keys."""

    parameters: Mapping[str, object] = field(default_factory=dict)
    parameter_defaults: Mapping[str, object] = field(default_factory=dict)
    registry: Mapping[str, str] = field(default_factory=dict)


def file_key(base: str, name: str) -> str:
    """The ``files`` key of ``name`` as referenced from the document whose key is ``base``:
    relative names are relative to that document's folder (as Heat resolves template URLs)."""
    if name.startswith("/") or "://" in name:
        return name
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), name))


def load_environment(text: str, key: str) -> Environment:
    """One environment file, checked; TemplateError naming its line and path otherwise."""
    data, lines = parse_yaml(text, key)
    if data is None:
        return Environment()
    if not isinstance(data, dict):
        lines.fail((), "an environment is a mapping (parameters, parameter_defaults, ...)")
    for name in data:
        if name not in KEYS:
            lines.fail((name,), f"unknown environment section (allowed: {', '.join(KEYS)})")
    sections = {}
    for name in ("parameters", "parameter_defaults", "resource_registry"):
        value = data.get(name) or {}
        if not isinstance(value, dict):
            lines.fail((name,), f"{name} must be a mapping")
        sections[name] = value
    registry: dict[str, str] = {}
    for type_name, target in sections["resource_registry"].items():
        path = ("resource_registry", type_name)
        if type_name == "resources" or isinstance(target, dict):
            lines.fail(path, "per-resource registry entries are not supported; map types only")
        if not isinstance(target, str) or not target:
            lines.fail(path, "maps a resource type to a type or a template file name")
        if "*" in type_name:
            lines.fail(path, "wildcard registry entries are not supported; name each type")
        is_file = target.endswith(TEMPLATE_SUFFIXES) or "/" in target
        registry[type_name] = file_key(key, target) if is_file else target
    return Environment(sections["parameters"], sections["parameter_defaults"], registry)


def merge(environments: Sequence[Environment]) -> Environment:
    """Environments applied in order: later files win, key by key."""
    parameters: dict[str, object] = {}
    defaults: dict[str, object] = {}
    registry: dict[str, str] = {}
    for environment in environments:
        parameters.update(environment.parameters)
        defaults.update(environment.parameter_defaults)
        registry.update(environment.registry)
    return Environment(parameters, defaults, registry)
