"""Instance recovery: the VNFs of a host judged failed run again on another host.

The leader's gateway calls ``recover_hosts`` right after it marks hosts offline (never for
hosts lost together with many others: gateway/liveness.py holds those off, one alarm, no
evacuation storm), when the site has host recovery on (``SiteSettings.host_recovery``).
Per failed host, ONE transaction: where each VNF goes is planned with its recovery policy
(scheduler/recovering.py); each recoverable VNF is moved by a ``migrations`` row of kind
``recovery`` committed at once through services/migrations.py ``move_instance`` (the same
move a migration ends with: instance placed on the survivor, both hosts and the hosts of the
chains through it bumped, so the chain steering is planned again). The instance keeps its
identity (vNICs, their order, PCI slots, MACs, fixed IPs, user data, chain positions); the
survivor's agent rebuilds it from its image with a fresh overlay, as after a cold migration.
Policy ``restart``: it stays placed on the failed host and starts there when the host returns;
``none``: it stays and is set stopped. Events say what went where and why; a recoverable VNF
no host can take raises alarm 700.004 (cleared when its host returns).

The failed host must not keep a copy forwarding: its agent fences itself (agent/fencing.py)
before the controller can declare it failed (docs/architecture.md, "Host failure and
recovery", has the timing argument).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.fm import alarming, catalogue
from edgecloud.scheduler.recovering import plan_recovery
from edgecloud.services import migrations, scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store import host_versions, site_locks, vnf_migrations
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, Instance, Migration

log = logging.getLogger(__name__)


async def recover_hosts(ctx: ServiceContext, host_ids: list[str], reason: str) -> list[str]:
    """Recover the VNFs of each failed (offline) host; returns the ids of the recovery
    migrations (done already). ``reason``: why the hosts were judged failed."""
    done: list[str] = []
    for host_id in host_ids:
        done += await recover_host(ctx, host_id, reason)
    return done


async def recover_host(ctx: ServiceContext, host_id: str, reason: str) -> list[str]:
    async with ctx.lock(migrations.LOCK), transaction(ctx.sessions) as s:
        await site_locks.hold(s, site_locks.PLACEMENT)  # one placement at a time, site-wide
        host = await s.get(Host, host_id)
        if host is None or host.availability != "offline":
            return []  # deleted, or back already
        moved = await _recover(s, host, reason)
    for migration in moved:
        for host_ in (migration.source_host_id, migration.destination_host_id):
            ctx.notifier.host_changed(host_)
        for host_ in (migration.progress or {}).get("versions") or {}:
            ctx.notifier.host_changed(host_)
        ctx.notifier.instance_changed(migration.instance_id)
    return [m.id for m in moved]


async def _recover(s: AsyncSession, host: Host, reason: str) -> list[Migration]:
    query = (
        select(Instance)
        .where(Instance.host_id == host.id, Instance.desired_state != "deleted")
        .order_by(Instance.name)
    )
    instances = {i.name: i for i in (await s.scalars(query)).unique()}
    busy = [i for i in instances.values() if await vnf_migrations.active_for(s, i.id)]
    for instance in busy:  # its migration fails on its own (the source does not answer)
        del instances[instance.name]
        alarming.log_event(
            s,
            f"vnf={instance.name}",
            f"not recovered from failed host {host.name}: a migration of it is under way",
            severity="major",
        )
    if not instances:
        alarming.log_event(s, f"host={host.name}", f"host failed ({reason}): no VNF to recover")
        return []
    groups = {i.anti_affinity_group for i in instances.values() if i.anti_affinity_group}
    snapshot = await migrations.with_incoming(s, await scheduling.cluster_snapshot(s, groups))
    candidates = [(scheduling.placement_request(i), i.recovery_policy) for i in instances.values()]
    plan = plan_recovery(snapshot, host.name, candidates)
    moved = [
        await _move(s, instances[name], host, destination, reason)
        for name, destination in plan.moves.items()
    ]
    for name in plan.waiting:
        alarming.log_event(
            s,
            f"vnf={name}",
            f"stays on failed host {host.name} (recovery policy restart): it starts again "
            "there when the host returns",
            severity="major",
        )
    for name in plan.left:
        instances[name].desired_state = "stopped"
        alarming.log_event(
            s,
            f"vnf={name}",
            f"set stopped on failed host {host.name} (recovery policy none): start it when wanted",
            severity="major",
        )
    if plan.left:
        await host_versions.bump(s, [host.id])
    for name, why in plan.failures.items():
        await alarming.raise_alarm(
            s,
            catalogue.VNF_NOT_RECOVERED,
            f"vnf={name}",
            f"its host {host.name} failed ({reason}) and no other host can take it: {why}",
        )
    summary = ", ".join(f"{n} -> {d}" for n, d in plan.moves.items()) or "none"
    alarming.log_event(
        s,
        f"host={host.name}",
        f"host failed ({reason}): recovered {summary}; waiting for the host "
        f"{len(plan.waiting)}, left stopped {len(plan.left)}, not recoverable "
        f"{len(plan.failures)}",
        severity="major",
    )
    log.warning("host %s failed: recovered %s", host.name, summary)
    return moved


async def _move(
    s: AsyncSession, instance: Instance, failed: Host, destination: str, reason: str
) -> Migration:
    target = (await s.scalars(select(Host).where(Host.name == destination))).one()
    migration = Migration(
        instance_id=instance.id,
        instance_name=instance.name,
        source_host_id=failed.id,
        destination_host_id=target.id,
        kind="recovery",
        status="migrating",
        stats={},
        progress={},
    )
    s.add(migration)
    await s.flush()
    await s.refresh(migration)
    instance.power_state, instance.status = None, "building"  # as when first placed
    await migrations.move_instance(
        s,
        migration,
        {},
        f"recovered on {destination} from failed host {failed.name} ({reason}): rebuilt from "
        f"image {instance.image.name}, same vNICs, MACs, PCI slots and addresses",
    )
    return migration


async def clear_not_recovered(s: AsyncSession, host_id: str) -> None:
    """The host is back: its VNFs that could not be recovered start there again."""
    names = await s.scalars(select(Instance.name).where(Instance.host_id == host_id))
    for name in names:
        await alarming.clear_alarm(
            s, catalogue.VNF_NOT_RECOVERED, f"vnf={name}", "its host is back"
        )
