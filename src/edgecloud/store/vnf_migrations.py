"""Queries about migrations (store/models.py ``Migration``); named so beside store/migrations/,
which holds the schema's Alembic migrations."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import Instance, Migration

ACTIVE = ("queued", "preparing", "migrating")  # the guest may run on either host
MARKED = ("preparing", "migrating")  # both hosts' snapshots carry the migration


async def active(session: AsyncSession) -> list[Migration]:
    """Every migration not finished, oldest first."""
    query = select(Migration).where(Migration.status.in_(ACTIVE)).order_by(Migration.created_at)
    return list((await session.scalars(query)).unique())


async def active_for(session: AsyncSession, instance_id: str) -> Migration | None:
    """The unfinished migration of the instance, or None."""
    query = select(Migration).where(
        Migration.instance_id == instance_id, Migration.status.in_(ACTIVE)
    )
    return (await session.scalars(query)).unique().first()


async def instance_host_ids(session: AsyncSession, instance: Instance) -> tuple[str, ...]:
    """Ids of the hosts the instance's guest may run on now: its host, and while it is being
    migrated (prepared or moving) the destination too."""
    return (await hosts_by_instance(session, [instance.id])).get(instance.id, ())


async def hosts_by_instance(
    session: AsyncSession, instance_ids: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """``instance_host_ids`` of many instances in one query: {instance id: host ids} (an
    instance without a host, or unknown, maps to ())."""
    ids = sorted(set(instance_ids))
    if not ids:
        return {}
    moving = (Migration.instance_id == Instance.id) & Migration.status.in_(MARKED)
    query = (
        select(Instance.id, Instance.host_id, Migration.destination_host_id)
        .outerjoin(Migration, moving)
        .where(Instance.id.in_(ids))
    )
    hosts: dict[str, str | None] = {}
    marked: dict[str, str] = {}
    for instance_id, host_id, destination in await session.execute(query):
        hosts[instance_id] = host_id
        if destination is not None:
            marked[instance_id] = destination
    located: dict[str, tuple[str, ...]] = {}
    for instance_id in ids:
        host = hosts.get(instance_id)
        if host is None:
            located[instance_id] = ()
        elif instance_id in marked:
            located[instance_id] = (host, marked[instance_id])
        else:
            located[instance_id] = (host,)
    return located


async def marked_on(session: AsyncSession, host_id: str) -> list[Migration]:
    """Migrations whose source or destination is the host and that its snapshot shows."""
    query = select(Migration).where(
        Migration.status.in_(MARKED),
        (Migration.source_host_id == host_id) | (Migration.destination_host_id == host_id),
    )
    return list((await session.scalars(query)).unique())


async def recent(session: AsyncSession, limit: int = 100) -> list[Migration]:
    """The latest migrations, newest first."""
    query = select(Migration).order_by(Migration.created_at.desc()).limit(limit)
    return list((await session.scalars(query)).unique())
