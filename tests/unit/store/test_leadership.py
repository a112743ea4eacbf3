"""Leadership's parts in the store: the epoch fence, the lock connection, the change feed's
encoding, the one atomic desired-version bump, and the leadership loop on both stores."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from edgecloud.controller.leading import Leadership
from edgecloud.errors import Deposed
from edgecloud.store import change_feed, site_locks
from edgecloud.store.database import (
    make_engine,
    migrate,
    session_factory,
    sqlite_url,
    transaction,
)
from edgecloud.store.host_versions import bump
from edgecloud.store.leadership import Fence, LockConnection, dsn, epoch_of, fenced_sessions
from edgecloud.store.models import Host


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str = "") -> None:
    """Poll ``check`` until it is true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def engine(tmp_path: Path, db_url: str | None) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def pg_url(db_url: str | None) -> str:
    if db_url is None:
        pytest.skip("the leader lock is PostgreSQL's")
    return db_url


async def add_host(engine: AsyncEngine, name: str = "h1") -> str:
    async with transaction(session_factory(engine)) as s:
        host = Host(name=name)
        s.add(host)
    return host.id


async def versions(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list(await conn.scalars(select(Host.desired_version)))


async def test_a_fenced_write_lands_only_under_the_current_epoch(engine: AsyncEngine) -> None:
    assert await epoch_of(engine) == 0  # no controller on PostgreSQL has led yet
    await add_host(engine)  # epoch 0 is current
    for stale in (Fence(None), Fence(1), Fence(-1)):
        with pytest.raises(Deposed):
            async with transaction(fenced_sessions(engine, stale)) as s:
                await s.execute(update(Host).values(desired_version=99))
    assert await versions(engine) == [1]


async def test_concurrent_bumps_each_get_their_own_version(engine: AsyncEngine) -> None:
    host_id = await add_host(engine)
    sessions = fenced_sessions(engine, Fence(0))

    async def one() -> int:
        async with transaction(sessions) as s:
            return (await bump(s, [host_id, host_id]))[host_id]

    got = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(got) == list(range(2, 10))  # from 1: eight bumps, no two alike, none lost
    assert await versions(engine) == [9]


def test_change_notices_round_trip_in_bounded_payloads() -> None:
    notices = [("instance_changed", f"{i:036d}") for i in range(500)]
    payloads = change_feed.encode(notices)
    assert len(payloads) > 1
    assert all(len(p.encode()) < change_feed.MAX_PAYLOAD for p in payloads)
    assert [n for p in payloads for n in change_feed.decode(p)] == notices
    assert change_feed.decode("garbage\nhost_changed h1\n") == [("host_changed", "h1")]


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def gain(self, epoch: int) -> None:
        self.events.append(f"gain {epoch}")

    async def loss(self) -> None:
        self.events.append("loss")


async def test_sqlite_controller_always_leads_at_epoch_1(tmp_path: Path) -> None:
    record = Recorder()
    leadership = Leadership(sqlite_url(tmp_path), record.gain, record.loss)
    await leadership.start()
    assert leadership.leading and leadership.epoch == 1
    await leadership.close()
    assert not leadership.leading
    assert record.events == ["gain 1", "loss"]


async def test_one_holder_at_a_time_and_a_cut_lock_fences_at_once(
    pg_url: str, engine: AsyncEngine
) -> None:
    first, second = Recorder(), Recorder()
    a = Leadership(pg_url, first.gain, first.loss, holder="a", retry=0.05)
    b = Leadership(pg_url, second.gain, second.loss, holder="b", retry=0.05)
    await a.start()
    await b.start()
    try:
        assert a.leading and not b.leading
        old = a.epoch
        assert old is not None and await epoch_of(engine) == old
        conn = await asyncpg.connect(dsn(pg_url))
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", a.lock_backend_pid)
        finally:
            await conn.close()
        await eventually(lambda: asyncio.sleep(0, not a.leading), 5, "a fenced")
        await eventually(lambda: asyncio.sleep(0, b.leading), 5, "b leads")
        assert b.epoch == old + 1
        await eventually(lambda: asyncio.sleep(0, first.events == [f"gain {old}", "loss"]), 5)
        assert second.events == [f"gain {old + 1}"]
        assert not a.leading  # a asks again, but b holds the lock
    finally:
        await a.close()
        await b.close()


async def test_a_new_epoch_waits_for_the_old_leaders_open_transaction_then_fences(
    pg_url: str, engine: AsyncEngine
) -> None:
    """The fence's ordering argument (store/leadership.py): a transaction that checked its
    epoch before the bump commits before it; one that begins after it fails."""
    lost: list[bool] = []
    lock = await LockConnection.open(pg_url, "new", lambda: lost.append(True))
    try:
        assert await lock.try_lock()
        old = await lock.take_epoch("old")
        await add_host(engine)
        stale = fenced_sessions(engine, Fence(old))
        async with transaction(stale) as s:
            await s.execute(update(Host).values(desired_version=5))  # epoch checked: FOR SHARE
            taking = asyncio.create_task(lock.take_epoch("new"))
            await eventually(
                lambda: lock_waits(pg_url, "INSERT INTO leadership%"), 5, "the bump waits"
            )
            assert not taking.done()
        assert await taking == old + 1  # the old leader's transaction committed first
        assert await versions(engine) == [5]
        with pytest.raises(Deposed):
            async with transaction(stale) as s:
                await s.execute(update(Host).values(desired_version=6))
        assert await versions(engine) == [5]
        assert not lost
    finally:
        await lock.close()


HOLDER = """
import asyncio, sys
import asyncpg
from edgecloud.store.leadership import LockConnection

async def main():
    lock = await LockConnection.open(sys.argv[1], "doomed", lambda: None)
    assert await lock.try_lock()
    await lock.take_epoch("doomed")
    print("locked", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_leader_process_frees_the_lock_at_once(
    pg_url: str, engine: AsyncEngine, record_property: Callable[[str, object], None]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, pg_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"locked\n"
        doomed = await epoch_of(engine)
        record = Recorder()
        follower = Leadership(pg_url, record.gain, record.loss, holder="survivor")
        await follower.start()
        try:
            assert not follower.leading
            killed = time.monotonic()
            proc.kill()  # SIGKILL: no goodbye to the server
            await eventually(lambda: asyncio.sleep(0, follower.leading), 5, "the survivor leads")
            took = time.monotonic() - killed
            record_property("leader after SIGKILL of the lock holder's process, s", round(took, 3))
            assert follower.epoch == doomed + 1
            assert took < 2.0
        finally:
            await follower.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_controllers_starting_together_migrate_one_at_a_time(pg_url: str) -> None:
    engines = [make_engine(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e) for e in engines))  # no duplicate-table errors
        assert await epoch_of(engines[0]) == 0
    finally:
        for e in engines:
            await e.dispose()


async def test_change_notices_reach_the_other_process_and_survive_a_lost_connection(
    pg_url: str,
) -> None:
    got: list[tuple[str, str]] = []
    resumed: list[bool] = []
    sender = change_feed.ChangeFeed(pg_url, lambda k, v: got.append(("sender", v)), lambda: None)
    receiver = change_feed.ChangeFeed(
        pg_url, lambda k, v: got.append((k, v)), lambda: resumed.append(True)
    )
    await sender.start()
    await receiver.start()
    try:
        sender.publish("instance_changed", "i1")
        sender.publish("instance_changed", "i1")  # de-duplicated while queued
        sender.publish("host_changed", "h1")
        await eventually(lambda: asyncio.sleep(0, len(got) >= 2), 5, "notices delivered")
        assert got == [("instance_changed", "i1"), ("host_changed", "h1")]  # not to the sender
        conn = await asyncpg.connect(dsn(pg_url))
        try:
            pid = receiver._conn.get_server_pid()
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        await eventually(lambda: asyncio.sleep(0, bool(resumed)), 5, "receiver reconnected")
        sender.publish("chain_changed", "c1")
        await eventually(lambda: asyncio.sleep(0, len(got) >= 3), 5, "delivered after it")
        assert got[2] == ("chain_changed", "c1")
    finally:
        await sender.close()
        await receiver.close()


async def test_placements_take_turns_site_wide(pg_url: str, engine: AsyncEngine) -> None:
    """Two engines are two controller processes: the second placement waits for the first."""
    other = make_engine(pg_url)
    try:
        async with transaction(session_factory(engine)) as first:
            await site_locks.hold(first, site_locks.PLACEMENT)

            async def second() -> None:
                async with transaction(session_factory(other)) as s:
                    await site_locks.hold(s, site_locks.PLACEMENT)

            waiting = asyncio.create_task(second())
            await eventually(lambda: lock_waits(pg_url, "%pg_advisory_xact_lock%"), 5, "waits")
            assert not waiting.done()
        await asyncio.wait_for(waiting, 5)  # the first committed: the second goes on
    finally:
        await other.dispose()


async def lock_waits(pg_url: str, query: str) -> bool:
    conn = await asyncpg.connect(dsn(pg_url))
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE $1",
                query,
            )
        )
    finally:
        await conn.close()
