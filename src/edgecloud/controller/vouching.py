"""Whether this controller may vouch for its agents: answer their heartbeats (agent/fencing.py).

An agent that hears nothing from the controllers for ``fence_after`` destroys its recoverable
VNFs, because by then the leader may judge its host failed and rebuild them elsewhere. The
echo that keeps it from fencing is a promise: "the leader hears that you are here". A
controller cut off from the site's database (a partition between the two nodes of a
redundant site) can no longer keep it: its presence notices do not reach the leader, which
rebuilds the VNFs of its hosts on the other node while they run on. So a controller of a
shared store echoes only while it stands (issue 11 item 5):

- **by the store**: its last heartbeat notice, sent in a durable transaction
  (controller/membership.py: a row update and the notice commit together, so with synchronous
  replication the notice reaches the other controllers only when the standby has it), began
  at most ``grace`` ago. The leader counts a holder's hosts as present for the liveness limit
  L plus ``grace`` after the holder's last word (gateway/gateway.py), so an agent whose last
  echo came at most ``grace`` after that word fences (``fence_after`` = L - one interval, plus
  its check period and the time to destroy its domains) before the leader may judge it;
- **by the witness**, while the store does not answer: the database's monitor
  (pg_auto_failover) answered, less than ``WITNESS_VALID`` after the question, that it
  reaches this controller's own database node (healthy) and that no other node is in a state
  in which a primary commits without its standby (``ASYNC``), and this node's own database
  node (asked where the monitor says it is) does not stream WAL from a primary. Then no other
  node can commit: in synchronous mode a primary waits for this node's acknowledgement, and
  the monitor assigns a state without it only to a primary whose standby it cannot reach. So
  no leader can judge anyone meanwhile: a database failover after the other node died or was
  cut off (issue 11 (b), (c)), or a restart of the primary, does not make this node's agents
  fence. When a node can commit again, a leader's own store answers again after a lapse and
  it restamps (below), so its judgement waits L + ``grace`` from then, while the agents
  vouched for have fenced within ``WITNESS_VALID`` + ``fence_after`` (+ check, destroy);
- on a store that no other controller can share (SQLite) always: this one is the only judge.

When standing by the store comes back after a lapse, what this controller heard from the
others meanwhile may be incomplete (their notices were lost or late): it counts every other
holder as having spoken then (gateway/presence.py ``restamp``), as at a new term.

``Vouching`` is a pure map of the clock (tested without a network); ``watch_witness`` asks the
monitor while a store heartbeat is overdue. Neighbours: controller/site.py (wires it),
controller/membership.py (the durable heartbeat), gateway/gateway.py (the echo, the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

WITNESS_VALID = 0.5  # s after the question: how long a vouching answer of the monitor counts
WITNESS_EVERY = 0.2  # s between questions while a store heartbeat is overdue
WITNESS_TIMEOUT = 0.3  # s to connect or answer
Basis = Literal["store", "witness"]
# states in which a primary commits without its standby's acknowledgement
ASYNC = ("wait_primary", "single", "join_primary", "apply_settings")
NODES = (
    "SELECT nodename, reportedstate::text, goalstate::text, health, nodehost, nodeport "
    "FROM pgautofailover.node"
)
RECEIVING = "SELECT status FROM pg_stat_wal_receiver"


def grace_for(interval: float) -> float:
    """How long a durable heartbeat counts: two of the membership refreshes
    (``refresh_every``) that carry it (one may be late)."""
    return 2 * refresh_every(interval)


def refresh_every(interval: float, most: float = 1.0) -> float:
    """How often a controller of a site that recovers hosts sends its durable heartbeat."""
    return min(most, interval / 2)


def witness_vouches(rows: Sequence[Any] | None, own: str, streaming: bool | None) -> bool:
    """Whether no other database node can take a write now, from the monitor's node states
    (None: it did not answer) and whether ``own`` (this controller's node's database node)
    receives the primary's WAL (None: it did not answer). In synchronous mode a primary
    commits only once ``own`` has the WAL: not while ``own`` does not stream from it; without
    it, only in a state the monitor assigns (``ASYNC``), and the monitor does not assign one
    while it reaches ``own`` (healthy) and has assigned none."""
    if not rows or streaming is None or streaming:
        return False
    mine = [r for r in rows if r[0] == own]
    if len(mine) != 1 or mine[0][3] != 1:
        return False
    return not any(r[1] in ASYNC or r[2] in ASYNC for r in rows if r[0] != own)


class Vouching:
    """When this controller last stood by the store and by the witness (see the module)."""

    def __init__(self, grace: float, witness_valid: float = WITNESS_VALID) -> None:
        self.grace = grace
        self.witness_valid = witness_valid
        self._stored = -math.inf  # when the last durable heartbeat that committed began
        self._witnessed = -math.inf  # when the last vouching question to the witness was asked
        self.lapses = 0  # times the store standing lapsed and came back (for the logs, tests)

    def stored(self, began: float, now: float) -> bool:
        """A durable heartbeat begun at ``began`` has committed (``now``); True when it ends a
        lapse (what was heard from the others meanwhile must be restamped)."""
        lapsed = now - self._stored > self.grace
        if lapsed and self._stored > -math.inf:
            self.lapses += 1
        self._stored = max(self._stored, began)
        return lapsed

    def witnessed(self, asked: float, vouches: bool) -> None:
        """The witness answered a question asked at ``asked``."""
        self._witnessed = max(self._witnessed, asked) if vouches else -math.inf

    def by_store(self, now: float) -> bool:
        return now - self._stored <= self.grace

    def overdue(self, now: float, every: float) -> bool:
        """The next durable heartbeat is late (ask the witness from now on)."""
        return now - self._stored > every

    def vouches(self, now: float) -> bool:
        return self.basis(now) is not None

    def basis(self, now: float) -> Basis | None:
        """Why this controller may answer its agents now: "store", "witness" or None."""
        if self.by_store(now):
            return "store"
        return "witness" if now - self._witnessed <= self.witness_valid else None


async def watch_witness(
    vouching: Vouching,
    monitor_uri: str,
    store_url: str,
    own: str,
    every: float,
    on_vouching: Callable[[], None] = lambda: None,
) -> None:
    """Ask the monitor, and this node's own database node (where the monitor says it is, with
    the store's credentials), every ``WITNESS_EVERY`` while a durable heartbeat is overdue;
    ``on_vouching`` when the answers let this controller answer its agents again (answer
    them now: the next heartbeat may be an interval away, and their fence is near)."""
    monitor, node = _Peer(monitor_uri), _Peer(None)
    credentials = make_url(store_url)
    try:
        while True:
            await asyncio.sleep(WITNESS_EVERY)
            if not vouching.overdue(time.monotonic(), every):
                await monitor.close()
                await node.close()
                continue
            asked = time.monotonic()
            rows = await monitor.fetch(NODES)
            streaming = None
            mine = [r for r in rows or [] if r[0] == own]
            if mine:
                node.dsn = _node_dsn(credentials, str(mine[0][4]), int(mine[0][5]))
                status = await node.fetch(RECEIVING)
                streaming = None if status is None else any(r[0] == "streaming" for r in status)
            vouches = witness_vouches(rows, own, streaming)
            resumed = vouches and not vouching.vouches(time.monotonic())
            vouching.witnessed(asked, vouches)
            if resumed:
                log.warning(
                    "the store does not answer; no other database node can take writes (the "
                    "monitor, and %s not streaming): answering the agents' heartbeats",
                    own,
                )
                on_vouching()
    finally:
        await monitor.close()
        await node.close()


def _node_dsn(store: URL, host: str, port: int) -> str:
    """A libpq URI for one database node, with the store URL's user, password and database."""
    return (
        f"postgresql://{quote(store.username or '')}:{quote(str(store.password or ''))}"
        f"@{host}:{port}/{quote(store.database or '')}"
    )


class _Peer:
    """One connection kept while questions follow each other (reopened when ``dsn`` moves)."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._to: str | None = None

    async def fetch(self, sql: str) -> list[Any] | None:
        """The rows, or None when the peer does not answer within ``WITNESS_TIMEOUT``."""
        try:
            if self._conn is None or self._conn.is_closed() or self._to != self.dsn:
                await self.close()
                self._conn = await asyncpg.connect(self.dsn, timeout=WITNESS_TIMEOUT)
                self._to = self.dsn
            return list(await self._conn.fetch(sql, timeout=WITNESS_TIMEOUT))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.debug("%s does not answer: %s", self._to or self.dsn, exc)
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            return None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), WITNESS_TIMEOUT)
