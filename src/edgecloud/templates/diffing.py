"""Plan a stack update: which resources stay, change in place, are replaced, created, deleted.

Called by the step that applies a stack update, with two templates from
templates/loading.py and their parameter values from ``resolve_parameters``. Properties are
compared with parameters substituted and resource references compared by name
(``substitute_parameters`` in templates/resolving.py). A change to a property whose schema
in templates/resource_types.py says ``in_place`` (a server's flavor, name or metadata; a
network's name) updates the resource; any other change replaces it, and so does a changed
type. A resource that references (get_resource/get_attr) a replaced resource is replaced
too, transitively. Pure: no I/O.

``steps`` is a safe order to apply the plan in: first, in the new template's creation order,
create new resources, create replacements and update in place; then, in the old template's
reverse creation order, delete replaced originals and removed resources. So nothing is
deleted while something still needs it, and a replacement exists before its original goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from edgecloud.templates.functions import referenced_resources
from edgecloud.templates.model import Template
from edgecloud.templates.problems import template_error
from edgecloud.templates.resolving import creation_order, substitute_parameters
from edgecloud.templates.resource_types import resource_type

Action = Literal["create", "update", "create_replacement", "delete_replaced", "delete"]
Fate = Literal["unchanged", "update_in_place", "replace", "create"]


@dataclass(frozen=True)
class PlanStep:
    """One thing to do to one resource."""

    action: Action
    resource: str


@dataclass(frozen=True)
class UpdatePlan:
    """Resource names by fate, each in the order to act on them, and all ``steps`` in order.

    ``changed`` names, per updated or replaced resource, the properties that differ
    (``("type",)`` for a changed type; empty when replaced only because a resource it
    references is).
    """

    unchanged: tuple[str, ...] = ()
    update_in_place: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    create: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    steps: tuple[PlanStep, ...] = ()
    changed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def plan_update(
    old: Template,
    old_params: Mapping[str, object],
    new: Template,
    new_params: Mapping[str, object],
) -> UpdatePlan:
    """The plan that takes a stack from ``old`` to ``new``; TemplateError if an immutable
    parameter changed."""
    _check_immutable(old, old_params, new_params)
    new_order, old_order = creation_order(new), creation_order(old)
    changed = _changed_properties(old, old_params, new, new_params)
    fates = {name: _fate(name, old, changed) for name in new_order}
    _propagate_replacements(new, new_order, fates, changed)
    deleted = [name for name in reversed(old_order) if name not in new.resources]
    return UpdatePlan(
        unchanged=_having(fates, new_order, "unchanged"),
        update_in_place=_having(fates, new_order, "update_in_place"),
        replace=_having(fates, new_order, "replace"),
        create=_having(fates, new_order, "create"),
        delete=tuple(deleted),
        steps=_steps(fates, new_order, old_order, deleted),
        changed={name: keys for name, keys in changed.items() if fates.get(name) != "unchanged"},
    )


def _check_immutable(
    old: Template, old_params: Mapping[str, object], new_params: Mapping[str, object]
) -> None:
    for name, definition in old.parameters.items():
        if definition.immutable and old_params.get(name) != new_params.get(name):
            path = ("parameters", name)
            raise template_error(None, None, path, "is immutable and cannot change on update")


def _changed_properties(
    old: Template,
    old_params: Mapping[str, object],
    new: Template,
    new_params: Mapping[str, object],
) -> dict[str, tuple[str, ...]]:
    """For each resource in both templates, which properties (or its type) differ."""
    changed: dict[str, tuple[str, ...]] = {}
    for name, resource in new.resources.items():
        before = old.resources.get(name)
        if before is None:
            continue
        if before.type != resource.type:
            changed[name] = ("type",)
            continue
        was = substitute_parameters(before, old_params)
        now = substitute_parameters(resource, new_params)
        changed[name] = tuple(
            key for key in dict.fromkeys([*was, *now]) if was.get(key) != now.get(key)
        )
    return changed


def _fate(name: str, old: Template, changed: Mapping[str, tuple[str, ...]]) -> Fate:
    if name not in old.resources:
        return "create"
    keys = changed[name]
    if not keys:
        return "unchanged"
    if keys != ("type",) and all(_in_place(old.resources[name].type, key) for key in keys):
        return "update_in_place"
    return "replace"


def _in_place(type_name: str, key: str) -> bool:
    rtype = resource_type(type_name)
    schema = rtype.properties.get(key) if rtype is not None else None
    return schema is not None and schema.update == "in_place"


def _propagate_replacements(
    new: Template,
    new_order: list[str],
    fates: dict[str, Fate],
    changed: dict[str, tuple[str, ...]],
) -> None:
    """Replace what references a replaced resource; dependencies-first order makes one pass
    transitive."""
    for name in new_order:
        if fates[name] in ("create", "replace"):
            continue
        targets = referenced_resources(dict(new.resources[name].properties))
        if any(fates.get(target) == "replace" for target in targets):
            fates[name] = "replace"
            changed.setdefault(name, ())


def _having(fates: Mapping[str, Fate], order: list[str], fate: Fate) -> tuple[str, ...]:
    return tuple(name for name in order if fates[name] == fate)


_BUILD_ACTIONS: Mapping[Fate, Action] = {
    "create": "create",
    "replace": "create_replacement",
    "update_in_place": "update",
}


def _steps(
    fates: Mapping[str, Fate], new_order: list[str], old_order: list[str], deleted: list[str]
) -> tuple[PlanStep, ...]:
    build = [
        PlanStep(_BUILD_ACTIONS[fates[name]], name)
        for name in new_order
        if fates[name] in _BUILD_ACTIONS
    ]
    gone = set(deleted)
    teardown = [
        PlanStep("delete" if name in gone else "delete_replaced", name)
        for name in reversed(old_order)
        if name in gone or fates.get(name) == "replace"
    ]
    return tuple(build + teardown)
