"""Coalesced store work for the gateway: many hosts' reads or writes in one transaction.

In a reconnect storm thousands of agents say hello within seconds; one store transaction per
hello (certificate check, host online, observed report) made the store the bottleneck of the
10,000-node cold start. A ``Batcher`` collects keyed items for up to ``delay`` seconds (or
until ``max_batch`` keys wait) and hands them to one ``flush`` call:

- the newest value of a key wins (a later observed report replaces an unwritten older one);
- callers that need the answer await ``submit`` (session starts); writers use ``put``;
- a failed flush fails the awaiting callers; unawaited writes are retried with the next batch
  (newer values win) up to ``attempts`` times, then logged and dropped;
- with ``isolate`` a failed batch is split in halves and each flushed on its own, down to the
  keys that fail alone (at most ``ISOLATE_FLUSHES`` extra flushes per batch: one bad key among
  500 costs about 18): the others' writes land. A key that failed while others in its batch
  succeeded is retried (alone, up to ``attempts``: it may have met a passing conflict); when it
  is dropped it is handed to ``on_poison`` (the gateway raises an alarm naming the host). A
  batch in which every key fails (the store is down) is retried as before, and nobody blamed.

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
ISOLATE_FLUSHES = 64


class Batcher(Generic[K, V, R]):
    """Keyed items, flushed together; see the module docstring."""

    def __init__(
        self,
        flush: Callable[[dict[K, V]], Awaitable[dict[K, R]]],
        name: str,
        delay: float = 0.05,
        max_batch: int = 500,
        attempts: int = 3,
        isolate: bool = False,
        on_poison: Callable[[K, Exception], Awaitable[None]] | None = None,
    ) -> None:
        self._flush, self.name = flush, name
        self.isolate, self.on_poison = isolate, on_poison
        self.delay, self.max_batch, self.attempts = delay, max_batch, attempts
        self._pending: dict[K, V] = {}
        self._waiters: dict[K, list[asyncio.Future[R | None]]] = {}
        self._failures: dict[K, int] = {}
        self._alone: set[K] = set()  # keys that failed while the rest of their batch landed
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
            results, failures = await self._flush_parts(batch, [ISOLATE_FLUSHES])
            if failures and len(failures) == len(batch):
                await self._failed(batch, waiters, failures)
                continue
            if failures:  # failed while the rest landed: retried alone, reported if dropped
                self._alone.update(failures)
                failed_waiters = {k: w for k, w in waiters.items() if k in failures}
                await self._failed({k: batch[k] for k in failures}, failed_waiters, failures)
            self.flushes += 1
            for key, futures in waiters.items():
                for future in futures:
                    if not future.done() and key not in failures:
                        future.set_result(results.get(key))
            for key in batch:
                if key not in failures:
                    self._failures.pop(key, None)
                    self._alone.discard(key)

    async def _flush_parts(
        self, batch: dict[K, V], budget: list[int]
    ) -> tuple[dict[K, R], dict[K, Exception]]:
        """Flush ``batch``; with ``isolate``, split a failing one (see the module docstring)."""
        try:
            return await self._flush(batch), {}
        except Exception as exc:
            if not self.isolate or len(batch) == 1 or budget[0] < 2:
                return {}, dict.fromkeys(batch, exc)
        budget[0] -= 2
        keys = list(batch)
        half = len(keys) // 2
        left = await self._flush_parts({k: batch[k] for k in keys[:half]}, budget)
        right = await self._flush_parts({k: batch[k] for k in keys[half:]}, budget)
        return {**left[0], **right[0]}, {**left[1], **right[1]}

    async def _failed(
        self,
        batch: dict[K, V],
        waiters: dict[K, list[asyncio.Future[R | None]]],
        errors: dict[K, Exception],
    ) -> None:
        some = next(iter(errors.values()))
        log.warning("%s: a batch of %d failed: %s", self.name, len(batch), some)
        for key, futures in waiters.items():
            for future in futures:
                if not future.done():
                    future.set_exception(errors.get(key, some))
        for key, value in batch.items():
            if key in waiters:
                continue
            tries = self._failures.get(key, 0) + 1
            if tries < self.attempts:
                self._failures[key] = tries
                self._pending.setdefault(key, value)
                continue
            self._failures.pop(key, None)
            log.error("%s: dropped %r after %d failed attempts", self.name, key, tries)
            if key in self._alone:
                self._alone.discard(key)
                await self._report(key, errors.get(key, some))

    async def _report(self, key: K, exc: Exception) -> None:
        if self.on_poison is not None:
            try:
                await self.on_poison(key, exc)
            except Exception as alarm_exc:
                log.warning("%s: reporting %r failed: %s", self.name, key, alarm_exc)
