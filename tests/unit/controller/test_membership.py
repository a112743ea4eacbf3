"""Membership's refresh of this controller's row: every second on a store other controllers
can share (PostgreSQL), once at start on one they cannot (SQLite), where the answering
controller still lists itself as up (services/controllers.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.controller import membership
from edgecloud.controller.membership import Membership
from edgecloud.services import controllers as listing
from edgecloud.services.context import ServiceContext, SiteSettings
from edgecloud.store import controllers
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import ControllerProcess, utcnow

ME = "box:1/abcdef"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Sweeps:
    """The relay's sweep, counted: a sweep runs every SWEEP_EVERY rounds of the loop."""

    def __init__(self) -> None:
        self.done = 0

    async def sweep(self) -> int:
        self.done += 1
        return 0


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ServiceContext]:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    yield ServiceContext(sessions=session_factory(engine), settings=SiteSettings(controller_id=ME))
    await engine.dispose()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fast rounds (sweep every 3), and every write of the row recorded."""
    monkeypatch.setattr(membership, "EVERY", 0.01)
    monkeypatch.setattr(membership, "SWEEP_EVERY", 3)
    seen: list[str] = []
    real = controllers.seen

    async def counted(s: AsyncSession, controller_id: str, *args: Any) -> None:
        seen.append(controller_id)
        await real(s, controller_id, *args)

    monkeypatch.setattr(controllers, "seen", counted)
    return seen


async def rounds(ctx: ServiceContext, shared: bool) -> None:
    """Start a Membership, let its loop run two sweeps (six rounds), stop it."""
    sweeps = Sweeps()
    member = Membership(ctx, ME, "https://127.0.0.1:1", "127.0.0.1:2", sweeps, shared=shared)  # type: ignore[arg-type]
    await member.start()
    try:

        async def swept_twice() -> bool:
            return sweeps.done >= 2

        await eventually(swept_twice, 10, "two sweeps of relayed requests")
    finally:
        await member.stop()


async def test_one_controller_on_sqlite_writes_its_row_once(
    ctx: ServiceContext, writes: list[str]
) -> None:
    await rounds(ctx, shared=False)
    assert writes == [ME]  # at start only; the sweeps still ran


async def test_a_shared_store_gets_the_row_refreshed_every_round(
    ctx: ServiceContext, writes: list[str]
) -> None:
    await rounds(ctx, shared=True)
    assert len(writes) >= 6


async def test_the_answering_controller_is_up_however_old_its_row(
    ctx: ServiceContext,
) -> None:
    old = utcnow() - dt.timedelta(seconds=controllers.UP_WITHIN * 10)
    async with transaction(ctx.sessions) as s:
        await controllers.seen(s, ME, "https://127.0.0.1:1", "127.0.0.1:2")
        await controllers.seen(s, "other:2/123456", "https://127.0.0.1:3", "127.0.0.1:4")
        await s.execute(update(ControllerProcess).values(seen_at=old))
    found = await listing.listing(ctx)
    assert {c["id"]: c["up"] for c in found["controllers"]} == {
        ME: True,
        "other:2/123456": False,  # another's old row still says it is down
    }
    assert found["leader"]["id"] == ME and found["leader"]["up"]
