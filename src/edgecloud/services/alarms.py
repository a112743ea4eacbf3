"""Reading alarms and the event log (raising and clearing is fm/alarming.py), and bounding
them (fm/pruning.py)."""

from __future__ import annotations

from sqlalchemy import select

from edgecloud.errors import NotFound
from edgecloud.fm import pruning
from edgecloud.fm.pruning import Retention
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Event, utcnow


async def list_alarms(ctx: ServiceContext, include_cleared: bool = False) -> list[Alarm]:
    query = select(Alarm).order_by(Alarm.raised_at.desc())
    if not include_cleared:
        query = query.where(Alarm.state == "active")
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(query))


async def get_alarm(ctx: ServiceContext, alarm_uuid: str) -> Alarm:
    async with transaction(ctx.sessions) as s:
        alarm = await s.get(Alarm, alarm_uuid)
    if alarm is None:
        raise NotFound(f"no alarm with id {alarm_uuid!r}")
    return alarm


async def list_events(ctx: ServiceContext, limit: int = 100) -> list[Event]:
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(select(Event).order_by(Event.id.desc()).limit(limit)))


async def prune(ctx: ServiceContext, keep: Retention) -> tuple[int, int]:
    """Bound the event log and the cleared alarms (fm/pruning.py): (events, alarms) deleted."""
    async with transaction(ctx.sessions) as s:
        return await pruning.prune(s, utcnow(), keep)
