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
exactly the hosts whose flows it changes (services/host_versions.py). What each host must
forward is derived, never stored: ``chain_flows`` (planning in chains/planning.py, pure).
This module validates requests and records operations; it never waits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.chains.planning import (
    HOP_TAGS,
    Hop,
    HostFlows,
    Port,
    ServiceHop,
    additive,
    directions,
    hop_id,
    hops,
    host_flows,
    next_order,
    switched,
    to_wire,
)
from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.fm import alarming
from edgecloud.services import stacks
from edgecloud.services.context import ServiceContext
from edgecloud.services.host_versions import bump
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import (
    Chain,
    ChainHopTag,
    ChainService,
    Host,
    Instance,
    Stack,
    StackResource,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

DEFAULT_HEALTH_TIMEOUT = 180.0


async def list_chains(ctx: ServiceContext) -> list[Chain]:
    async with transaction(ctx.sessions) as s:
        return await repository.all_of(s, Chain)


async def get_chain(ctx: ServiceContext, name: str) -> Chain:
    async with transaction(ctx.sessions) as s:
        return await repository.by_name(s, Chain, name, "chain")


async def create_chain(ctx: ServiceContext, request: dict[str, Any]) -> Chain:
    """Record the chain and bring up its services; the path goes live once all are healthy."""
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Chain, request["name"]) is not None:
            raise Conflict(f"chain {request['name']!r} already exists")
        host = await _host(s, request["host"])
        chain = Chain(
            name=request["name"],
            customer=request["customer"],
            host=host,
            ingress_port=request["ingress_port"],
            egress_port=request["egress_port"],
            status="building",
            services=[],
        )
        s.add(chain)
        names = [svc["name"] for svc in request["services"]]
        if len(set(names)) != len(names):
            raise InvalidInput("service names in a chain must differ", field="services")
        chain.operation = _operation("create", request, pending=names)
    for position, service in enumerate(request["services"]):
        await _bring_up(ctx, request["name"], service, position)
    return await _changed(ctx, request["name"])


async def insert_service(
    ctx: ServiceContext, name: str, service: dict[str, Any], where: dict[str, Any]
) -> Chain:
    """Insert a service before/after a named one, or first/last (default: last)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name)
        path = _active(chain)
        if service["name"] in {svc.name for svc in chain.services}:
            raise Conflict(f"chain {name!r} already has a service {service['name']!r}")
        position = _insert_position(path, where)
        chain.operation = _operation(
            "insert", service, pending=[service["name"]], position=position
        )
    await _bring_up(ctx, name, service, position)
    return await _changed(ctx, name)


async def replace_service(
    ctx: ServiceContext, name: str, old: str, service: dict[str, Any]
) -> Chain:
    """Replace a service by a new one at the same position (the old one goes after the switch)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name)
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


async def remove_service(ctx: ServiceContext, name: str, service: str) -> Chain:
    """Take a service out of the path (switch first, then delete its stack)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name)
        _service(chain, service)
        chain.operation = _operation("remove", {}, pending=[], old=[service])
    return await _changed(ctx, name)


async def reorder(ctx: ServiceContext, name: str, order: Sequence[str]) -> Chain:
    """Give the services a new order (one switch, nothing created or deleted)."""
    async with transaction(ctx.sessions) as s:
        chain = await _idle_chain(s, name)
        if sorted(order) != sorted(svc.name for svc in _active(chain)):
            raise InvalidInput(
                "order must name every service of the chain exactly once", field="services"
            )
        chain.operation = _operation("reorder", {}, pending=[], order=list(order))
    return await _changed(ctx, name)


async def delete_chain(ctx: ServiceContext, name: str) -> Chain:
    """Remove the chain's flows, then its services' stacks, then the chain."""
    async with transaction(ctx.sessions) as s:
        chain = await repository.by_name(s, Chain, name, "chain")
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
        stack = await stacks.create_stack(
            ctx, stack_name, service["template"], service.get("parameters") or {}
        )
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


async def _idle_chain(s: AsyncSession, name: str) -> Chain:
    chain = await repository.by_name(s, Chain, name, "chain")
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


def _active(chain: Chain) -> list[ChainService]:
    return sorted(
        (svc for svc in chain.services if svc.state == "active"), key=lambda svc: svc.position
    )


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
        "path": [svc.name for svc in _active(chain)],
        "hops": [
            {"from": a, "to": b, "tags": [tags.get(hop_id((a, b))), tags.get(hop_id((b, a)))]}
            for a, b in _path_hops(chain, [svc.name for svc in _active(chain)])
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
    }


async def applied_versions(ctx: ServiceContext) -> dict[str, int]:
    """Each host's applied version (is a chain's last change in place everywhere?)."""
    async with transaction(ctx.sessions) as s:
        rows = await s.execute(select(Host.id, Host.applied_version))
        return {str(host_id): int(version) for host_id, version in rows}


# where the path runs ---------------------------------------------------------------------------
async def instance_hosts(s: AsyncSession, instance: Instance) -> tuple[str, ...]:
    """The hosts an instance's ports are on. THE one place to swap for
    services.migrations.instance_hosts (source and destination while a migration runs)."""
    return (instance.host_id,) if instance.host_id else ()


def _path_hops(chain: Chain, names: Sequence[str]) -> list[Hop]:
    by_name = {svc.name: svc for svc in chain.services}
    services = [
        ServiceHop(by_name[n].instance_id or "", by_name[n].customer_vnic, by_name[n].network_vnic)
        for n in names
    ]
    return hops(Port(name=chain.ingress_port), Port(name=chain.egress_port), services)


async def _where(s: AsyncSession, chain: Chain) -> dict[str, tuple[str, ...]]:
    """Port key -> hosts holding it: ingress and egress on the attachment host, each
    service's vNICs where its instance is (both hosts while it migrates)."""
    where: dict[str, tuple[str, ...]] = {
        chain.ingress_port: (chain.host_id,),
        chain.egress_port: (chain.host_id,),
    }
    for svc in chain.services:
        instance = await s.get(Instance, svc.instance_id) if svc.instance_id else None
        located = await instance_hosts(s, instance) if instance is not None else ()
        for index in (svc.customer_vnic, svc.network_vnic):
            where[Port(instance_id=svc.instance_id, vnic_index=index).key()] = located
    return where


async def _tags(s: AsyncSession, chain_id: str) -> dict[str, int]:
    rows = await s.scalars(select(ChainHopTag).where(ChainHopTag.chain_id == chain_id))
    return {row.hop: row.tag for row in rows}


async def _ensure_tags(s: AsyncSession, chain: Chain, path: Sequence[Hop]) -> None:
    """Give each direction of each hop without one a tag no live hop holds: one never used
    if any is left, else the least recently released (a learning site switch has forgotten
    its MACs by then; a hop keeps its tags, so a new hop never gets a live tag)."""
    have = await _tags(s, chain.id)
    wanted = [d for d in directions(path) if hop_id(d) not in have]
    if not wanted:
        return
    rows = {row.tag: row for row in await s.scalars(select(ChainHopTag))}
    fresh = (ChainHopTag(tag=t) for t in HOP_TAGS if t not in rows)
    released = sorted(
        (row for row in rows.values() if row.chain_id is None),
        key=lambda row: (as_utc(row.released_at or EPOCH), row.tag),
    )
    reuse = iter(released)
    for direction in wanted:
        row = next(fresh, None) or next(reuse, None)
        if row is None:
            raise Conflict(f"no free hop tag left on this site ({len(HOP_TAGS)} in use)")
        row.chain_id, row.hop, row.released_at = chain.id, hop_id(direction), None
        s.add(row)
        have[hop_id(direction)] = row.tag
    await s.flush()


async def _release_tags(s: AsyncSession, chain_id: str, keep: Sequence[Hop]) -> None:
    """Release the chain's tags of hops not in ``keep`` (all of them: ``keep`` empty)."""
    kept = {hop_id(d) for d in directions(keep)}
    for row in await s.scalars(select(ChainHopTag).where(ChainHopTag.chain_id == chain_id)):
        if row.hop not in kept:
            row.chain_id, row.hop, row.released_at = None, "", utcnow()


def _phase_hops(chain: Chain) -> tuple[list[Hop], list[Hop] | None]:
    """The old path's hops and, once a change is being put in place, the new path's."""
    op = chain.operation or {}
    if "old_hops" not in op:
        return _path_hops(chain, [svc.name for svc in _active(chain)]), None
    return _hop_tuples(op["old_hops"]), _hop_tuples(op["new_hops"])


def _hop_tuples(raw: Any) -> list[Hop]:
    return [(str(a), str(b)) for a, b in raw]


async def chain_flows(s: AsyncSession, chain: Chain) -> dict[str, HostFlows]:
    """{host id: flows} the chain needs right now, by the phase of its change."""
    where, tags = await _where(s, chain), await _tags(s, chain.id)
    old, new = _phase_hops(chain)
    before = host_flows(old, where, tags)
    if new is None:
        return before
    after = host_flows(new, where, tags)
    phase = (chain.operation or {}).get("phase")
    return additive(before, after) if phase == "prepare" else switched(before, after)


async def host_steering(s: AsyncSession, host_id: str) -> dict[str, Any]:
    """The steering section of a host's snapshot: its flows of every chain (wire form)."""
    steer: dict[str, Any] = {}
    for chain in await s.scalars(select(Chain).order_by(Chain.name)):
        try:
            flows = (await chain_flows(s, chain)).get(host_id)
        except ValueError as exc:  # a crossing hop without a tag: never left so by this module
            log.error("chain %s: %s", chain.name, exc)
            continue
        steer.update(to_wire(flows or {}))
    return steer


async def _publish(
    s: AsyncSession, chain: Chain, before: Mapping[str, HostFlows], after: Mapping[str, HostFlows]
) -> dict[str, int]:
    """Bump exactly the hosts whose flows of this chain change; remember their versions."""
    changed = {h for h in {*before, *after} if before.get(h) != after.get(h)}
    versions = await bump(s, changed)
    chain.path_versions = {**(chain.path_versions or {}), **versions}
    chain.path_version = max(chain.path_versions.values(), default=chain.path_version)
    return versions


async def instance_moved(
    s: AsyncSession, instance_id: str, hosts_before: Sequence[str]
) -> dict[str, int]:
    """Call in the transaction that changes where an instance is (a migration adds the
    destination, later drops the source: see ``instance_hosts``): the chains through it get
    tags for hops that now cross hosts, and every host their flows touch now, plus
    ``hosts_before``, gets a new desired version. Returns {host id: version}: after the
    commit, notify each (``ctx.notifier.host_changed``) and wait for their acks before
    relying on the new steering (e.g. before the guest runs at the destination)."""
    services = await s.scalars(select(ChainService).where(ChainService.instance_id == instance_id))
    touched: set[str] = set(hosts_before)
    for chain_id in {svc.chain_id for svc in services}:
        chain = await s.get(Chain, chain_id)
        if chain is None:
            continue
        old, new = _phase_hops(chain)
        await _ensure_tags(s, chain, [*old, *(new or [])])
        touched |= set(await chain_flows(s, chain))
    return await bump(s, touched)


# the phases of a change (called by reconcile/chains.py) ----------------------------------------
async def prepare_path(ctx: ServiceContext, chain_id: str, healthy_at: float) -> dict[str, int]:
    """Phase 3: the new path's additive flows on every host; returns the versions to await."""
    async with transaction(ctx.sessions) as s:
        chain = await _chain(s, chain_id)
        op: dict[str, Any] = dict(chain.operation or {})
        before = await chain_flows(s, chain)
        active = [svc.name for svc in _active(chain)]
        pending = [
            svc.name
            for svc in sorted(chain.services, key=lambda svc: svc.position)
            if svc.name in op["pending"]
        ]
        order = next_order(str(op["kind"]), active, pending, op)
        new_hops = [] if op["kind"] == "delete" else _path_hops(chain, order)
        await _ensure_tags(s, chain, [*_path_hops(chain, active), *new_hops])
        chain.operation = {
            **op,
            "phase": "prepare",
            "healthy_at": healthy_at,
            "next": order,
            "old_hops": [list(h) for h in _path_hops(chain, active)],
            "new_hops": [list(h) for h in new_hops],
        }
        versions = await _publish(s, chain, before, await chain_flows(s, chain))
        chain.operation = {**chain.operation, "versions": versions}
    _notify(ctx, versions)
    return versions


async def switch_path(ctx: ServiceContext, chain_id: str) -> dict[str, int]:
    """Phase 4: every host re-points the flows whose output changes; the services take their
    new places (leaving ones ``retiring``). Returns the versions to await."""
    started = time.time()
    async with transaction(ctx.sessions) as s:
        chain = await _chain(s, chain_id)
        op: dict[str, Any] = dict(chain.operation or {})
        before = await chain_flows(s, chain)
        for svc in chain.services:
            if svc.name in op.get("old", []):
                svc.state = "retiring"
        by_name = {svc.name: svc for svc in chain.services}
        for position, name in enumerate(op["next"]):
            by_name[name].state, by_name[name].position = "active", position
        chain.status = "deleting" if op["kind"] == "delete" else "active"
        chain.operation = {**op, "phase": "acked", "switched_at": started}
        versions = await _publish(s, chain, before, await chain_flows(s, chain))
        chain.operation = {**chain.operation, "versions": versions}
    _notify(ctx, versions)
    return versions


async def set_phase(ctx: ServiceContext, chain_id: str, phase: str, **fields: Any) -> None:
    """Record progress of a change that changes no flows (e.g. acked -> retire + timing)."""
    async with transaction(ctx.sessions) as s:
        chain = await _chain(s, chain_id)
        chain.operation = {**(chain.operation or {}), "phase": phase, **fields}


async def finish_path(ctx: ServiceContext, chain_id: str) -> list[str]:
    """Phase 5: the old path's leftovers go from every host, hop tags only it used are
    released, leaving services leave the chain (and a deleted chain goes). Returns the names
    of the stacks to delete."""
    async with transaction(ctx.sessions) as s:
        chain = await _chain(s, chain_id)
        op: dict[str, Any] = dict(chain.operation or {})
        before = await chain_flows(s, chain)
        leaving = [svc for svc in chain.services if svc.state == "retiring"]
        names = [
            st.name for svc in leaving if svc.stack_id and (st := await s.get(Stack, svc.stack_id))
        ]
        for svc in leaving:
            chain.services.remove(svc)
        await _release_tags(s, chain.id, _hop_tuples(op.get("new_hops", [])))
        deleting = op["kind"] == "delete"
        chain.operation, chain.status = None, "active"
        chain.last_result, chain.last_error = op.get("result"), None
        alarming.log_event(s, f"chain={chain.name}", _describe(op))
        versions = await _publish(s, chain, before, {} if deleting else await chain_flows(s, chain))
        if deleting:
            await s.delete(chain)
    _notify(ctx, versions)
    return names


def _notify(ctx: ServiceContext, versions: Mapping[str, int]) -> None:
    for host_id in versions:
        ctx.notifier.host_changed(host_id)


async def _chain(s: AsyncSession, chain_id: str) -> Chain:
    chain = await s.get(Chain, chain_id)
    if chain is None:
        raise NotFound(f"chain {chain_id} is gone")
    return chain


def _describe(op: Mapping[str, Any]) -> str:
    result = op.get("result") or {}
    timing = f"; switchover {result['switchover_ms']} ms" if "switchover_ms" in result else ""
    return f"{op['kind']} done{timing}"
