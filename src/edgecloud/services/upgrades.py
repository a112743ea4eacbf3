"""Upgrades (issue 12): `upgrade check` gathers the site's facts from the store in one read
and hands them to the pure checks (upgrades/readiness.py). Nothing is changed.

Neighbours: api/routers/upgrades.py, upgrades/readiness.py, upgrades/releases.py.
"""

from __future__ import annotations

from edgecloud.errors import InvalidInput
from edgecloud.services import maintenance
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers, repository, vnf_migrations
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Host, utcnow
from edgecloud.upgrades import readiness, releases


async def check(ctx: ServiceContext, to: str, reboot: bool = False) -> readiness.Assessment:
    """Whether the site can upgrade to release ``to`` (InvalidInput when it is no release);
    ``reboot``: the release reboots hosts, so each must be emptied by live migration."""
    try:
        releases.parse(to)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return readiness.assess(await facts(ctx), to, reboot)


async def facts(ctx: ServiceContext) -> readiness.SiteFacts:
    """The site as the checks see it, read in one transaction."""
    now = utcnow()
    async with transaction(ctx.sessions) as s:
        rows = await controllers.all_known(s)
        lead = await controllers.leadership(s)
        if lead is None or lead.epoch == 0:  # one controller (SQLite): older rows are ghosts
            rows = [r for r in rows if r.id == ctx.settings.controller_id]
        known = [
            readiness.ControllerFacts(
                r.id, r.release, r.id == ctx.settings.controller_id or controllers.is_up(r, now)
            )
            for r in rows
        ]
        hosts = []
        for host in await repository.all_of(s, Host):
            placed = await maintenance.placed_on(s, host)
            hosts.append(
                readiness.HostFacts(
                    name=host.name,
                    state=host.state,
                    availability=host.availability,
                    release=host.release,
                    connected=host.protocol is not None,
                    evacuating=(host.maintenance or {}).get("status") == maintenance.EVACUATING,
                    cannot_empty=(
                        await maintenance.why_not_emptied(s, host, placed) if placed else None
                    ),
                    vnfs=len(placed),
                )
            )
        alarms = await repository.all_of(s, Alarm, Alarm.raised_at)
        moving = await vnf_migrations.active(s)
    return readiness.SiteFacts(
        controllers=tuple(known),
        hosts=tuple(hosts),
        alarms=tuple(
            readiness.AlarmFacts(a.alarm_id, a.severity, a.entity)
            for a in alarms
            if a.state == "active"
        ),
        migrating=tuple(m.instance_name for m in moving),
    )
