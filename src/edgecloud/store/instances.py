"""Queries about VNF instances and what they use."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import Flavor, Instance, Vnic


async def on_host(session: AsyncSession, host_id: str) -> list[Instance]:
    """Every instance placed on the host, by name."""
    query = select(Instance).where(Instance.host_id == host_id).order_by(Instance.name)
    return list((await session.scalars(query)).unique())


async def by_id(session: AsyncSession, instance_id: str) -> Instance | None:
    """The instance with this id, or None."""
    return await session.get(Instance, instance_id)


async def usage_by_host(session: AsyncSession) -> dict[str, tuple[int, int, int]]:
    """(vcpus, memory_mib, disk_gib) used on each host by instances placed there."""
    query = (
        select(
            Instance.host_id,
            func.sum(Flavor.vcpus),
            func.sum(Flavor.memory_mib),
            func.sum(Flavor.disk_gib),
        )
        .join(Flavor, Instance.flavor_id == Flavor.id)
        .where(Instance.host_id.is_not(None))
        .group_by(Instance.host_id)
    )
    return {
        str(row[0]): (int(row[1]), int(row[2]), int(row[3])) for row in await session.execute(query)
    }


async def groups_by_host(session: AsyncSession) -> dict[str, frozenset[str]]:
    """Anti-affinity groups present on each host."""
    query = select(Instance.host_id, Instance.anti_affinity_group).where(
        Instance.host_id.is_not(None), Instance.anti_affinity_group.is_not(None)
    )
    groups: dict[str, set[str]] = {}
    for host_id, group in await session.execute(query):
        groups.setdefault(str(host_id), set()).add(str(group))
    return {host: frozenset(g) for host, g in groups.items()}


async def macs_in_use(session: AsyncSession, macs: list[str]) -> set[str]:
    """Which of ``macs`` already belong to a vNIC."""
    if not macs:
        return set()
    return set(await session.scalars(select(Vnic.mac).where(Vnic.mac.in_(macs))))


async def waiting_for_host(session: AsyncSession) -> list[str]:
    """Ids of instances still to be scheduled."""
    query = select(Instance.id).where(
        Instance.host_id.is_(None), Instance.desired_state != "deleted"
    )
    return list(await session.scalars(query))


async def network_users(session: AsyncSession, network_id: str) -> list[str]:
    """Names of the instances with a vNIC on the network."""
    query = select(Instance.name).join(Vnic).where(Vnic.network_id == network_id)
    return list(await session.scalars(query))
