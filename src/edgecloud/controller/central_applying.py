"""What central deploys, made so at the site: its desired state (protocol/central.py
``SiteDesired``) becomes stacks the site's own services create, change and delete.

Ownership (docs/operations.md, "Central and sites: who owns what"): a stack central deployed is
marked ``managed_by = central`` and only central changes or removes it (the site's API answers
409); everything else at the site is the site's own, and central never touches it. A deployment
whose name a site-local stack already holds is a ``conflict``: the local stack stays as it is,
and central shows the conflict until one side renames or removes its own. Applying is
idempotent: a deployment whose template and parameters the stack already has is left alone.
"""

from __future__ import annotations

import logging

from edgecloud.errors import EdgecloudError
from edgecloud.protocol import central as wire
from edgecloud.services import stacks
from edgecloud.services.context import ServiceContext
from edgecloud.services.stacks import CENTRAL

log = logging.getLogger(__name__)


async def apply(ctx: ServiceContext, desired: wire.SiteDesired) -> wire.Applied:
    """Make the site's central-managed stacks what ``desired`` says; the result of each."""
    existing = {stack.name: stack for stack in await stacks.list_stacks(ctx)}
    wanted = {spec.name: spec for spec in desired.deployments}
    results: dict[str, wire.DeploymentResult] = {}
    for name, spec in wanted.items():
        stack = existing.get(name)
        try:
            if spec.kind != "stack":
                raise EdgecloudError(f"this site cannot deploy a {spec.kind!r}")
            if stack is None:
                await stacks.create_stack(
                    ctx, name, spec.template, spec.parameters, managed_by=CENTRAL
                )
                log.info("deployed %s from central", name)
            elif stack.managed_by != CENTRAL:
                results[name] = wire.DeploymentResult(
                    status="conflict",
                    message=f"the site has a stack of its own named {name!r}; it is left as it is",
                )
                continue
            elif stack.template != spec.template or stack.parameters != spec.parameters:
                await stacks.update_stack(ctx, name, spec.template, spec.parameters, by=CENTRAL)
                log.info("updated %s from central", name)
            results[name] = wire.DeploymentResult(status="in-sync")
        except EdgecloudError as exc:
            log.warning("deployment %s from central failed: %s", name, exc)
            results[name] = wire.DeploymentResult(status="failed", message=str(exc)[:4096])
    for name, stack in existing.items():
        gone = stack.managed_by == CENTRAL and name not in wanted
        if gone and not stack.status.startswith("DELETE"):
            try:
                await stacks.delete_stack(ctx, name, by=CENTRAL)
                log.info("removed %s: central undeployed it", name)
            except EdgecloudError as exc:  # tried again at the next apply
                log.warning("removing %s, which central undeployed, failed: %s", name, exc)
    return wire.Applied(version=desired.version, results=results)
