"""Leadership in the store: the lock that makes one controller the site's leader, and the
fencing epoch every leader-only write checks.

The engine is PostgreSQL's, not ours: a session advisory lock (``pg_try_advisory_lock``) held
on one dedicated connection (``LockConnection``) for the whole leadership. The server releases
it when that connection ends (a clean close at once; a killed process at once; a silent peer
after the TCP user timeout and keepalives set below, 1-2 s). On taking the lock,
the leader bumps the one row of table ``leadership`` (migration 0015) and keeps the new epoch
in its ``Fence``.

Fencing: sessions from ``fenced_sessions`` check, as the first statement of every transaction,
that the row's epoch is still theirs, with ``SELECT ... FOR SHARE``. A new leader's epoch bump
(an UPDATE of that row) therefore waits for every transaction a deposed leader had already
begun and then ends them all: a transaction that began before the bump is ordered before it,
and one that begins after it fails with ``Deposed`` instead of landing. A ``Fence`` whose epoch
is None (this process does not lead, or knows it lost the lock) refuses without asking.

SQLite sites have one controller: it is always the leader (``SQLITE_EPOCH``) and takes no lock.
Neighbours: controller/leading.py (the loop that takes and watches the lock and starts or stops
the leader-only work), store/database.py (``MIGRATION_LOCK``, held while migrating).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Connection, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from edgecloud.errors import Deposed
from edgecloud.store.models import Leadership
from edgecloud.store.stalls import bound_stalls

log = logging.getLogger(__name__)

LEADER_LOCK = 0x6564_6765_636C_6F01  # advisory lock keys (bigint) of this application
MIGRATION_LOCK = 0x6564_6765_636C_6F02
SQLITE_EPOCH = 1
ROW = 1
# What frees the lock when a leader's node dies without closing its connection: the leader
# pings every 0.5 s (controller/leading.py), so the server always has an answer in flight and
# ends the connection when it stays unacknowledged for 1 s (tcp_user_timeout); keepalives
# (idle 1 s, one probe after 1 s) cover a connection that is idle anyway. Not measured here:
# a silent node needs a network cut, which the tests (loopback only) do not make.
KEEPALIVES = {
    "tcp_keepalives_idle": "1",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "1",
    "tcp_user_timeout": "1000",
}


def is_postgresql(url: str) -> bool:
    """Whether a store URL (store/database.py ``make_engine``) is PostgreSQL."""
    return url.startswith("postgresql")


def dsn(url: str) -> str:
    """The libpq form of a SQLAlchemy ``postgresql+asyncpg://`` URL, for asyncpg itself.

    A replicated store (allinone/replicated_db.py) has SQLAlchemy's multi-host form, one
    ``host=H:P`` per node; asyncpg keeps only the last of repeated parameters and wants them
    as one ``host=H1:P1,H2:P2``. Other parameters (``target_session_attrs``) pass unchanged.
    """
    libpq = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    parts = urllib.parse.urlsplit(libpq)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in pairs if key == "host"]
    if len(hosts) < 2:
        return libpq
    rest = [(key, value) for key, value in pairs if key != "host"]
    query = urllib.parse.urlencode([("host", ",".join(hosts)), *rest], safe=":,/")
    return urllib.parse.urlunsplit(parts._replace(query=query))


@dataclass
class Fence:
    """The epoch this process may write leader-only state under; None while it does not lead."""

    epoch: int | None = None


class _FencedSession(Session):
    """A session whose every transaction first checks ``info["fence"]`` (see the module)."""


@event.listens_for(_FencedSession, "after_begin")
def _check_epoch(session: Session, _transaction: SessionTransaction, conn: Connection) -> None:
    fence: Fence = session.info["fence"]
    mine = fence.epoch
    if mine is None:
        raise Deposed("this controller does not lead the site")
    query = select(Leadership.epoch).where(Leadership.id == ROW).with_for_update(read=True)
    current = conn.execute(query).scalar_one_or_none()
    if current != mine:
        raise Deposed(f"leadership epoch {mine} is over (the site is at epoch {current})")


def fenced_sessions(engine: AsyncEngine, fence: Fence) -> async_sessionmaker[AsyncSession]:
    """Sessions (like store/database.py ``session_factory``) whose transactions fail with
    ``Deposed`` unless ``fence.epoch`` is the site's current epoch."""
    return async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=_FencedSession, info={"fence": fence}
    )


async def epoch_of(engine: AsyncEngine) -> int:
    """The site's current epoch (0 if no controller on PostgreSQL has led yet)."""
    async with engine.connect() as conn:
        value = await conn.scalar(select(Leadership.epoch).where(Leadership.id == ROW))
    return int(value or 0)


class LockConnection:
    """One dedicated PostgreSQL connection that tries for, and then holds, the leader lock.

    ``on_lost`` is called (once, from asyncpg's callback, synchronously) when the connection
    ends by any cause but ``close``; ``ping`` raises when the server does not answer in time.
    """

    def __init__(self, conn: Any, on_lost: Callable[[], None]) -> None:
        self._conn = conn
        self._on_lost = on_lost
        self._closing = False
        conn.add_termination_listener(self._terminated)

    @classmethod
    async def open(
        cls, url: str, holder: str, on_lost: Callable[[], None], timeout: float = 2.0
    ) -> LockConnection:
        settings = {**KEEPALIVES, "application_name": f"edgecloud leader lock {holder}"[:63]}
        conn = await asyncpg.connect(dsn(url), timeout=timeout, server_settings=settings)
        bound_stalls(conn)
        return cls(conn, on_lost)

    def _terminated(self, _conn: Any) -> None:
        if not self._closing:
            self._on_lost()

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (tests end it to simulate a lost link)."""
        return int(self._conn.get_server_pid())

    async def try_lock(self) -> bool:
        """Take the leader lock if no other session holds it (never waits)."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))

    async def take_epoch(self, holder: str) -> int:
        """Begin a new epoch (call holding the lock); waits for transactions of the previous
        leader that are checking their epoch right now (see the module)."""
        value = await self._conn.fetchval(
            "INSERT INTO leadership (id, epoch, holder, since) VALUES ($1, 1, $2, now()) "
            "ON CONFLICT (id) DO UPDATE SET epoch = leadership.epoch + 1, "
            "holder = EXCLUDED.holder, since = EXCLUDED.since RETURNING epoch",
            ROW,
            holder,
        )
        return int(value)

    async def ping(self, timeout: float) -> None:
        """Raise (TimeoutError, a connection error) unless the server answers within
        ``timeout`` seconds."""
        await self._conn.fetchval("SELECT 1", timeout=timeout)

    async def close(self) -> None:
        """Release the lock by ending the connection (no ``on_lost``)."""
        self._closing = True
        if self._conn.is_closed():
            return
        try:
            await asyncio.wait_for(self._conn.close(), 2.0)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            self._conn.terminate()
