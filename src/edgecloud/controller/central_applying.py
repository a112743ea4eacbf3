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
from edgecloud.services import chains, hosts, stacks
from edgecloud.services.context import ServiceContext
from edgecloud.services.stacks import CENTRAL

log = logging.getLogger(__name__)


async def apply(ctx: ServiceContext, desired: wire.SiteDesired) -> wire.Applied:
    """Make the site's central-managed stacks and chains what ``desired`` says; the result
    of each."""
    results = await _stacks(ctx, [d for d in desired.deployments if d.kind != "chain"])
    results.update(await _chains(ctx, [d for d in desired.deployments if d.kind == "chain"]))
    return wire.Applied(version=desired.version, results=results)


async def _stacks(
    ctx: ServiceContext, wanted_specs: list[wire.DeploymentSpec]
) -> dict[str, wire.DeploymentResult]:
    existing = {stack.name: stack for stack in await stacks.list_stacks(ctx)}
    wanted = {spec.name: spec for spec in wanted_specs}
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
                results[name] = _conflict("stack", name)
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
    return results


async def _chains(
    ctx: ServiceContext, wanted_specs: list[wire.DeploymentSpec]
) -> dict[str, wire.DeploymentResult]:
    """Chains central deployed: created (``pending`` until the chain is active), left alone
    when their services are as asked, removed when undeployed. A change to a deployed chain's
    services is refused for now (undeploy, then deploy)."""
    existing = {chain.name: chain for chain in await chains.list_chains(ctx)}
    results: dict[str, wire.DeploymentResult] = {}
    for spec in wanted_specs:
        request, chain = dict(spec.chain or {}), existing.get(spec.name)
        try:
            if chain is None:
                if not request.get("host"):
                    request["host"] = await _first_host(ctx)
                await chains.create_chain(ctx, request, managed_by=CENTRAL)
                log.info("deploying chain %s from central", spec.name)
                results[spec.name] = wire.DeploymentResult(status="pending")
            elif chain.managed_by != CENTRAL:
                results[spec.name] = _conflict("chain", spec.name)
            elif chain.status == "deleting":
                results[spec.name] = wire.DeploymentResult(
                    status="pending", message="a failed try is being removed"
                )
            elif chain.status == "failed" and chain.operation is None:
                # its creation failed (a service never became healthy): removed, then tried
                # again once it is gone
                await chains.delete_chain(ctx, spec.name, by=CENTRAL)
                raise EdgecloudError(f"the chain did not come up: {chain.last_error}")
            elif [s.get("name") for s in request.get("services", [])] != [
                svc.name for svc in sorted(chain.services, key=lambda x: x.position)
            ]:
                raise EdgecloudError(
                    "changing the services of a chain central deployed is not supported yet: "
                    "undeploy it, then deploy it again"
                )
            else:
                done = chain.status == "active" and chain.operation is None
                results[spec.name] = wire.DeploymentResult(
                    status="in-sync" if done else "pending",
                    message=None if done else f"chain {chain.status}",
                )
        except EdgecloudError as exc:
            log.warning("chain %s from central failed: %s", spec.name, exc)
            results[spec.name] = wire.DeploymentResult(status="failed", message=str(exc)[:4096])
    wanted = {spec.name for spec in wanted_specs}
    for name, chain in existing.items():
        if chain.managed_by == CENTRAL and name not in wanted and chain.status != "deleting":
            try:
                await chains.delete_chain(ctx, name, by=CENTRAL)
                log.info("removing chain %s: central undeployed it", name)
            except EdgecloudError as exc:
                log.warning("removing chain %s failed: %s", name, exc)
    return results


async def _first_host(ctx: ServiceContext) -> str:
    names = sorted(host.name for host in await hosts.list_hosts(ctx))
    if not names:
        raise EdgecloudError("the site has no host to attach the chain to")
    return names[0]


def _conflict(kind: str, name: str) -> wire.DeploymentResult:
    return wire.DeploymentResult(
        status="conflict",
        message=f"the site has a {kind} of its own named {name!r}; it is left as it is",
    )
