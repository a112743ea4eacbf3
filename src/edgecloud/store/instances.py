"""Queries about VNF instances and what they use."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import Flavor, Instance, Vnic


async def on_host(session: AsyncSession, host_id: str) -> list[Instance]:
    """Every instance placed on the host, by name."""
    query = select(Instance).where(Instance.host_id == host_id).order_by(Instance.name)
    return list((await session.scalars(query)).unique())


async def by_id(session: AsyncSession, instance_id: str) -> Instance | None:
    """The instance with this id, or None."""
    return await session.get(Instance, instance_id)


def usage_per_host() -> Subquery:
    """(host_id, vcpus, memory_mib, disk_gib) used on each host by the instances placed there,
    as a subquery to join (hosts with nothing placed have no row).

    Every placed instance counts, whatever its status, until its row is gone: one marked
    deleted still holds its host's capacity until the agent reports the domain removed.
    Plain columns, no ORM objects: instances are counted per (flavor, host) and the counts
    multiplied by the flavor's size.
    """
    per_flavor = (
        select(
            Instance.flavor_id.label("flavor_id"),
            Instance.host_id.label("host_id"),
            func.count().label("n"),
        )
        # No "host_id IS NOT NULL" here: SQLite would then walk ix_instances_host_id with a
        # table lookup per row, slower than this scan; the unplaced (NULL host) row goes below.
        .group_by(Instance.flavor_id, Instance.host_id)
        .subquery()
    )
    return (
        select(
            per_flavor.c.host_id.label("host_id"),
            func.sum(Flavor.vcpus * per_flavor.c.n).label("vcpus"),
            func.sum(Flavor.memory_mib * per_flavor.c.n).label("memory_mib"),
            func.sum(Flavor.disk_gib * per_flavor.c.n).label("disk_gib"),
        )
        .join(Flavor, per_flavor.c.flavor_id == Flavor.id)
        .group_by(per_flavor.c.host_id)
        .having(per_flavor.c.host_id.is_not(None))
        .subquery()
    )


async def usage_by_host(session: AsyncSession) -> dict[str, tuple[int, int, int]]:
    """(vcpus, memory_mib, disk_gib) used on each host by instances placed there (see
    ``usage_per_host`` for what counts)."""
    usage = usage_per_host()
    query = select(usage.c.host_id, usage.c.vcpus, usage.c.memory_mib, usage.c.disk_gib)
    return {
        str(host_id): (int(vcpus), int(memory_mib), int(disk_gib))
        for host_id, vcpus, memory_mib, disk_gib in await session.execute(query)
    }


async def groups_by_host(
    session: AsyncSession, groups: Collection[str] | None = None
) -> dict[str, frozenset[str]]:
    """Anti-affinity groups present on each host (any status, as in ``usage_per_host``);
    only ``groups`` when given (the ones a placement names), else every group."""
    if groups is not None and not groups:
        return {}
    query = select(Instance.host_id, Instance.anti_affinity_group)
    if groups is None:
        query = query.where(Instance.anti_affinity_group.is_not(None))
    else:
        query = query.where(Instance.anti_affinity_group.in_(sorted(set(groups))))
    found: dict[str, set[str]] = {}
    for host_id, group in await session.execute(query):
        if host_id is not None:  # unplaced: filtered here, not in SQL (see usage_per_host)
            found.setdefault(str(host_id), set()).add(str(group))
    return {host: frozenset(g) for host, g in found.items()}


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
