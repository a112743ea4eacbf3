"""Where a chain's path runs and how it changes: each host's flows, hop tags, the phases.

The data side of chains across nodes (the pure planning is chains/planning.py; the requests
are services/chains.py; reconcile/chains.py calls the phase functions and waits):

- ``chain_flows``: {host id: flows} a chain needs now, from its active path or, while a
  change is put in place, from the old and new hops stored on its operation and the phase
  (``prepare``: additive, ``acked``/``retire``: switched); ``host_steering``: a host's
  snapshot section (services/desired.py);
- where ports are: ingress and egress on the attachment host, vNICs where their instance
  is (``instance_hosts``: THE one place that says so, two hosts while it migrates);
- hop tags (``chain_hop_tags``): one per hop direction, allocated site-wide, kept while the
  hop exists, released at retire, reused least recently released last;
- the phases: ``prepare_path``, ``switch_path``, ``finish_path`` (and ``instance_moved`` for
  migration), each ONE transaction that bumps exactly the hosts whose flows it changes
  (store/host_versions.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

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
from edgecloud.errors import Conflict, NotFound
from edgecloud.fm import alarming
from edgecloud.services.context import ChainSteer, ServiceContext
from edgecloud.store import vnf_migrations
from edgecloud.store.database import transaction
from edgecloud.store.host_versions import bump
from edgecloud.store.models import (
    Chain,
    ChainHopTag,
    ChainService,
    Stack,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def active(chain: Chain) -> list[ChainService]:
    """The chain's services on its path, in order."""
    return sorted(
        (svc for svc in chain.services if svc.state == "active"), key=lambda svc: svc.position
    )


# where the path runs ---------------------------------------------------------------------------
async def instance_hosts(
    s: AsyncSession, instance_ids: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """{instance id: the hosts its ports are on}: its host, and while a migration of it is
    under way (services/migrations.py) the destination too, whichever copy runs."""
    return await vnf_migrations.hosts_by_instance(s, instance_ids)


def path_hops(chain: Chain, names: Sequence[str]) -> list[Hop]:
    by_name = {svc.name: svc for svc in chain.services}
    services = [
        ServiceHop(by_name[n].instance_id or "", by_name[n].customer_vnic, by_name[n].network_vnic)
        for n in names
    ]
    return hops(Port(name=chain.ingress_port), Port(name=chain.egress_port), services)


async def _where(s: AsyncSession, chain: Chain) -> dict[str, tuple[str, ...]]:
    """Port key -> hosts holding it: ingress and egress on the attachment host, each
    service's vNICs where its instance is (both hosts while it migrates)."""
    ids = [svc.instance_id for svc in chain.services if svc.instance_id]
    return _ports_where(chain, await instance_hosts(s, ids))


def _ports_where(
    chain: Chain, located: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """``_where`` given where the chain's instances are (``instance_hosts``)."""
    where: dict[str, tuple[str, ...]] = {
        chain.ingress_port: (chain.host_id,),
        chain.egress_port: (chain.host_id,),
    }
    for svc in chain.services:
        hosts = located.get(svc.instance_id, ()) if svc.instance_id else ()
        for index in (svc.customer_vnic, svc.network_vnic):
            where[Port(instance_id=svc.instance_id, vnic_index=index).key()] = hosts
    return where


Placement = tuple[dict[str, tuple[str, ...]], dict[str, int]]  # (_where, _tags) of a chain


async def _placement(s: AsyncSession, chain: Chain) -> Placement:
    return await _where(s, chain), await _tags(s, chain.id)


def _loaded_placement(where: dict[str, tuple[str, ...]], chain: Chain) -> Placement:
    """``where`` with the hop tags loaded with the chain (``Chain.hop_tags``): for a session
    that changes no tag of the chain before using them (one query fewer than ``_tags``)."""
    return where, {row.hop: row.tag for row in chain.hop_tags}


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
        return path_hops(chain, [svc.name for svc in active(chain)]), None
    return _hop_tuples(op["old_hops"]), _hop_tuples(op["new_hops"])


def _hop_tuples(raw: Any) -> list[Hop]:
    return [(str(a), str(b)) for a, b in raw]


async def chain_flows(
    s: AsyncSession, chain: Chain, placement: Placement | None = None
) -> dict[str, HostFlows]:
    """{host id: flows} the chain needs right now, by the phase of its change; ``placement``:
    where its ports are and its hop tags, when the caller has them already."""
    where, tags = placement or await _placement(s, chain)
    old, new = _phase_hops(chain)
    before = host_flows(old, where, tags)
    if new is None:
        return before
    after = host_flows(new, where, tags)
    phase = (chain.operation or {}).get("phase")
    return additive(before, after) if phase == "prepare" else switched(before, after)


async def host_steering(s: AsyncSession, host_id: str) -> dict[str, Any]:
    """The steering section of a host's snapshot: its flows of every chain (wire form)."""
    return (await hosts_steering(s, [host_id]))[host_id]


async def hosts_steering(s: AsyncSession, host_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """``host_steering`` of several hosts, every chain planned once, in a fixed number of
    queries whatever the number of chains (the hop tags as loaded with the chains: call it
    in a session that changed none)."""
    steer: dict[str, dict[str, Any]] = {h: {} for h in host_ids}
    chains = list(await s.scalars(select(Chain).order_by(Chain.name)))
    ids = [svc.instance_id for chain in chains for svc in chain.services if svc.instance_id]
    located = await instance_hosts(s, ids)
    for chain in chains:
        try:
            flows = await chain_flows(
                s, chain, _loaded_placement(_ports_where(chain, located), chain)
            )
        except ValueError as exc:  # a crossing hop without a tag: never left so by this module
            log.error("chain %s: %s", chain.name, exc)
            continue
        for host_id, wire in steer.items():
            wire.update(to_wire(flows.get(host_id) or {}))
    return steer


Changes = dict[str, ChainSteer]  # host id -> the chain's flows there before -> after


def _changes(
    versions: Mapping[str, int], before: Mapping[str, HostFlows], after: Mapping[str, HostFlows]
) -> Changes:
    """What each bumped host is told ahead of its snapshot: this chain's flows there before
    and after the phase (computed by it anyway: no store read), at the host's new version."""
    return {
        h: ChainSteer(v, to_wire(before.get(h) or {}), to_wire(after.get(h) or {}))
        for h, v in versions.items()
    }


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
        current = [svc.name for svc in active(chain)]
        pending = [
            svc.name
            for svc in sorted(chain.services, key=lambda svc: svc.position)
            if svc.name in op["pending"]
        ]
        order = next_order(str(op["kind"]), current, pending, op)
        new_hops = [] if op["kind"] == "delete" else path_hops(chain, order)
        await _ensure_tags(s, chain, [*path_hops(chain, current), *new_hops])
        chain.operation = {
            **op,
            "phase": "prepare",
            "healthy_at": healthy_at,
            "next": order,
            "old_hops": [list(h) for h in path_hops(chain, current)],
            "new_hops": [list(h) for h in new_hops],
        }
        after = await chain_flows(s, chain)
        versions = await _publish(s, chain, before, after)
        chain.operation = {**chain.operation, "versions": versions}
    _notify(ctx, _changes(versions, before, after))
    return versions


async def switch_path(ctx: ServiceContext, chain_id: str) -> dict[str, int]:
    """Phase 4: every host re-points the flows whose output changes; the services take their
    new places (leaving ones ``retiring``). Returns the versions to await."""
    started = time.time()
    async with transaction(ctx.sessions) as s:
        chain = await _chain(s, chain_id)
        op: dict[str, Any] = dict(chain.operation or {})
        placement = _loaded_placement(await _where(s, chain), chain)  # a switch moves no
        # port and no tag
        before = await chain_flows(s, chain, placement)
        with s.no_autoflush:  # the chain's rows are written once, at the commit: two
            # reads (the chain, where its instances are), the bump, the commit's writes
            for svc in chain.services:
                if svc.name in op.get("old", []):
                    svc.state = "retiring"
            by_name = {svc.name: svc for svc in chain.services}
            for position, name in enumerate(op["next"]):
                by_name[name].state, by_name[name].position = "active", position
            chain.status = "deleting" if op["kind"] == "delete" else "active"
            chain.operation = {**op, "phase": "acked", "switched_at": started}
            after = await chain_flows(s, chain, placement)
            versions = await _publish(s, chain, before, after)
            chain.operation = {**chain.operation, "versions": versions}
    _notify(ctx, _changes(versions, before, after))
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
        after = {} if deleting else await chain_flows(s, chain)
        versions = await _publish(s, chain, before, after)
        if deleting:
            await s.delete(chain)
    _notify(ctx, _changes(versions, before, after))
    return names


def _notify(ctx: ServiceContext, changes: Changes) -> None:
    """After the commit: each host's change of the chain's flows first (a steering-only
    push, ahead of the snapshot: gateway/steering.py), then its whole desired state, which
    is what it acks."""
    for host_id, change in changes.items():
        ctx.notifier.steering_changed(host_id, change)
    for host_id in changes:
        ctx.notifier.host_changed(host_id)


async def _chain(s: AsyncSession, chain_id: str) -> Chain:
    """The chain with its host, services and hop tags, in ONE query (a phase's statements
    each wait for a turn of the controller's busy event loop: docs/benchmarks.md)."""
    query = (
        select(Chain)
        .where(Chain.id == chain_id)
        .options(joinedload(Chain.services), joinedload(Chain.hop_tags))
    )
    chain = (await s.scalars(query)).unique().one_or_none()
    if chain is None:
        raise NotFound(f"chain {chain_id} is gone")
    return chain


def _describe(op: Mapping[str, Any]) -> str:
    result = op.get("result") or {}
    timing = f"; switchover {result['switchover_ms']} ms" if "switchover_ms" in result else ""
    return f"{op['kind']} done{timing}"
