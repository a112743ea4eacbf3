"""Placing instances: builds the scheduler's snapshot from the store and records the result.

The scheduler itself (edgecloud.scheduler) is a pure function; this module is the only place
that feeds it. Placement is serialised by the caller (one scheduling lock) so two instances
never take the same capacity.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import NoValidHost
from edgecloud.fm import alarming, catalogue
from edgecloud.scheduler.placing import place
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, PlacementRequest
from edgecloud.services.context import ServiceContext
from edgecloud.store import instances, repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, Instance, utcnow


async def cluster_snapshot(s: AsyncSession) -> ClusterSnapshot:
    """What the scheduler needs to know of every host."""
    usage = await instances.usage_by_host(s)
    groups = await instances.groups_by_host(s)
    views = []
    for host in await repository.all_of(s, Host):
        used = usage.get(host.id, (0, 0, 0))
        views.append(
            HostView(
                name=host.name,
                state=host.state,
                online=host.availability == "online",
                vcpus=host.vcpus,
                memory_mib=host.memory_mib,
                disk_gib=host.disk_gib,
                used_vcpus=used[0],
                used_memory_mib=used[1],
                used_disk_gib=used[2],
                groups=groups.get(host.id, frozenset()),
            )
        )
    return ClusterSnapshot(hosts=tuple(views))


async def schedule(ctx: ServiceContext, instance_id: str) -> str | None:
    """Place one waiting instance; returns the host id it went to (None if not placed)."""
    async with transaction(ctx.sessions) as s:
        instance = await instances.by_id(s, instance_id)
        if instance is None or instance.host_id is not None or instance.desired_state == "deleted":
            return None
        try:
            placement = place(await cluster_snapshot(s), _request(instance))
        except NoValidHost as exc:
            _fault(instance, str(exc))
            await alarming.raise_alarm(
                s, catalogue.VNF_UNSCHEDULABLE, f"vnf={instance.name}", str(exc)
            )
            return None
        host = await repository.by_name(s, Host, placement.host, "host")
        instance.host_id, instance.status, instance.fault = host.id, "building", None
        host.desired_version += 1
        await alarming.clear_alarm(s, catalogue.VNF_UNSCHEDULABLE, f"vnf={instance.name}")
        alarming.log_event(s, f"vnf={instance.name}", f"scheduled on host {host.name}")
    return host.id


def _request(instance: Instance) -> PlacementRequest:
    return PlacementRequest(
        instance=instance.name,
        vcpus=instance.flavor.vcpus,
        memory_mib=instance.flavor.memory_mib,
        disk_gib=instance.flavor.disk_gib,
        anti_affinity_group=instance.anti_affinity_group,
    )


def _fault(instance: Instance, message: str) -> None:
    instance.fault, instance.fault_at = message, utcnow()
