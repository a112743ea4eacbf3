"""Host availability: online when its agent says hello, offline when it goes silent.

The gateway calls these on connection events; they write only on transitions (heartbeats are
kept in memory by the gateway, not written per beat). ``session_starts`` is the one read a
resuming session needs (certificate check and desired version together) and ``hosts_online``
records hellos; both take many hosts at once, so the gateway coalesces a storm of hellos into
a few transactions (gateway/batching.py). A multi-host loss is one site alarm (200.020) instead
of one 'host offline' per host.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from edgecloud.fm import alarming, catalogue
from edgecloud.pci import PCI_ADDRESS, PCI_KINDS
from edgecloud.services import recovery
from edgecloud.services.context import ServiceContext
from edgecloud.services.hosts import requeue_unscheduled
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Host, utcnow


@dataclass(frozen=True)
class Greeting:
    """What a hello says of its host: the agent's facts, its release and the protocol
    version its session speaks (negotiated by the gateway)."""

    facts: dict[str, Any] = field(default_factory=dict)
    release: str | None = None
    protocol: int | None = None


async def hosts_online(ctx: ServiceContext, greetings: dict[str, Greeting]) -> list[str]:
    """Agents said hello: record each host's facts, release and protocol, mark it online,
    clear its 'host offline' alarm, in one transaction; returns the names of the hosts that
    were not online before."""
    came_online: list[str] = []
    now = utcnow()
    async with transaction(ctx.sessions) as s:
        found = await s.scalars(select(Host).where(Host.id.in_(list(greetings))))
        hosts = {f"host={h.name}": h for h in found}
        for host in hosts.values():
            if host.availability != "online":
                came_online.append(host.name)
            host.availability, host.last_seen_at = "online", now
            _record(host, greetings[host.id])
        lost = await s.scalars(
            select(Alarm.entity).where(
                Alarm.alarm_id == catalogue.HOST_OFFLINE,
                Alarm.state == "active",
                Alarm.entity.in_(list(hosts)),
            )
        )
        for entity in set(lost):
            await alarming.clear_alarm(s, catalogue.HOST_OFFLINE, entity, "agent connected")
        for name in came_online:
            alarming.log_event(s, f"host={name}", "host online")
            await recovery.clear_not_recovered(s, hosts[f"host={name}"].id)
    if came_online:
        await requeue_unscheduled(ctx)
    return came_online


def _record(host: Host, greeting: Greeting) -> None:
    """Set what changed only (an unchanged host is not written)."""
    facts = greeting.facts
    values = {
        "release": greeting.release,
        "protocol": greeting.protocol,
        "vcpus": int(facts.get("vcpus", host.vcpus)),
        "memory_mib": int(facts.get("memory_mib", host.memory_mib)),
        "disk_gib": int(facts.get("disk_gib", host.disk_gib)),
        "hypervisor": str(facts.get("hypervisor", host.hypervisor)),
        "facts": {str(k): str(v) for k, v in facts.get("details", {}).items()},
        "pci_devices": _pci_devices(facts.get("pci_devices")),
    }
    if facts.get("address"):  # the node's internal address (agent --address)
        values["address"] = str(facts["address"])
    for name, value in values.items():
        if getattr(host, name) != value:
            setattr(host, name, value)


def _pci_devices(reported: Any) -> list[dict[str, str]]:
    """The node's PCI allowlist; entries that are not well formed are left out."""
    if not isinstance(reported, list):
        return []
    return [
        {"address": d["address"], "kind": d["kind"]}
        for d in reported
        if isinstance(d, dict)
        and isinstance(d.get("address"), str)
        and PCI_ADDRESS.match(d["address"])
        and d.get("kind") in PCI_KINDS
    ]


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
    return (await session_starts(ctx, [(host_name, serial)])).get((host_name, serial))


async def session_starts(
    ctx: ServiceContext, wanted: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[str, int, str] | None]:
    """``session_start`` for many (host name, certificate serial) pairs in one read."""
    async with transaction(ctx.sessions) as s:
        rows = await s.execute(
            select(
                Host.id, Host.name, Host.desired_version, Host.availability, Host.cert_serial
            ).where(Host.name.in_({name for name, _ in wanted}))
        )
        by_name = {row.name: row for row in rows}
    out: dict[tuple[str, int], tuple[str, int, str] | None] = {}
    for name, serial in wanted:
        row = by_name.get(name)
        if row is None or row.cert_serial != str(serial):
            out[(name, serial)] = None
        else:
            out[(name, serial)] = (str(row.id), int(row.desired_version), str(row.availability))
    return out


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
