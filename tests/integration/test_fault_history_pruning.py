"""The fault history is bounded (fm/pruning.py): events and cleared alarms pruned by age and by
count, active alarms never; on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.fm.pruning import Retention
from edgecloud.services import alarms
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import Alarm, Event, utcnow


@pytest.fixture
async def sessions(
    tmp_path: Path, db_url: str | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    await migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_events_and_cleared_alarms_are_pruned_by_age_and_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    old = now - dt.timedelta(days=40)
    async with transaction(sessions) as s:
        for i in range(30):
            s.add(Event(at=old if i < 10 else now, kind="log", entity=f"e{i}", message="m"))
        for i in range(12):
            when = old if i < 4 else now - dt.timedelta(minutes=i)
            s.add(
                Alarm(
                    alarm_id="200.004",
                    severity="major",
                    entity=f"host=h{i}",
                    reason="r",
                    state="cleared",
                    cleared_at=when,
                    raised_at=when,
                )
            )
        s.add(
            Alarm(alarm_id="200.004", severity="major", entity="host=a", reason="r", raised_at=old)
        )
    keep = Retention(max_age=dt.timedelta(days=30), max_events=15, max_cleared=5)
    events, cleared = await alarms.prune(ServiceContext(sessions), keep)
    async with transaction(sessions) as s:
        left = list(await s.scalars(select(Event.entity).order_by(Event.id)))
        states = dict(
            (await s.execute(select(Alarm.state, func.count()).group_by(Alarm.state))).all()
        )
        kept = set(await s.scalars(select(Alarm.entity).where(Alarm.state == "cleared")))
    assert left == [f"e{i}" for i in range(15, 30)]  # the newest 15 of the 20 young ones
    assert events == 15
    assert states == {"active": 1, "cleared": 5}  # the old active alarm stays
    assert kept == {f"host=h{i}" for i in range(4, 9)}  # the 5 most recently cleared
    assert cleared == 7
    assert await alarms.prune(ServiceContext(sessions), keep) == (0, 0)
