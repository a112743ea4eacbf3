"""Host availability: online when its agent says hello, offline when it goes silent.

The gateway calls these on connection events; they write only on transitions (heartbeats are
kept in memory by the gateway, not written per beat).
"""

from __future__ import annotations

from typing import Any

from edgecloud.fm import alarming, catalogue
from edgecloud.services.context import ServiceContext
from edgecloud.services.hosts import requeue_unscheduled
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, utcnow


async def host_online(ctx: ServiceContext, host_id: str, facts: dict[str, Any]) -> Host | None:
    """The agent said hello: record its facts, mark it online, clear 'host offline'."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None:
            return None
        was = host.availability
        host.availability, host.last_seen_at = "online", utcnow()
        host.vcpus = int(facts.get("vcpus", host.vcpus))
        host.memory_mib = int(facts.get("memory_mib", host.memory_mib))
        host.disk_gib = int(facts.get("disk_gib", host.disk_gib))
        host.hypervisor = str(facts.get("hypervisor", host.hypervisor))
        host.facts = {str(k): str(v) for k, v in facts.get("details", {}).items()}
        await alarming.clear_alarm(
            s, catalogue.HOST_OFFLINE, f"host={host.name}", "agent connected"
        )
        if was != "online":
            alarming.log_event(s, f"host={host.name}", "host online")
    if was != "online":
        await requeue_unscheduled(ctx)
    return host


async def hosts_offline(ctx: ServiceContext, host_ids: list[str], reason: str) -> list[str]:
    """Mark hosts offline and raise 'host offline' for each; returns the names changed."""
    changed = []
    async with transaction(ctx.sessions) as s:
        for host_id in host_ids:
            host = await s.get(Host, host_id)
            if host is None or host.availability == "offline":
                continue
            host.availability = "offline"
            await alarming.raise_alarm(s, catalogue.HOST_OFFLINE, f"host={host.name}", reason)
            changed.append(host.name)
    return changed


async def online_host_ids(ctx: ServiceContext) -> list[str]:
    """Hosts the store believes online (checked against live sessions after a restart)."""
    from sqlalchemy import select

    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(select(Host.id).where(Host.availability == "online")))
