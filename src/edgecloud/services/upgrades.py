"""Upgrades (issue 12): `upgrade check` gathers the site's facts from the store in one read
and hands them to the pure checks (upgrades/readiness.py) and to the planner of the
upgrade's order (upgrades/batching.py). Nothing is changed.

Neighbours: api/routers/upgrades.py, upgrades/readiness.py, upgrades/batching.py,
upgrades/releases.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import InvalidInput
from edgecloud.services import maintenance, scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers, repository, vnf_migrations
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Chain, Host, Instance, SoftwarePackage, utcnow
from edgecloud.upgrades import batching, readiness, releases


@dataclass(frozen=True)
class UpgradeCheck:
    assessment: readiness.Assessment
    plan: batching.Plan


async def check(
    ctx: ServiceContext, to: str, reboot: bool = False, max_parallel: int = 1
) -> UpgradeCheck:
    """Whether the site can upgrade to release ``to`` (InvalidInput when it is no release),
    and in what order it would (hosts ``max_parallel`` at a time); ``reboot``: the release
    reboots hosts, so each must be emptied by live migration."""
    try:
        releases.parse(to)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    if max_parallel < 1:
        raise InvalidInput(f"max_parallel must be at least 1, not {max_parallel}")
    site, loads, leader = await facts(ctx)
    order = batching.plan([c.id for c in site.controllers], leader, loads, max_parallel)
    return UpgradeCheck(readiness.assess(site, to, reboot), order)


async def facts(
    ctx: ServiceContext,
) -> tuple[readiness.SiteFacts, list[batching.HostLoad], str | None]:
    """The site as the checks and the planner see it, read in one transaction, and which
    controller leads."""
    now = utcnow()
    async with transaction(ctx.sessions) as s:
        rows = await controllers.all_known(s)
        lead = await controllers.leadership(s)
        leader = lead.holder if lead is not None and lead.epoch > 0 else None
        if leader is None:  # one controller (SQLite): older rows are ghosts
            rows = [r for r in rows if r.id == ctx.settings.controller_id]
            leader = ctx.settings.controller_id
        known = [
            readiness.ControllerFacts(
                r.id, r.release, r.id == ctx.settings.controller_id or controllers.is_up(r, now)
            )
            for r in rows
        ]
        hosts, host_rows = [], await repository.all_of(s, Host)
        snapshot = await scheduling.cluster_snapshot(s)  # once, for every host's evacuation plan
        every = [i for i in await repository.all_of(s, Instance) if i.desired_state != "deleted"]
        by_host: dict[str | None, list[Instance]] = {}
        for instance in every:
            by_host.setdefault(instance.host_id, []).append(instance)
        for host in host_rows:
            placed = by_host.get(host.id, [])
            hosts.append(
                readiness.HostFacts(
                    name=host.name,
                    state=host.state,
                    availability=host.availability,
                    release=host.release,
                    connected=host.protocol is not None,
                    evacuating=maintenance.evacuating(host),
                    cannot_empty=(
                        await maintenance.why_not_emptied(s, host, placed, snapshot)
                        if placed
                        else None
                    ),
                    vnfs=len(placed),
                )
            )
        alarms = await repository.all_of(s, Alarm, Alarm.raised_at)
        moving = await vnf_migrations.active(s)
        packages = list(await s.scalars(select(SoftwarePackage)))
        loads = await _loads(s, host_rows, every)
    site = readiness.SiteFacts(
        controllers=tuple(known),
        hosts=tuple(hosts),
        alarms=tuple(
            readiness.AlarmFacts(a.alarm_id, a.severity, a.entity)
            for a in alarms
            if a.state == "active"
        ),
        migrating=tuple(m.instance_name for m in moving),
        packages=tuple(
            readiness.PackageFacts(p.release, p.kind, p.applies_to, p.reboot_required)
            for p in packages
        ),
    )
    return site, loads, leader


async def _loads(
    s: AsyncSession, hosts: list[Host], placed: list[Instance]
) -> list[batching.HostLoad]:
    """Each host's anti-affinity groups and chains (its ingress or a service's VNF on it)."""
    names = {h.id: h.name for h in hosts}
    where = {i.id: names[i.host_id] for i in placed if i.host_id in names}
    groups: dict[str, set[str]] = {}
    for instance in placed:
        if instance.id in where and instance.anti_affinity_group:
            groups.setdefault(where[instance.id], set()).add(instance.anti_affinity_group)
    chains: dict[str, set[str]] = {}
    for chain in await repository.all_of(s, Chain):
        on = {names[chain.host_id]} | {
            where[sv.instance_id] for sv in chain.services if sv.instance_id in where
        }
        for name in on:
            chains.setdefault(name, set()).add(chain.name)
    return [
        batching.HostLoad(
            h.name, frozenset(groups.get(h.name, ())), frozenset(chains.get(h.name, ()))
        )
        for h in hosts
    ]
