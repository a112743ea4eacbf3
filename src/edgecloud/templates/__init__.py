"""edgecloud.templates: a pure engine for a compatible subset of OpenStack Heat HOT templates.

Load and check a template (loading), expand a stack request (template, environment files,
nested templates, groups, conditions) into one flat template (expanding), evaluate its
parameters, properties and outputs and order its resources (resolving), and plan an update
between two versions (diffing). Time and size limits: budget. The
supported resource types are data in resource_types. No I/O, no store, no HTTP: the step
that maps resources to edgecloud networks and VNFs and stores stacks builds on this.
Every rejection is an ``edgecloud.errors.TemplateError`` naming the line and path.
"""

from edgecloud.templates.diffing import PlanStep, UpdatePlan, plan_update
from edgecloud.templates.expanding import Prepared, prepare
from edgecloud.templates.loading import HOT_VERSIONS, load_template
from edgecloud.templates.model import Constraint, OutputDef, ParameterDef, ResourceDef, Template
from edgecloud.templates.resolving import (
    creation_order,
    dependencies,
    resolve_outputs,
    resolve_parameters,
    resolve_properties,
)
from edgecloud.templates.resource_types import RESOURCE_TYPES, ResourceType, Schema

__all__ = [
    "HOT_VERSIONS",
    "RESOURCE_TYPES",
    "Constraint",
    "OutputDef",
    "ParameterDef",
    "PlanStep",
    "Prepared",
    "ResourceDef",
    "ResourceType",
    "Schema",
    "Template",
    "UpdatePlan",
    "creation_order",
    "dependencies",
    "load_template",
    "plan_update",
    "prepare",
    "resolve_outputs",
    "resolve_parameters",
    "resolve_properties",
]
