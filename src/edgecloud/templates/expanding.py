"""Expand a stack request into one flat template: environments, conditions, nested
templates, resource groups and get_file resolved, every name in one namespace.

The step between templates/loading.py (one document, checked) and the rest of the engine.
``prepare`` merges the environment files (templates/environment.py), loads the top template,
resolves its parameters (templates/resolving.py), then walks it:

- a resource whose ``condition`` is false is left out; ``if`` picks its branch (conditions
  use parameters only, so everything is decided before anything is created);
- ``get_param`` and ``get_file`` become their values;
- a resource whose type is a template file, or a type the resource_registry maps to one, is
  a nested stack: its resources join the flat template as ``<resource>.<name>``, its
  parameters are the resource's properties (expressions in the parent's terms) and
  ``get_attr`` of its outputs becomes the output's expression;
- an OS::Heat::ResourceGroup becomes ``count`` members ``<group>.0``, ``<group>.1``... with
  ``%index%`` (its ``index_var``) replaced; ``get_attr`` of the group gives lists (``refs``,
  ``resource.N``, ``resource.N.attr``, or any member attribute as a list);
- get_resource / get_attr of plain resources are renamed into the flat namespace and left for
  templates/resolving.py to evaluate when the resources exist.

The flat ``Template`` has only types of templates/resource_types.py; its resources are checked
like a loaded template's (property names, literal values including names, references,
cycles), so a bad member of a group or a nested template is refused before anything is
created. Limits: nesting depth, resources in all, group size (resource_types.MAX_GROUP_COUNT);
every step ticks templates/budget.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgecloud.templates.budget import tick
from edgecloud.templates.environment import Environment, file_key, load_environment, merge
from edgecloud.templates.functions import (
    CONDITION_FUNCTIONS,
    GET_ATTR,
    GET_FILE,
    GET_PARAM,
    GET_RESOURCE,
    IF,
    PROJECT_ID,
    STACK_ID,
    STACK_NAME,
    function_call,
    referenced_resources,
)
from edgecloud.templates.graphs import find_cycle
from edgecloud.templates.loading import is_template_name, load_template
from edgecloud.templates.model import OutputDef, ResourceDef, Template
from edgecloud.templates.parameters import convert, violation
from edgecloud.templates.problems import Fail, Path, failing_at_line, template_error
from edgecloud.templates.properties import (
    check_cross_references,
    check_literal_properties,
    conform_properties,
)
from edgecloud.templates.resolving import (
    _select,
    has_function,
    resolve_parameters,
    substitute_parameters,
)
from edgecloud.templates.resource_types import (
    RESOURCE_GROUP,
    RESOURCE_TYPES,
    refusal,
    resource_type,
)

MAX_DEPTH = 5  # nested templates, as Heat's max_nested_stack_depth
MAX_RESOURCES = 500  # resources of one stack once expanded
TOP_KEY = ""  # the files key folder of the top template: names are relative to it
_REMOVED = object()  # an ``if`` without a false value whose condition is false


@dataclass(frozen=True)
class Prepared:
    """A stack request ready to create: the flat template and its parameter values."""

    template: Template
    values: Mapping[str, object]
    top: Template


def prepare(
    text: str,
    params: Mapping[str, object],
    *,
    stack_name: str,
    files: Mapping[str, str] | None = None,
    environment_files: tuple[str, ...] | list[str] = (),
    source: str | None = None,
) -> Prepared:
    """Check and expand a stack request; TemplateError naming file, line and path if any
    part of it is wrong. Nothing is created: this is pure."""
    files = files or {}
    source = source or f"stack {stack_name}"
    environment = merge([_environment(files, name) for name in environment_files])
    top = load_template(text, source, template_types=environment.registry.keys())
    given = {**environment.parameters, **params}
    values = resolve_parameters(
        top, given, stack_name=stack_name, defaults=environment.parameter_defaults
    )
    expander = _Expander(stack_name, files, environment)
    scope = _Scope(expander, top, values, prefix="", key=TOP_KEY, depth=0, depends=())
    scope.expand_all()
    outputs = scope.outputs()
    flat = Template(
        version=top.version,
        description=top.description,
        parameters=top.parameters,
        resources=expander.flat,
        outputs={
            name: OutputDef(name, value, top.outputs[name].description, top.outputs[name].line)
            for name, value in outputs.items()
        },
        source=source,
    )
    _check_flat(flat)
    return Prepared(flat, values, top)


def _environment(files: Mapping[str, str], name: str) -> Environment:
    text = files.get(name)
    if text is None:
        raise template_error(
            None, None, ("environment_files",), f"environment file {name!r} was not sent in files"
        )
    return load_environment(text, name)


@dataclass
class _Expander:
    """What all scopes share: the stack name, the files, the environment, the flat result."""

    stack_name: str
    files: Mapping[str, str]
    environment: Environment
    flat: dict[str, ResourceDef] = field(default_factory=dict)

    def add(self, resource: ResourceDef) -> None:
        if resource.name in self.flat:
            fail = failing_at_line(resource.source, resource.line)
            fail(("resources", resource.name), "two resources expand to this name")
        if len(self.flat) >= MAX_RESOURCES:
            fail = failing_at_line(resource.source, resource.line)
            fail(("resources",), f"the stack expands to more than {MAX_RESOURCES} resources")
        self.flat[resource.name] = resource


@dataclass
class _Node:
    """What a resource of a scope became: one flat resource, a nested scope or a group."""

    kind: str  # "flat" | "nested" | "group" | "removed"
    flat: str = ""
    scope: _Scope | None = None
    members: list[_Node] = field(default_factory=list)

    def flat_names(self) -> list[str]:
        if self.kind == "flat":
            return [self.flat]
        if self.scope is not None:
            return [n for node in self.scope.nodes.values() for n in node.flat_names()]
        return [n for member in self.members for n in member.flat_names()]


class _Scope:
    """One template (the top, a nested one or a group member's) being expanded."""

    def __init__(
        self,
        expander: _Expander,
        template: Template,
        params: Mapping[str, object],
        *,
        prefix: str,
        key: str,
        depth: int,
        depends: tuple[str, ...],
    ) -> None:
        self.x, self.template, self.params = expander, template, params
        self.prefix, self.key, self.depth, self.depends = prefix, key, depth, depends
        self.nodes: dict[str, _Node] = {}
        self._building: set[str] = set()
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    # --- resources --------------------------------------------------------------------

    def expand_all(self) -> None:
        for name in self.template.resources:
            self.node(name)

    def node(self, name: str) -> _Node:
        if name in self.nodes:
            return self.nodes[name]
        resource = self.template.resources[name]
        fail = failing_at_line(resource.source, resource.line)
        if name in self._building:
            fail(("resources", name), "dependency cycle through nested outputs")
        self._building.add(name)
        if resource.condition is not None and not self.condition(
            resource.condition, ("resources", name, "condition"), fail
        ):
            node = _Node("removed")
        else:
            path: Path = ("resources", name, "properties")
            props = self.rewrite(dict(resource.properties), path, fail)
            assert isinstance(props, dict)
            depends = (*self.depends, *self._depends_on(resource))
            node = self.instantiate(self.prefix + name, resource, resource.type, props, depends)
        self._building.discard(name)
        self.nodes[name] = node
        return node

    def _depends_on(self, resource: ResourceDef) -> list[str]:
        names: list[str] = []
        for target in resource.depends_on:
            names += self.node(target).flat_names()
        return names

    def instantiate(
        self,
        flat: str,
        resource: ResourceDef,
        type_name: str,
        props: dict[str, object],
        depends: tuple[str, ...],
    ) -> _Node:
        fail = failing_at_line(resource.source, resource.line)
        where: Path = ("resources", resource.name, "type")
        type_name, key = self._registry(type_name, where, fail)
        if key is not None:
            return self._nested(flat, resource, key, props, depends)
        why = refusal(type_name)
        if why is not None:
            fail(where, f"{type_name} is refused on an edge site: {why}")
        rtype = resource_type(type_name)
        if rtype is None:
            fail(where, f"unknown resource type {type_name!r}")
        if type_name == RESOURCE_GROUP:
            return self._group(flat, resource, props, depends)
        self.x.add(
            ResourceDef(
                name=flat,
                type=type_name,
                properties=_renamed(props, rtype.aliases),
                depends_on=tuple(dict.fromkeys(depends)),
                line=resource.line,
                source=resource.source,
            )
        )
        return _Node("flat", flat=flat)

    def _registry(self, type_name: str, where: Path, fail: Fail) -> tuple[str, str | None]:
        """The type after the resource_registry, and the files key when it is a template."""
        registry = self.x.environment.registry
        for _ in range(8):
            if type_name in registry:
                type_name = registry[type_name]
                if is_template_name(type_name):
                    return type_name, type_name  # already a files key (templates/environment.py)
            elif is_template_name(type_name):
                return type_name, file_key(self.key, type_name)
            else:
                return type_name, None
        fail(where, "the resource_registry maps this type in a loop")

    def _nested(
        self,
        flat: str,
        resource: ResourceDef,
        key: str,
        props: dict[str, object],
        depends: tuple[str, ...],
    ) -> _Node:
        fail = failing_at_line(resource.source, resource.line)
        where: Path = ("resources", resource.name, "type")
        if self.depth + 1 > MAX_DEPTH:
            fail(where, f"templates nest deeper than {MAX_DEPTH} levels")
        text = self.x.files.get(key)
        if text is None:
            fail(where, f"the template file {key!r} was not sent in files")
        registry = self.x.environment.registry
        template = load_template(text, key, template_types=registry.keys())
        params = self._nested_parameters(template, resource, key, props, fail)
        scope = _Scope(
            self.x, template, params, prefix=flat + ".", key=key, depth=self.depth + 1,
            depends=depends,
        )  # fmt: skip
        scope.expand_all()
        return _Node("nested", flat=flat, scope=scope)

    def _nested_parameters(
        self,
        template: Template,
        resource: ResourceDef,
        key: str,
        props: Mapping[str, object],
        fail: Fail,
    ) -> dict[str, object]:
        base: Path = ("resources", resource.name, "properties")
        for name in props:
            if name not in template.parameters:
                known = ", ".join(template.parameters) or "none"
                fail((*base, name), f"{key} has no parameter {name!r} (it has: {known})")
        defaults = self.x.environment.parameter_defaults
        values: dict[str, object] = {STACK_NAME: self.x.stack_name}
        for name, definition in template.parameters.items():
            value = props.get(name, defaults.get(name, definition.default))
            if value is None:
                fail((*base, name), f"{key} needs a value for its parameter {name!r}")
            if not has_function(value):
                try:
                    value = convert(definition.type, value)
                except ValueError as exc:
                    fail((*base, name), f"{value!r} {exc}")
                problem = violation(definition, value)
                if problem is not None:
                    fail((*base, name), problem)
            values[name] = value
        return values

    def _group(
        self, flat: str, resource: ResourceDef, props: dict[str, object], depends: tuple[str, ...]
    ) -> _Node:
        fail = failing_at_line(resource.source, resource.line)
        path: Path = ("resources", resource.name, "properties")
        if has_function(props.get("count")):
            fail((*path, "count"), "count must be known before anything is created")
        group = conform_properties(RESOURCE_TYPES[RESOURCE_GROUP], props, path, fail)
        definition = group["resource_def"]
        assert isinstance(definition, dict)
        index_var = str(group.get("index_var") or "%index%")
        member_type = definition["type"]
        if not isinstance(member_type, str):
            fail((*path, "resource_def", "type"), "the member type must be a string")
        members = []
        for index in range(int(str(group.get("count", 1)))):
            tick()
            member_props = _substitute(definition.get("properties") or {}, index_var, str(index))
            assert isinstance(member_props, dict)
            members.append(
                self.instantiate(f"{flat}.{index}", resource, member_type, member_props, depends)
            )
        return _Node("group", flat=flat, members=members)

    # --- values -----------------------------------------------------------------------

    def rewrite(self, value: object, path: Path, fail: Fail) -> object:
        """``value`` with get_param/get_file/if resolved and references renamed."""
        tick()
        call = function_call(value)
        if call is not None:
            name, argument = call
            where = (*path, name)
            if name == GET_PARAM:
                return self._get_param(argument, where, fail)
            if name == GET_FILE:
                return self._get_file(argument, where, fail)
            if name == IF:
                return self._if(argument, where, fail)
            if name == GET_RESOURCE:
                return self._get_resource(argument, where, fail)
            if name == GET_ATTR:
                return self._get_attr(argument, where, fail)
            return {name: self.rewrite(argument, where, fail)}
        if isinstance(value, dict):
            items = ((k, self.rewrite(v, (*path, k), fail)) for k, v in value.items())
            return {k: v for k, v in items if v is not _REMOVED}
        if isinstance(value, list):
            items_ = (self.rewrite(v, (*path, i), fail) for i, v in enumerate(value))
            return [v for v in items_ if v is not _REMOVED]
        return value

    def _get_param(self, argument: object, path: Path, fail: Fail) -> object:
        name, *keys = argument if isinstance(argument, list) else [argument]
        keys = [self.rewrite(key, path, fail) for key in keys]
        if has_function(keys):
            fail(path, "get_param keys must be known before anything is created")
        if name in (STACK_ID, PROJECT_ID):
            return self.x.stack_name
        if not isinstance(name, str) or name not in self.params:
            fail(path, f"parameter {name!r} has no value")
        return _with_keys(self.params[name], keys, path, fail)

    def _get_file(self, argument: object, path: Path, fail: Fail) -> object:
        key = file_key(self.key, str(argument))
        text = self.x.files.get(key)
        if text is None:
            fail(path, f"the file {key!r} was not sent in files")
        return text

    def _if(self, argument: object, path: Path, fail: Fail) -> object:
        assert isinstance(argument, list)
        if self.condition(argument[0], (*path, 0), fail):
            return self.rewrite(argument[1], (*path, 1), fail)
        if len(argument) < 3:
            return _REMOVED
        return self.rewrite(argument[2], (*path, 2), fail)

    def _get_resource(self, argument: object, path: Path, fail: Fail) -> object:
        node = self._target(str(argument), path, fail)
        return _member_ref(node)  # a nested stack or group: its flat name stands for its id

    def _get_attr(self, argument: object, path: Path, fail: Fail) -> object:
        assert isinstance(argument, list)
        resource, *rest = argument
        rest = [self.rewrite(item, path, fail) for item in rest]
        if has_function(rest):
            fail(path, "get_attr attribute names and keys must be known before creation")
        attribute, *keys = rest
        return _attribute(self._target(str(resource), path, fail), str(attribute), keys, path, fail)

    def _target(self, name: str, path: Path, fail: Fail) -> _Node:
        node = self.node(name)
        if node.kind == "removed":
            fail(path, f"resource {name!r} is not created (its condition is false)")
        return node

    def outputs(self) -> dict[str, object]:
        results: dict[str, object] = {}
        for name, output in self.template.outputs.items():
            fail = failing_at_line(self.template.source, output.line)
            path: Path = ("outputs", name)
            if output.condition is not None and not self.condition(
                output.condition, (*path, "condition"), fail
            ):
                continue
            results[name] = self.rewrite(output.value, (*path, "value"), fail)
        return results

    # --- conditions -------------------------------------------------------------------

    def condition(self, value: object, path: Path, fail: Fail) -> bool:
        """A condition's truth; conditions may use parameters only."""
        tick()
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self._named(value, path, fail)
        call = function_call(value)
        if call is not None and call[0] == GET_PARAM:
            flag = self.rewrite(value, path, fail)
            if not isinstance(flag, bool):
                fail(path, f"a condition needs a boolean parameter, not {flag!r}")
            return flag
        if call is None or call[0] not in CONDITION_FUNCTIONS:
            fail(path, "a condition is true/false, a condition name, or equals/not/and/or")
        name, argument = call
        where = (*path, name)
        if name == "not":
            return not self.condition(argument, where, fail)
        assert isinstance(argument, list)
        if name == "and":
            return all(self.condition(item, (*where, i), fail) for i, item in enumerate(argument))
        if name == "or":
            return any(self.condition(item, (*where, i), fail) for i, item in enumerate(argument))
        values = self.rewrite(argument, where, fail)
        if has_function(values):
            fail(where, f"{name} in a condition may use parameters and literals only")
        assert isinstance(values, list)
        if name == "equals":
            return bool(values[0] == values[1])
        container = values[1]
        return isinstance(container, list | str) and values[0] in container

    def _named(self, name: str, path: Path, fail: Fail) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.template.conditions:
            fail(path, f"condition {name!r} is not declared in conditions")
        if name in self._evaluating:
            fail(("conditions", name), "the condition refers to itself")
        self._evaluating.add(name)
        value = self.condition(self.template.conditions[name], ("conditions", name), fail)
        self._evaluating.discard(name)
        self._conditions[name] = value
        return value


def _attribute(node: _Node, attribute: str, keys: list[object], path: Path, fail: Fail) -> object:
    if node.kind == "flat":
        return {GET_ATTR: [node.flat, attribute, *keys]}
    if node.kind == "nested":
        assert node.scope is not None
        if attribute == "OS::stack_id":
            return node.flat
        outputs = node.scope.outputs()
        if attribute not in outputs:
            known = ", ".join(outputs) or "none"
            fail(path, f"{node.scope.key} has no output {attribute!r} (it has: {known})")
        return _with_keys(outputs[attribute], keys, path, fail)
    return _group_attribute(node, attribute, keys, path, fail)


def _group_attribute(
    node: _Node, attribute: str, keys: list[object], path: Path, fail: Fail
) -> object:
    members = node.members
    if attribute == "refs":
        value: object = [_member_ref(m) for m in members]
    elif attribute == "refs_map":
        value = {str(i): _member_ref(m) for i, m in enumerate(members)}
    elif attribute == "removed_rsrc_list":
        value = []
    elif attribute.startswith("resource."):
        index, _, member_attribute = attribute[len("resource.") :].partition(".")
        if not index.isdigit() or int(index) >= len(members):
            fail(path, f"the group has no member {index} (it has {len(members)})")
        member = members[int(index)]
        if not member_attribute:
            return _with_keys(_member_ref(member), keys, path, fail)
        return _attribute(member, member_attribute, keys, path, fail)
    else:
        return [_attribute(m, attribute, keys, path, fail) for m in members]
    return _with_keys(value, keys, path, fail)


def _member_ref(node: _Node) -> object:
    return {GET_RESOURCE: node.flat} if node.kind == "flat" else node.flat


def _with_keys(value: object, keys: list[object], path: Path, fail: Fail) -> object:
    """``value[key]...``: now when ``value`` is known, or appended to a get_attr."""
    if not keys:
        return value
    if not has_function(value):
        return _select(value, list(keys), path, fail)
    call = function_call(value)
    if call is not None and call[0] == GET_ATTR and isinstance(call[1], list):
        return {GET_ATTR: [*call[1], *keys]}
    fail(path, "cannot pick keys out of a value that is known only once resources exist")


def _substitute(value: object, placeholder: str, text: str) -> object:
    if isinstance(value, str):
        return value.replace(placeholder, text)
    if isinstance(value, list):
        return [_substitute(item, placeholder, text) for item in value]
    if isinstance(value, dict):
        return {k: _substitute(v, placeholder, text) for k, v in value.items()}
    return value


def _renamed(props: Mapping[str, object], aliases: Mapping[str, str]) -> dict[str, object]:
    return {aliases.get(key, key): value for key, value in props.items()}


def _check_flat(flat: Template) -> None:
    """The expanded resources checked like a loaded template's, and no cycles."""
    types = {name: resource.type for name, resource in flat.resources.items()}
    others = {name: resource.properties for name, resource in flat.resources.items()}
    graph: dict[str, list[str]] = {}
    for name, resource in flat.resources.items():
        fail = failing_at_line(resource.source, resource.line)
        path: Path = ("resources", name, "properties")
        rtype = RESOURCE_TYPES[resource.type]
        check_literal_properties(rtype, resource.properties, path, fail, types)
        check_cross_references(rtype, resource.properties, path, fail, others)
        # again with every function of parameters evaluated (str_replace, list_join...):
        # only values that depend on resources created later are left unchecked
        evaluated = substitute_parameters(resource, {})
        check_literal_properties(rtype, evaluated, path, fail, types)
        graph[name] = [*resource.depends_on, *referenced_resources(dict(resource.properties))]
        for target in graph[name]:
            if target not in flat.resources:
                fail(("resources", name), f"refers to {target!r}, which is not created")
    cycle = find_cycle(graph)
    if cycle is not None:
        resource = flat.resources[cycle[0]]
        failing_at_line(resource.source, resource.line)(
            ("resources", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}"
        )
