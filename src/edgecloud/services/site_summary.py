"""What a site tells central about itself (controller/central_link.py): its inventory counted
and its active alarms by severity, read in one snapshot of the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from edgecloud.fm.catalogue import SEVERITIES
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import reading
from edgecloud.store.models import Alarm, Chain, Host, Instance, Stack


@dataclass(frozen=True)
class SiteSummary:
    hosts: int = 0
    hosts_online: int = 0
    vnfs: int = 0
    vnfs_running: int = 0
    chains: int = 0
    stacks: int = 0
    alarms: dict[str, int] = field(default_factory=dict)  # active, by severity


async def summary(ctx: ServiceContext) -> SiteSummary:
    """The site's summary now."""
    async with reading(ctx.sessions) as s:

        async def count(query: object) -> int:
            return int((await s.scalar(query)) or 0)  # type: ignore[call-overload]

        hosts = await count(select(func.count()).select_from(Host))
        online = await count(
            select(func.count()).select_from(Host).where(Host.availability == "online")
        )
        vnfs = await count(select(func.count()).select_from(Instance))
        running = await count(
            select(func.count()).select_from(Instance).where(Instance.status == "running")
        )
        chains = await count(select(func.count()).select_from(Chain))
        stacks = await count(select(func.count()).select_from(Stack))
        rows = await s.execute(
            select(Alarm.severity, func.count())
            .where(Alarm.state == "active")
            .group_by(Alarm.severity)
        )
        by_severity = dict.fromkeys(SEVERITIES, 0)
        for severity, n in rows.all():
            by_severity[str(severity)] = int(n)
    return SiteSummary(hosts, online, vnfs, running, chains, stacks, by_severity)
