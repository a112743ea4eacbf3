"""Coalesced store work for the gateway: many hosts' reads or writes in one transaction.

In a reconnect storm thousands of agents say hello within seconds; one store transaction per
hello (certificate check, host online, observed report) made the store the bottleneck of the
10,000-node cold start. A ``Batcher`` collects keyed items for up to ``delay`` seconds (or
until ``max_batch`` keys wait) and hands them to one ``flush`` call:

- the newest value of a key wins (a later observed report replaces an unwritten older one);
- callers that need the answer await ``submit`` (session starts); writers use ``put``;
- a failed flush fails the awaiting callers; unawaited writes are retried with the next batch
  (newer values win) up to ``attempts`` times, then logged and dropped.

Neighbours: gateway.py (its user), services/availability.py and services/reports.py (the
batched store functions it calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Batcher(Generic[K, V, R]):
    """Keyed items, flushed together; see the module docstring."""

    def __init__(
        self,
        flush: Callable[[dict[K, V]], Awaitable[dict[K, R]]],
        name: str,
        delay: float = 0.05,
        max_batch: int = 500,
        attempts: int = 3,
    ) -> None:
        self._flush, self.name = flush, name
        self.delay, self.max_batch, self.attempts = delay, max_batch, attempts
        self._pending: dict[K, V] = {}
        self._waiters: dict[K, list[asyncio.Future[R | None]]] = {}
        self._failures: dict[K, int] = {}
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, key: K, value: V) -> None:
        """Queue ``value`` for ``key`` (replacing an unflushed one); returns at once."""
        self._pending[key] = value
        if len(self._pending) >= self.max_batch:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drive(), name=f"batch-{self.name}")

    async def submit(self, key: K, value: V) -> R | None:
        """Queue ``value`` and wait for the flush's answer for ``key`` (None: no answer)."""
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        self.put(key, value)
        return await future

    async def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending (best effort within ``timeout``)."""
        if self._task is not None and not self._task.done():
            self._full.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drive(self) -> None:
        while self._pending:
            if len(self._pending) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.delay)
            self._full.clear()
            keys = list(self._pending)[: self.max_batch]
            batch = {key: self._pending.pop(key) for key in keys}
            waiters = {key: self._waiters.pop(key) for key in keys if key in self._waiters}
            try:
                results = await self._flush(batch)
            except Exception as exc:
                self._failed(batch, waiters, exc)
                continue
            self.flushes += 1
            for key, futures in waiters.items():
                for future in futures:
                    if not future.done():
                        future.set_result(results.get(key))
            for key in batch:
                self._failures.pop(key, None)

    def _failed(
        self, batch: dict[K, V], waiters: dict[K, list[asyncio.Future[R | None]]], exc: Exception
    ) -> None:
        log.warning("%s: a batch of %d failed: %s", self.name, len(batch), exc)
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        for key, value in batch.items():
            if key in waiters:
                continue
            tries = self._failures.get(key, 0) + 1
            if tries >= self.attempts:
                self._failures.pop(key, None)
                log.error("%s: dropped %r after %d failed attempts", self.name, key, tries)
            else:
                self._failures[key] = tries
                self._pending.setdefault(key, value)
