"""Whether this controller process leads the site, and the start and stop of leader-only work.

On PostgreSQL every controller runs ``Leadership``: it tries for the leader lock every
``retry`` seconds (store/leadership.py ``LockConnection``); on taking it, it begins a new
epoch, puts it in the ``fence`` and awaits ``on_gain(epoch)`` (controller/leader_work.py
starts the reconcilers, the scheduler, liveness judgement, housekeeping). While leading it
pings the server every ``ping`` seconds; when the lock connection ends or a ping fails it
empties the fence at once (every leader-only transaction from then on fails with ``Deposed``)
and awaits ``on_loss()`` to stop that work, then tries for the lock again.

Timing (the issue's goal: a new leader within 2 s): a follower asks every 0.25 s; the server
frees the lock at once when a leader's connection closes or its process dies, and after 1-2 s
when its node goes silent (store/leadership.py ``KEEPALIVES``, not measured); a leader that cannot reach
the server stops within ``ping`` + ``ping_timeout`` (1.5 s), before the server frees the lock,
and the epoch fences whatever is still in flight.

On SQLite there is one controller: it leads from ``start`` (epoch 1) to ``close``.
Neighbours: controller/site.py (creates it), store/leadership.py (lock, epoch, fence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import asyncpg

from edgecloud.store.leadership import SQLITE_EPOCH, Fence, LockConnection, is_postgresql

log = logging.getLogger(__name__)

RETRY = 0.25
PING = 0.5
PING_TIMEOUT = 1.0


def holder_name() -> str:
    """How this process names itself in the leadership row: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Takes, holds and watches the site's leadership (see the module)."""

    def __init__(
        self,
        url: str,
        on_gain: Callable[[int], Awaitable[None]],
        on_loss: Callable[[], Awaitable[None]],
        holder: str | None = None,
        retry: float = RETRY,
        ping: float = PING,
        ping_timeout: float = PING_TIMEOUT,
        fence: Fence | None = None,
    ) -> None:
        self.url = url
        self.holder = holder or holder_name()
        self.fence = fence or Fence()  # shared with the fenced sessions of the leader's work
        self._on_gain, self._on_loss = on_gain, on_loss
        self._retry, self._ping, self._ping_timeout = retry, ping, ping_timeout
        self._lock: LockConnection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._working = False  # on_gain ran and on_loss has not
        self._term_epoch = 0  # the epoch of the last (or current) term
        self._unusable = False  # the last attempt could not reach PostgreSQL
        self.changed = asyncio.Event()  # set on every gain and loss (tests, status)
        self.terms = 0  # how many times this process has led

    @property
    def leading(self) -> bool:
        return self.fence.epoch is not None

    @property
    def epoch(self) -> int | None:
        return self.fence.epoch

    @property
    def lock_backend_pid(self) -> int | None:
        """The server process holding our lock connection (None without one)."""
        return None if self._lock is None else self._lock.backend_pid

    async def start(self) -> None:
        """SQLite: lead now. PostgreSQL: one attempt now (so a lone controller leads before it
        serves), then keep trying in the background."""
        if not is_postgresql(self.url):
            await self._gain(SQLITE_EPOCH)
            return
        await self._attempt()
        self._task = asyncio.create_task(self._run(), name="leadership")

    async def close(self) -> None:
        """Stop leader-only work and release the lock."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._lose("controller stopping")
        await self._drop_lock()

    async def _run(self) -> None:
        while True:
            try:
                if self.leading:
                    await self._watch()
                    await self._lose("lost the leader lock's connection")
                    await self._drop_lock()
                await asyncio.sleep(self._retry)
                await self._attempt()
            except Exception:  # never leave the loop: a follower must keep asking
                log.exception("leadership: unexpected failure; stepping down, retrying")
                await self._step_down("unexpected failure")

    async def _attempt(self) -> None:
        """Try once for the lock; lead if it is ours. Failures are logged, not raised."""
        try:
            if self._lock is None:
                self._lost.clear()
                self._lock = await LockConnection.open(self.url, self.holder, self._connection_lost)
            if not await self._lock.try_lock():
                return
            epoch = await self._lock.take_epoch(self.holder)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # once per outage, not every retry
            (log.debug if self._unusable else log.warning)(
                "leadership: PostgreSQL not usable (%s); retrying", exc
            )
            self._unusable = True
            await self._drop_lock()
            return
        self._unusable = False
        if self._lost.is_set():  # the connection ended while we took the epoch
            await self._drop_lock()
            return
        try:
            await self._gain(epoch)
        except Exception as exc:  # e.g. Deposed: the lock was lost while the work started
            log.warning("leadership: starting the leader-only work failed (%r)", exc)
            await self._step_down("the leader-only work did not start")

    async def _step_down(self, why: str) -> None:
        """Fence, stop the work, release the lock (the next attempt may lead again)."""
        self.fence.epoch = None
        with contextlib.suppress(Exception):
            await self._lose(why)
        await self._drop_lock()

    async def _watch(self) -> None:
        """Return when the lock connection is lost or the server stops answering."""
        assert self._lock is not None
        while not self._lost.is_set():
            try:
                await self._lock.ping(self._ping_timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._connection_lost(f"ping failed: {exc!r}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._ping)

    def _connection_lost(self, why: str = "connection ended") -> None:
        """From asyncpg's callback or a failed ping: fence at once (no await)."""
        if self.fence.epoch is not None:
            log.warning("leadership epoch %s lost: %s", self.fence.epoch, why)
        self.fence.epoch = None
        self._lost.set()

    async def _gain(self, epoch: int) -> None:
        self.fence.epoch = self._term_epoch = epoch
        self.terms += 1
        log.info("leading the site (epoch %d, %s)", epoch, self.holder)
        self._working = True
        self.changed.set()
        await self._on_gain(epoch)

    async def _lose(self, why: str) -> None:
        self.fence.epoch = None
        if self._working:
            self._working = False
            log.info("no longer leading (epoch %s): %s", self._term_epoch, why)
            await self._on_loss()
            self.changed.set()

    async def _drop_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            await lock.close()
