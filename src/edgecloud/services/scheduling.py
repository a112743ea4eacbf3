"""Placing instances: builds the scheduler's snapshot from the store and records the result.

The scheduler itself (edgecloud.scheduler) is a pure function; this module is the only place
that feeds it. Placement is serialised by the caller (one scheduling lock) so two instances
never take the same capacity.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import NoValidHost
from edgecloud.fm import alarming, catalogue
from edgecloud.scheduler.placing import place
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, PlacementRequest
from edgecloud.services.context import ServiceContext
from edgecloud.store import instances, repository, site_locks
from edgecloud.store.database import transaction
from edgecloud.store.host_versions import bump
from edgecloud.store.models import Host, Instance, Vnic, utcnow


async def cluster_snapshot(
    s: AsyncSession, groups: Collection[str] | None = None
) -> ClusterSnapshot:
    """What the scheduler needs to know of every host: at most two queries, plain columns (hosts
    with their usage aggregated in SQL, and where the groups are), no ORM objects.

    ``groups``: the anti-affinity groups the placement names; each host's ``groups`` then
    holds only those (all that ``place`` looks at). None: every group.
    """
    usage = instances.usage_per_host()
    query = (
        select(
            Host.id,
            Host.name,
            Host.state,
            Host.availability,
            Host.vcpus,
            Host.memory_mib,
            Host.disk_gib,
            func.coalesce(usage.c.vcpus, 0),
            func.coalesce(usage.c.memory_mib, 0),
            func.coalesce(usage.c.disk_gib, 0),
        )
        .outerjoin(usage, usage.c.host_id == Host.id)
        .order_by(Host.name)
    )
    present = await instances.groups_by_host(s, groups)
    taken = await _pci_taken(s)
    allowlists = {row[0]: row[1] for row in await s.execute(select(Host.id, Host.pci_devices))}
    views = []
    for row in await s.execute(query):
        host_id, name, state, availability, vcpus, memory_mib, disk_gib, *used = row
        views.append(
            HostView(
                name=name,
                state=state,
                online=availability == "online",
                vcpus=vcpus,
                memory_mib=memory_mib,
                disk_gib=disk_gib,
                used_vcpus=int(used[0]),
                used_memory_mib=int(used[1]),
                used_disk_gib=int(used[2]),
                groups=present.get(host_id, frozenset()),
                free_pci=frozenset(
                    (str(d["address"]), str(d["kind"]))
                    for d in allowlists.get(host_id) or []
                    if str(d["address"]) not in taken.get(host_id, set())
                ),
            )
        )
    return ClusterSnapshot(hosts=tuple(views))


async def schedule(ctx: ServiceContext, instance_id: str) -> str | None:
    """Place one waiting instance; returns the host id it went to (None if not placed)."""
    async with transaction(ctx.sessions) as s:
        await site_locks.hold(s, site_locks.PLACEMENT)  # one placement at a time, site-wide
        instance = await instances.by_id(s, instance_id)
        if instance is None or instance.host_id is not None or instance.desired_state == "deleted":
            return None
        try:
            request = placement_request(instance)
            named = [] if request.anti_affinity_group is None else [request.anti_affinity_group]
            placement = place(await cluster_snapshot(s, named), request)
        except NoValidHost as exc:
            _fault(instance, str(exc))
            await alarming.raise_alarm(
                s, catalogue.VNF_UNSCHEDULABLE, f"vnf={instance.name}", str(exc)
            )
            return None
        host = await repository.by_name(s, Host, placement.host, "host")
        instance.host_id, instance.status, instance.fault = host.id, "building", None
        await bump(s, [host.id])
        await alarming.clear_alarm(s, catalogue.VNF_UNSCHEDULABLE, f"vnf={instance.name}")
        alarming.log_event(s, f"vnf={instance.name}", f"scheduled on host {host.name}")
    return host.id


async def _pci_taken(s: AsyncSession) -> dict[str, set[str]]:
    """Host PCI addresses given to placed instances, per host."""
    query = (
        select(Instance.host_id, Vnic.hostdev_address)
        .join(Vnic, Vnic.instance_id == Instance.id)
        .where(Instance.host_id.is_not(None), Vnic.hostdev_address.is_not(None))
    )
    taken: dict[str, set[str]] = {}
    for host_id, address in await s.execute(query):
        taken.setdefault(str(host_id), set()).add(str(address))
    return taken


def placement_request(instance: Instance) -> PlacementRequest:
    """What placing ``instance`` asks of a host (also checked for a migration's destination
    and for emptying a host, services/maintenance.py)."""
    return PlacementRequest(
        instance=instance.name,
        vcpus=instance.flavor.vcpus,
        memory_mib=instance.flavor.memory_mib,
        disk_gib=instance.flavor.disk_gib,
        anti_affinity_group=instance.anti_affinity_group,
        pci_devices=tuple(
            (v.hostdev_address, v.model) for v in instance.vnics if v.hostdev_address
        ),
    )


def _fault(instance: Instance, message: str) -> None:
    instance.fault, instance.fault_at = message, utcnow()
