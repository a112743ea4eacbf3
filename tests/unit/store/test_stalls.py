"""Every PostgreSQL connection of the store fails within STALL_LIMIT when its server stops
acknowledging (store/stalls.py): the pool's, the change feed's and the leader lock's."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from sqlalchemy import text

from edgecloud.store import stalls
from edgecloud.store.change_feed import ChangeFeed
from edgecloud.store.database import make_engine
from edgecloud.store.leadership import LockConnection


@pytest.fixture
def pg_url(db_url: str | None) -> str:
    if db_url is None:
        pytest.skip("PostgreSQL only")
    return db_url


def _limit_ms(conn: Any) -> int:
    sock = conn._transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_TCP, stalls.TCP_USER_TIMEOUT))


async def test_pool_feed_and_lock_connections_give_up_on_a_silent_server(pg_url: str) -> None:
    want = int(stalls.STALL_LIMIT * 1000)
    engine = make_engine(pg_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            raw = await conn.get_raw_connection()
            assert _limit_ms(raw.driver_connection) == want
    finally:
        await engine.dispose()
    feed = ChangeFeed(pg_url, lambda _k, _v: None, lambda: None)
    await feed.start()
    try:
        assert _limit_ms(feed._conn) == want
    finally:
        await feed.close()
    lock = await LockConnection.open(pg_url, "test", lambda: None)
    try:
        assert _limit_ms(lock._conn) == want
    finally:
        await lock.close()
