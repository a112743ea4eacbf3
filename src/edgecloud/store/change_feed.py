"""Change notices between controller processes: PostgreSQL LISTEN/NOTIFY on one channel.

Services tell their notifier after a commit that something changed (services/context.py
``Notifier``: an instance, a host's desired state, a chain, ...). In one process that is a call;
with two controllers on one PostgreSQL the notice must also reach the other process, whose
reconcilers (if it leads) or gateway session of the host (if the agent is connected there) must
act on it. ``ChangeFeed.publish`` queues a notice; a task sends the queued notices, de-duplicated,
as few ``pg_notify`` calls as their size allows (a payload is at most ~8000 bytes), on one
dedicated connection that also LISTENs. Notices from other processes are handed to ``deliver``;
this process's own come back from the server too and are dropped (same backend pid).

A notice lost while the connection is down cannot be replayed: after a reconnect ``on_resume``
is called so the controller re-reads what matters (the leader resumes its reconcilers, the
gateway re-checks its sessions' versions). Neighbours: controller/notifying.py (routes notices
to the reconcilers and the gateway and publishes them here), controller/site.py (starts it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.leadership import dsn
from edgecloud.store.stalls import bound_stalls

log = logging.getLogger(__name__)

CHANNEL = "edgecloud_changes"
MAX_PAYLOAD = 7000  # bytes; PostgreSQL refuses payloads of 8000 bytes and more
RECONNECT_DELAY = 0.5


def encode(notices: list[tuple[str, str]]) -> list[str]:
    """Notices as payloads of lines ``kind key``, each payload below MAX_PAYLOAD bytes."""
    payloads: list[str] = []
    lines: list[str] = []
    size = 0
    for kind, key in notices:
        line = f"{kind} {key}"
        length = len(line.encode()) + 1
        if lines and size + length > MAX_PAYLOAD:
            payloads.append("\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += length
    if lines:
        payloads.append("\n".join(lines))
    return payloads


async def notify_in(s: AsyncSession, kind: str, key: str) -> None:
    """Send one notice with the session's transaction: the others get it when (and only
    when) that transaction commits (with synchronous replication: once the standby has it)."""
    await s.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": f"{kind} {key}"},
    )


def decode(payload: str) -> list[tuple[str, str]]:
    """The notices of one payload (lines that are not ``kind key`` are skipped)."""
    out = []
    for line in payload.splitlines():
        kind, _, key = line.partition(" ")
        if kind and key:
            out.append((kind, key))
    return out


class ChangeFeed:
    """Publishes this process's notices and delivers other processes' (see the module)."""

    def __init__(
        self,
        url: str,
        deliver: Callable[[str, str], None],
        on_resume: Callable[[], None],
    ) -> None:
        self._url = url
        self._deliver = deliver
        self._on_resume = on_resume
        self._pending: dict[tuple[str, str], None] = {}  # ordered set
        self._wake = asyncio.Event()
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # notices delivered from other processes
        self.sent = 0

    def publish(self, kind: str, key: str) -> None:
        """Queue a notice for the other processes (never blocks; sent in order, de-duplicated)."""
        self._pending[(kind, key)] = None
        self._wake.set()

    async def start(self) -> None:
        """Connect and LISTEN (raises when PostgreSQL does not answer), then keep at it."""
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._disconnect()

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(
            dsn(self._url), timeout=5, server_settings={"application_name": "edgecloud feed"}
        )
        bound_stalls(self._conn)
        await self._conn.add_listener(CHANNEL, self._notified)
        self._conn.add_termination_listener(lambda _conn: self._wake.set())

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                conn.terminate()

    def _notified(self, conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == conn.get_server_pid():
            return  # our own notice: delivered in this process already
        for kind, key in decode(payload):
            self.received += 1
            try:
                self._deliver(kind, key)
            except Exception:
                log.exception("delivering change notice %s %s failed", kind, key)

    async def _run(self) -> None:
        while True:
            try:
                await self._send_forever()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("change feed connection lost (%s); reconnecting", exc)
            await self._disconnect()
            tries = 0
            while self._conn is None:
                await asyncio.sleep(RECONNECT_DELAY)
                try:
                    await self._connect()
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    tries += 1  # said once per outage
                    (log.debug if tries > 1 else log.warning)(
                        "change feed: PostgreSQL not reachable (%s); retrying", exc
                    )
            self._on_resume()

    async def _send_forever(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            if self._conn.is_closed():
                raise OSError("connection closed")
            notices, self._pending = list(self._pending), {}
            for payload in encode(notices):
                await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            self.sent += len(notices)
