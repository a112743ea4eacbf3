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
  (pg_auto_failover; controller/db_witness.py reads it) answered, less than ``WITNESS_VALID``
  after the question, that it reaches this controller's own database node and none of the
  others. No other node can then commit: a primary commits alone only in a state the monitor
  assigns to a node it reaches, and in synchronous mode only with this node's acknowledgement,
  which (a controller and its node's database share the node's network path) it cannot get
  from a node this controller cannot reach. So no leader can judge anyone meanwhile: a
  database failover after the other node died (issue 11 (b)) does not make the survivor's
  agents fence. Before a leader judges again its store answers again, and it restamps
  (below) what it heard, so its judgement waits L + ``grace`` from then;
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

import asyncpg

from edgecloud.controller.db_witness import STATES

log = logging.getLogger(__name__)

WITNESS_VALID = 0.5  # s after the question: how long a vouching answer of the monitor counts
WITNESS_EVERY = 0.2  # s between questions while a store heartbeat is overdue
WITNESS_TIMEOUT = 0.3  # s to connect or answer
Basis = Literal["store", "witness"]


def grace_for(interval: float) -> float:
    """How long a durable heartbeat counts: two of the membership refreshes
    (``refresh_every``) that carry it (one may be late)."""
    return 2 * refresh_every(interval)


def refresh_every(interval: float, most: float = 1.0) -> float:
    """How often a controller of a site that recovers hosts sends its durable heartbeat."""
    return min(most, interval / 2)


def witness_vouches(rows: Sequence[Any] | None, own: str) -> bool:
    """Whether the monitor's node states (None: it did not answer) say that no database node
    but ``own`` can take writes: it reaches ``own`` and none of the others."""
    if not rows:
        return False
    mine = [r for r in rows if r[0] == own]
    others = [r for r in rows if r[0] != own]
    return len(mine) == 1 and mine[0][3] == 1 and all(r[3] != 1 for r in others)


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
    own: str,
    every: float,
    on_vouching: Callable[[], None] = lambda: None,
) -> None:
    """Ask the monitor every ``WITNESS_EVERY`` while a durable heartbeat is overdue (one
    connection, kept while questions follow each other); ``on_vouching`` when its answer
    lets this controller answer its agents again (answer them now: the next heartbeat may be
    an interval away, and their fence is near)."""
    conn: Any = None
    try:
        while True:
            await asyncio.sleep(WITNESS_EVERY)
            if not vouching.overdue(time.monotonic(), every):
                if conn is not None:
                    await _close(conn)
                    conn = None
                continue
            asked = time.monotonic()
            rows = None
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(monitor_uri, timeout=WITNESS_TIMEOUT)
                rows = list(await conn.fetch(STATES, timeout=WITNESS_TIMEOUT))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.debug("the database's monitor does not answer: %s", exc)
                if conn is not None:
                    conn.terminate()
                    conn = None
            vouches = witness_vouches(rows, own)
            resumed = vouches and not vouching.vouches(time.monotonic())
            vouching.witnessed(asked, vouches)
            if resumed:
                log.warning(
                    "the store does not answer; the monitor reaches only %s: answering the "
                    "agents' heartbeats",
                    own,
                )
                on_vouching()
    finally:
        if conn is not None:
            await _close(conn)


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), WITNESS_TIMEOUT)
