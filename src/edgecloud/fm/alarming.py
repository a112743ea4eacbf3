"""Raising and clearing alarms, and writing the event log, in the caller's transaction.

An alarm is identified by (alarm_id, entity) while active: raising it again updates the
reason, it is never duplicated; clearing an alarm that is not active is a no-op. Every raise and
clear is also an event. Callers: services (VNF faults), the gateway (host alarms sent by
agents, hosts lost), reconcilers.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.fm.catalogue import alarm_type
from edgecloud.store.models import Alarm, Event, utcnow


async def _active(session: AsyncSession, alarm_id: str, entity: str) -> Alarm | None:
    query = select(Alarm).where(
        Alarm.alarm_id == alarm_id, Alarm.entity == entity, Alarm.state == "active"
    )
    return (await session.scalars(query)).first()


async def raise_alarm(session: AsyncSession, alarm_id: str, entity: str, reason: str) -> Alarm:
    """Raise (or refresh the reason of) the alarm on ``entity``, e.g. ``host=node1``."""
    kind = alarm_type(alarm_id)
    alarm = await _active(session, alarm_id, entity)
    if alarm is not None:
        alarm.reason = reason
        return alarm
    alarm = Alarm(alarm_id=alarm_id, severity=kind.severity, entity=entity, reason=reason)
    session.add(alarm)
    session.add(
        Event(
            kind="alarm-raised",
            alarm_id=alarm_id,
            severity=kind.severity,
            entity=entity,
            message=f"{kind.title}: {reason}",
        )
    )
    return alarm


async def clear_alarm(session: AsyncSession, alarm_id: str, entity: str, reason: str = "") -> bool:
    """Clear the alarm if active; True when something was cleared."""
    alarm = await _active(session, alarm_id, entity)
    if alarm is None:
        return False
    alarm.state, alarm.cleared_at = "cleared", utcnow()
    message = f"{alarm_type(alarm_id).title} cleared" + (f": {reason}" if reason else "")
    session.add(
        Event(
            kind="alarm-cleared", alarm_id=alarm_id, severity="info", entity=entity, message=message
        )
    )
    return True


def log_event(session: AsyncSession, entity: str, message: str, severity: str = "info") -> None:
    """Append a plain event (no alarm) to the log."""
    session.add(Event(kind="log", severity=severity, entity=entity, message=message))
