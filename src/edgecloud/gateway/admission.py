"""Admission control for the agent gateway: what keeps the controller alive in a reconnect storm.

Two bounded stages per connection:

- ``handshake``: TLS handshakes in flight (the CPU cost of a connection). The gateway accepts a
  connection only when one of ``max_handshakes`` slots is free. A handshake holds its slot for
  at most ``handshake_lease`` seconds: one still going after that is waiting for a slow peer,
  not using the CPU, and keeps only its own timeout (a few stalled peers used to hold every
  slot for the whole handshake timeout, twice in a row at a storm's start). Until a slot is
  free connections wait in
  the kernel's accept queue (``backlog``, sized so a queued agent is served before its 20 s
  connect timeout) and beyond it the kernel drops their SYNs, so the agents' TCP stacks retry
  with exponential backoff. Waiting costs the controller no CPU, and it never handshakes with
  an agent that already gave up, which is what collapsed the first 10,000-node cold start (a
  wait line inside the controller: accepted, then handshaked after the agent left).
- ``sync``: sessions between ``hello`` and the end of their initial sync (store reads, the
  welcome, the observed report). Beyond ``max_syncs`` plus ``max_sync_waiting`` the agent gets
  a ``retry`` message with a ``retry_after`` jittered over a range that grows with the queue,
  and honours it.

With ``Protection(enabled=False)`` (the baseline for the simulator) nothing is bounded: every
connection is accepted and handshaked at once. ``GatewayStats`` counts what happened, for the
simulator's measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Protection:
    """The gateway's protections; ``enabled=False`` turns every one of them off."""

    enabled: bool = True
    max_handshakes: int = 32  # TLS handshakes in flight
    handshake_lease: float = 0.5  # a handshake longer than this frees its slot (slow peer)
    backlog: int = 2048  # the kernel's accept queue: the handshake wait line
    max_syncs: int = 64  # sessions in their initial sync
    max_sync_waiting: int = 512  # beyond: 'retry' with a jittered retry_after
    retry_after: tuple[float, float] = (1.0, 8.0)  # jitter range of retry_after, seconds
    mass_loss_ratio: float = 0.10  # this share of hosts silent together is one event ...
    mass_loss_min: int = 5  # ... if at least this many
    mass_loss_grace: float = 600.0  # during an event, hosts are marked offline after this
    # peers not authenticated yet (preauth.py): connections, per source, frame size, time
    preauth_max: int = 1024
    preauth_per_source: int = 64
    preauth_frame: int = 64 * 1024
    preauth_timeout: float = 5.0


@dataclass
class GatewayStats:
    """Counters since start (the simulator reads them from the stats file)."""

    started: float = field(default_factory=time.time)  # wall clock: tells a restart apart
    accepted: int = 0
    handshakes_peak: int = 0  # most TLS handshakes in flight at once
    retries: int = 0  # 'retry' sent after TLS
    handshakes_failed: int = 0
    handshakes_slow: int = 0  # handshakes that outlived their slot's lease
    tls_resumed: int = 0  # handshakes that resumed an earlier TLS session (cheaper)
    handshake_seconds: float = 0.0  # summed over handshakes, accept to done (either way)
    sessions_started: int = 0
    full_syncs: int = 0  # desired snapshots pushed
    resumed_in_sync: int = 0  # hellos that needed nothing
    frames_in: int = 0
    heartbeats: int = 0
    echoes: int = 0  # heartbeats answered (agents that fence: agent/fencing.py)
    hb_lag_max: float = 0.0  # worst heartbeat lag (agent send to controller processing), s
    hb_lag_max_recent: float = 0.0  # worst lag since the last stats write
    hb_late: int = 0  # heartbeats processed later than one interval after they were sent
    loop_lag_max_recent: float = 0.0  # the event loop's worst lateness since the last stats write
    hosts_marked_offline: int = 0
    mass_loss_events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Admission:
    """The two bounded stages; see the module docstring."""

    def __init__(self, protection: Protection, stats: GatewayStats) -> None:
        self.protection, self.stats = protection, stats
        on = protection.enabled
        self._handshakes = asyncio.Semaphore(protection.max_handshakes) if on else None
        self._syncs = asyncio.Semaphore(protection.max_syncs) if on else None
        self.in_flight = 0
        self.sync_waiting = 0

    async def handshake_slot(self) -> None:
        """Wait for a free handshake slot (the gateway accepts the next connection then)."""
        if self._handshakes is not None:
            await self._handshakes.acquire()
        self.in_flight += 1
        self.stats.handshakes_peak = max(self.stats.handshakes_peak, self.in_flight)

    def handshake_done(self) -> None:
        """The connection's handshake ended (either way): its slot is free."""
        self.in_flight -= 1
        if self._handshakes is not None:
            self._handshakes.release()

    def lease(self) -> HandshakeLease:
        """The slot just taken, released by ``done()`` or when the lease runs out."""
        return HandshakeLease(self)

    @contextlib.asynccontextmanager
    async def sync(self) -> AsyncIterator[float | None]:
        """Hold a sync slot; yields None, or the retry_after to send instead of syncing."""
        if self._syncs is None:
            yield None
            return
        if self._syncs.locked() and self.sync_waiting >= self.protection.max_sync_waiting:
            self.stats.retries += 1
            yield self.retry_after()
            return
        self.sync_waiting += 1
        try:
            await self._syncs.acquire()
        finally:
            self.sync_waiting -= 1
        try:
            yield None
        finally:
            self._syncs.release()

    def retry_after(self) -> float:
        """Full jitter over a range that grows with the sync queue."""
        low, high = self.protection.retry_after
        load = min(1.0, self.sync_waiting / max(1, self.protection.max_sync_waiting))
        return random.uniform(low, low + (high - low) * max(load, 0.25))


class HandshakeLease:
    """One handshake's slot: freed once, at the end of the handshake or after the lease."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True
        self._timer = asyncio.get_running_loop().call_later(
            admission.protection.handshake_lease, self._expire
        )

    def _expire(self) -> None:
        if self._held:
            self._admission.stats.handshakes_slow += 1
            self.done()

    def done(self) -> None:
        self._timer.cancel()
        if self._held:
            self._held = False
            self._admission.handshake_done()
