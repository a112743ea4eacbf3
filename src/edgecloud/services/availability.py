"""Host availability: online when its agent says hello, offline when it goes silent.

The gateway calls these on connection events; they write only on transitions (heartbeats are
kept in memory by the gateway, not written per beat). ``session_start`` is the one read a
resuming session needs (certificate check and desired version together); a multi-host loss is
one site alarm (200.020) instead of one 'host offline' per host.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

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
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(select(Host.id).where(Host.availability == "online")))


async def session_start(
    ctx: ServiceContext, host_name: str, serial: int
) -> tuple[str, int, str] | None:
    """(host id, desired version, availability) when ``serial`` is the host's current
    certificate, else None (host deleted or re-enrolled)."""
    async with transaction(ctx.sessions) as s:
        row = (
            await s.execute(
                select(Host.id, Host.desired_version, Host.availability, Host.cert_serial).where(
                    Host.name == host_name
                )
            )
        ).first()
    if row is None or row.cert_serial != str(serial):
        return None
    return str(row.id), int(row.desired_version), str(row.availability)


MASS_LOSS_ENTITY = "site"


async def mass_loss(ctx: ServiceContext, missing: int, total: int, grace: float) -> None:
    """Raise (or refresh) the one 'multiple hosts lost at once' alarm."""
    reason = (
        f"{missing} of {total} hosts lost their connection together; not declaring them "
        f"offline for up to {grace:.0f} s while they come back"
    )
    async with transaction(ctx.sessions) as s:
        await alarming.raise_alarm(s, catalogue.MULTI_HOST_LOSS, MASS_LOSS_ENTITY, reason)


async def mass_loss_over(ctx: ServiceContext, reason: str) -> None:
    async with transaction(ctx.sessions) as s:
        await alarming.clear_alarm(s, catalogue.MULTI_HOST_LOSS, MASS_LOSS_ENTITY, reason)


async def seen(ctx: ServiceContext, when: dict[str, dt.datetime]) -> None:
    """Record the last hello of hosts that resumed (one batched write, not one per host)."""
    async with transaction(ctx.sessions) as s:
        table = cast(Table, Host.__table__)
        statement = (
            update(table)
            .where(table.c.id == bindparam("host"))
            .values(last_seen_at=bindparam("at"))
        )
        connection = await s.connection()
        await connection.execute(statement, [{"host": h, "at": at} for h, at in when.items()])
