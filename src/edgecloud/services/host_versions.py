"""Hosts' desired versions: the one way to say "this host's desired state changed".

A host's ``desired_version`` is the version of its snapshot (services/desired.py); it is
bumped in the same transaction as the change, so an agent that acked it has applied the
change. ``bump`` is one UPDATE ... RETURNING (no read-modify-write, no second query);
callers: services/chain_paths.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import Host


async def bump(session: AsyncSession, host_ids: Iterable[str]) -> dict[str, int]:
    """Bump the desired version of each host; returns {host id: its new version}."""
    ids = sorted(set(host_ids))
    if not ids:
        return {}
    rows = await session.execute(
        update(Host)
        .where(Host.id.in_(ids))
        .values(desired_version=Host.desired_version + 1)
        .returning(Host.id, Host.desired_version)  # one round trip (SQLite >= 3.35, PostgreSQL)
        .execution_options(synchronize_session="fetch")
    )
    return {str(host_id): int(version) for host_id, version in rows}
