"""Service chains: a customer's ingress -> services in order -> egress, changed make-before-break.

Each service is its own stack (services/stacks.py) whose template has one
``Edgecloud::Chain::Service`` resource naming the server and which of its vNICs faces the
customer and which the network. The ingress and egress ports sit on the chain's attachment
host (``Chain.host``); the services may run on any host. A change is recorded on the chain as
an ``operation`` and carried out by reconcile/chains.py in phases that survive a controller
restart:

    1. bring-up   new services' stacks are created (state ``pending``), the path is unchanged
    2. healthy?   wait until every pending VNF runs with its binding verified (or fail:
                  delete the new stacks; the old path never stopped forwarding)
    3. prepare    (``prepare_path``) every host gets the new path's flows that no traffic
                  of the old path crosses (new ports, new hop tags); wait for every ack
    4. switch     (``switch_path``) every host re-points the flows whose output changes (one
                  OpenFlow bundle per host), the old path's other flows kept; wait for acks
                  ("acked")
    5. retire     (``finish_path``) after a drain time the old path's leftovers go, the hop
                  tags it alone used are released, leaving services' stacks are deleted

Each of 3-5 is ONE transaction that changes the chain and bumps the desired version of
exactly the hosts whose flows it changes: services/chain_paths.py, which also derives what
each host must forward (never stored; planning in chains/planning.py, pure). This module
validates requests, records operations and shows chains; it never waits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.chains.planning import hop_id
from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.services import stacks
from edgecloud.services.chain_paths import active, path_hops
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import (
    Chain,
    ChainService,
    Host,
    Instance,
    Stack,
    StackResource,
    utcnow,
)

DEFAULT_HEALTH_TIMEOUT = 180.0


async def list_chains(ctx: ServiceContext, customer: str | None = None) -> list[Chain]:
    """Every chain, or only ``customer``'s (services/authorization.py)."""
    async with reading(ctx.sessions) as s:
        if customer is None:
            return await repository.all_of(s, Chain)
        query = select(Chain).where(Chain.customer == customer).order_by(Chain.name)
        return list(await s.scalars(query))


async def get_chain(ctx: ServiceContext, name: str) -> Chain:
    async with reading(ctx.sessions) as s:
        return await repository.by_name(s, Chain, name, "chain")


async def create_chain(
    ctx: ServiceContext, request: dict[str, Any], managed_by: str | None = None
) -> Chain:
    """Record the chain and bring up its services; the path goes live once all are healthy.
    ``managed_by``: CENTRAL for a chain central deployed (only central changes it then)."""
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Chain, request["name"]) is not None:
            raise Conflict(f"chain {request['name']!r} already exists")
        if request["ingress_port"] == request["egress_port"]:  # a hop to itself: no path
            raise InvalidInput("egress_port must differ from ingress_port", field="egress_port")
        host = await _host(s, request["host"])
        chain = Chain(
            name=request["name"],
            customer=request["customer"],
            host=host,
            ingress_port=request["ingress_port"],
            egress_port=request["egress_port"],
            status="building",
            services=[],
            managed_by=managed_by,
        )
        s.add(chain)
        names = [svc["name"] for svc in request["services"]]
        if len(set(names)) != len(names):
            raise InvalidInput("service names in a chain must differ", field="services")
        # each service may say how long it takes to come up: the chain waits for the slowest
        waits = [float(svc["health_timeout"]) for svc in request["services"]
                 if svc.get("health_timeout")]  # fmt: skip
        timing = {"health_timeout": max(waits)} if waits else {}
        chain.operation = _operation("create", timing, pending=names)
    for position, service in enumerate(request["services"]):
        await _bring_up(ctx, request["name"], service, position)
    return await _changed(ctx, request["name"])


async def insert_service(
    ctx: ServiceContext,
    name: str,
    service: dict[str, Any],
    where: dict[str, Any],
    by: str | None = None,
) -> Chain:
    """Insert a service before/after a named one, or first/last (default: last)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name, by)
        path = active(chain)
        if service["name"] in {svc.name for svc in chain.services}:
            raise Conflict(f"chain {name!r} already has a service {service['name']!r}")
        position = _insert_position(path, where)
        chain.operation = _operation(
            "insert", service, pending=[service["name"]], position=position
        )
    await _bring_up(ctx, name, service, position)
    return await _changed(ctx, name)


async def replace_service(
    ctx: ServiceContext, name: str, old: str, service: dict[str, Any], by: str | None = None
) -> Chain:
    """Replace a service by a new one at the same position (the old one goes after the switch)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name, by)
        current = _service(chain, old)
        if service["name"] != old and service["name"] in {svc.name for svc in chain.services}:
            raise Conflict(f"chain {name!r} already has a service {service['name']!r}")
        new_name = service["name"] if service["name"] != old else f"{old}-next"
        service = {**service, "name": new_name}
        chain.operation = _operation(
            "replace", service, pending=[new_name], old=[old], position=current.position
        )
    await _bring_up(ctx, name, service, current.position)
    return await _changed(ctx, name)


async def remove_service(
    ctx: ServiceContext, name: str, service: str, by: str | None = None
) -> Chain:
    """Take a service out of the path (switch first, then delete its stack)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name, by)
        _service(chain, service)
        chain.operation = _operation("remove", {}, pending=[], old=[service])
    return await _changed(ctx, name)


async def reorder(
    ctx: ServiceContext, name: str, order: Sequence[str], by: str | None = None
) -> Chain:
    """Give the services a new order (one switch, nothing created or deleted)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name, by)
        if sorted(order) != sorted(svc.name for svc in active(chain)):
            raise InvalidInput(
                "order must name every service of the chain exactly once", field="services"
            )
        chain.operation = _operation("reorder", {}, pending=[], order=list(order))
    return await _changed(ctx, name)


async def delete_chain(ctx: ServiceContext, name: str, by: str | None = None) -> Chain:
    """Remove the chain's flows, then its services' stacks, then the chain."""
    async with transaction(ctx.sessions) as s:
        chain = await repository.by_name(s, Chain, name, "chain")
        _owned(chain, by)
        if chain.operation and chain.operation.get("kind") == "delete":
            return chain
        chain.operation = _operation(
            "delete", {}, pending=[], old=[svc.name for svc in chain.services]
        )
        chain.status = "deleting"
    return await _changed(ctx, name)


# helpers ---------------------------------------------------------------------------------------
def _operation(
    kind: str, service: dict[str, Any], pending: list[str], **extra: Any
) -> dict[str, Any]:
    timeout = float(service.get("health_timeout") or DEFAULT_HEALTH_TIMEOUT)
    return {
        "kind": kind,
        "pending": pending,
        "health_timeout": timeout,
        "started": utcnow().isoformat(),
        "phase": "bring-up",
        **extra,
    }


async def _bring_up(
    ctx: ServiceContext, chain_name: str, service: dict[str, Any], position: int
) -> None:
    """Create the service's stack and its pending row; any failure undoes the operation."""
    stack_name = f"{chain_name}-{service['name']}"
    try:
        customer = (await get_chain(ctx, chain_name)).customer  # owns the service's stack
        stack = await stacks.create_stack(
            ctx, stack_name, service["template"], service.get("parameters") or {},
            customer=customer,
        )  # fmt: skip
        await _add_pending(ctx, chain_name, service, position, stack)
    except Exception:
        await _abandon(ctx, chain_name, stack_name)
        raise


async def _add_pending(
    ctx: ServiceContext, chain_name: str, service: dict[str, Any], position: int, stack: Stack
) -> None:
    async with transaction(ctx.sessions) as s:
        chain = await repository.by_name(s, Chain, chain_name, "chain")
        marker = next((r for r in stack.resources if r.type == stacks.CHAIN_SERVICE), None)
        if marker is None:
            raise InvalidInput(
                f"the template of service {service['name']!r} has no Edgecloud::Chain::Service resource",
                field="template",
            )
        server = await _server(s, marker)
        chain.services.append(
            ChainService(
                name=service["name"],
                position=position,
                state="pending",
                stack_id=stack.id,
                instance_id=server.id,
                customer_vnic=int(str(marker.properties["customer_nic"])),
                network_vnic=int(str(marker.properties["network_nic"])),
            )
        )


async def _server(s: AsyncSession, marker: StackResource) -> Instance:
    """The VNF a chain-service resource names (its ``server`` resolved to the VNF name)."""
    return await repository.by_name(s, Instance, str(marker.properties["server"]), "VNF")


async def _abandon(ctx: ServiceContext, chain_name: str, stack_name: str) -> None:
    """Undo an operation whose bring-up failed before it started: the new services' stacks
    go, the chain keeps its path (a chain still being created goes entirely)."""
    stack_ids: list[str] = []
    async with transaction(ctx.sessions) as s:
        chain = await repository.find_by_name(s, Chain, chain_name)
        if chain is not None:
            stack_ids = await _abandon_in(s, chain)
        names = [st.name for sid in stack_ids if (st := await s.get(Stack, sid)) is not None]
        orphan = await repository.find_by_name(s, Stack, stack_name)
        if orphan is not None and stack_name not in names:
            names.append(stack_name)  # created, but not yet a service of the chain
    for name in names:
        await stacks.delete_stack(ctx, name)


async def _abandon_in(s: AsyncSession, chain: Chain) -> list[str]:
    """Drop the pending services (returns their stack ids) and the operation."""
    pending = [svc for svc in chain.services if svc.state == "pending"]
    for svc in pending:
        chain.services.remove(svc)
    if chain.operation and chain.operation.get("kind") == "create":
        await s.delete(chain)
    else:
        chain.operation = None
    return [svc.stack_id for svc in pending if svc.stack_id]


async def _changed(ctx: ServiceContext, name: str) -> Chain:
    chain = await get_chain(ctx, name)
    ctx.notifier.chain_changed(chain.id)
    return chain


def _owned(chain: Chain, by: str | None) -> None:
    """Only who deployed a chain changes it (central, for one it deployed)."""
    if chain.managed_by is not None and chain.managed_by != by:
        raise Conflict(
            f"chain {chain.name!r} was deployed by {chain.managed_by}: change or remove it "
            "there (edgecloud central deploy / undeploy)"
        )


async def _idle_chain(s: AsyncSession, name: str, by: str | None = None) -> Chain:
    chain = await repository.by_name(s, Chain, name, "chain")
    _owned(chain, by)
    if chain.operation is not None:
        raise Conflict(
            f"chain {name!r} is being changed ({chain.operation.get('kind')}); try again when it is done"
        )
    return chain


async def _host(s: AsyncSession, name: str) -> Host:
    try:
        return await repository.by_name(s, Host, name, "host")
    except NotFound as exc:
        raise InvalidInput(str(exc), field="host") from exc


def _service(chain: Chain, name: str) -> ChainService:
    found = next((svc for svc in chain.services if svc.name == name), None)
    if found is None:
        raise NotFound(f"chain {chain.name!r} has no service {name!r}")
    return found


def _insert_position(path: list[ChainService], where: dict[str, Any]) -> int:
    names = [svc.name for svc in path]
    if where.get("before"):
        if where["before"] not in names:
            raise InvalidInput(f"no service {where['before']!r} in the chain", field="before")
        return names.index(where["before"])
    if where.get("after"):
        if where["after"] not in names:
            raise InvalidInput(f"no service {where['after']!r} in the chain", field="after")
        return names.index(where["after"]) + 1
    return 0 if where.get("at") == "first" else len(names)


def view(chain: Chain, applied: Mapping[str, int]) -> dict[str, Any]:
    """The chain as the API shows it (``applied``: each host's applied version)."""
    versions = chain.path_versions or {chain.host_id: chain.path_version}
    tags = {row.hop: row.tag for row in chain.hop_tags}
    return {
        "id": chain.id,
        "name": chain.name,
        "customer": chain.customer,
        "host": chain.host.name,
        "ingress_port": chain.ingress_port,
        "egress_port": chain.egress_port,
        "status": chain.status,
        "path": [svc.name for svc in active(chain)],
        "hops": [
            {"from": a, "to": b, "tags": [tags.get(hop_id((a, b))), tags.get(hop_id((b, a)))]}
            for a, b in path_hops(chain, [svc.name for svc in active(chain)])
        ],
        "services": [
            {
                "name": svc.name,
                "position": svc.position,
                "state": svc.state,
                "customer_vnic": svc.customer_vnic,
                "network_vnic": svc.network_vnic,
                "instance_id": svc.instance_id,
            }
            for svc in chain.services
        ],
        "operation": chain.operation,
        "last_result": chain.last_result,
        "last_error": chain.last_error,
        "path_version": chain.path_version,
        "path_applied": all(applied.get(h, 0) >= v for h, v in versions.items()),
        "managed_by": chain.managed_by,
    }


async def applied_versions(ctx: ServiceContext) -> dict[str, int]:
    """Each host's applied version (is a chain's last change in place everywhere?)."""
    async with transaction(ctx.sessions) as s:
        rows = await s.execute(select(Host.id, Host.applied_version))
        return {str(host_id): int(version) for host_id, version in rows}
