"""Bounding the fault history: events and cleared alarms pruned by age and by count.

The event log and cleared alarms only grow (every raise and clear is an event; a flapping link
makes thousands a day), so both are bounded twice: nothing older than ``max_age`` is kept, and
of what is younger only the newest ``max_events`` events and ``max_cleared`` cleared alarms.
Active alarms are never pruned. ``prune`` runs in the caller's transaction; the controller runs
it every ``Retention.period`` seconds (controller/housekeeping.py, via services/alarms.py).
Defaults: 30 days, 100,000 events, 10,000 cleared alarms (a few tens of MB at most).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Delete, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import Alarm, Event


@dataclass(frozen=True)
class Retention:
    max_age: dt.timedelta = dt.timedelta(days=30)
    max_events: int = 100_000
    max_cleared: int = 10_000
    period: float = 3600.0


async def prune(session: AsyncSession, now: dt.datetime, keep: Retention) -> tuple[int, int]:
    """Delete what ``keep`` does not retain; returns (events, cleared alarms) deleted."""
    cutoff = now - keep.max_age
    events = await _rowcount(session, delete(Event).where(Event.at < cutoff))
    newest = await session.scalar(select(func.max(Event.id)))
    if newest is not None and newest > keep.max_events:
        events += await _rowcount(
            session, delete(Event).where(Event.id <= newest - keep.max_events)
        )
    cleared = Alarm.state == "cleared"
    alarms = await _rowcount(session, delete(Alarm).where(cleared, Alarm.cleared_at < cutoff))
    oldest_kept = await session.scalar(
        select(Alarm.cleared_at)
        .where(cleared)
        .order_by(Alarm.cleared_at.desc())
        .offset(keep.max_cleared - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        alarms += await _rowcount(
            session, delete(Alarm).where(cleared, Alarm.cleared_at < oldest_kept)
        )
    return events, alarms


async def _rowcount(session: AsyncSession, statement: Delete) -> int:
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]  # a DML result has one
