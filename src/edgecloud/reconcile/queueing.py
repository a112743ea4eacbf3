"""Keyed work queues for the reconcile loops: one worker per key, many keys in parallel.

The reconcilers (instances, chains, hosts) enqueue an object's key whenever something about it
may have changed (an API write, an agent report, a timer); the queue calls the reconciler's
handler for that key. Guarantees:

- one key is handled by one task at a time (sequentially); different keys run in parallel, at
  most ``concurrency`` handlers at once;
- enqueues coalesce: a key already waiting is not queued twice, and a key enqueued while its
  handler runs is handled once more afterwards, so no change is missed;
- a handler that raises is retried after a full-jitter exponential backoff, using the injected
  ``sleep`` (tests pass a fake clock); an enqueue during the backoff retries at once.

Each key in the queue (waiting, running or backing off) has one task, ``_drive``; it exits
when its key is handled with nothing more to do.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edgecloud.errors import EdgecloudError, InvalidInput

K = TypeVar("K", bound=Hashable)

_log = logging.getLogger(__name__)
# Past this many failures the backoff ceiling is retry_max anyway; avoids float overflow.
_MAX_EXPONENT = 64


class QueueFull(EdgecloudError):
    """The queue already holds ``max_keys`` keys and a new one was enqueued."""


class QueueClosed(EdgecloudError):
    """A key was enqueued after ``close``."""


class _Phase(enum.Enum):
    WAITING = "waiting"  # for a concurrency slot, or between runs
    RUNNING = "running"  # the handler is running
    BACKOFF = "backoff"  # sleeping before a retry


@dataclass(eq=False)
class _KeyState:
    phase: _Phase = _Phase.WAITING
    rerun: bool = False  # enqueued while running: handle once more
    failures: int = 0  # consecutive failed runs
    task: asyncio.Task[None] | None = None
    sleeper: asyncio.Future[None] | None = field(default=None, repr=False)


class KeyedQueue(Generic[K]):
    """Calls ``handler(key)`` for enqueued keys; see the module docstring for guarantees."""

    def __init__(
        self,
        handler: Callable[[K], Awaitable[None]],
        *,
        concurrency: int = 64,
        retry_base: float = 0.5,
        retry_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "",
        max_keys: int | None = None,
    ) -> None:
        _check_settings(concurrency, retry_base, retry_max, max_keys)
        self._handler = handler
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._sleep = sleep
        self._name = name or "queue"
        self._max_keys = max_keys
        self._keys: dict[K, _KeyState] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def pending(self) -> int:
        """How many keys the queue holds: waiting, running or backing off."""
        return len(self._keys)

    def enqueue(self, key: K) -> None:
        """Ask for ``key`` to be handled (again); returns at once."""
        if self._closed:
            raise QueueClosed(f"{self._name}: cannot enqueue {key!r}, the queue is closed")
        state = self._keys.get(key)
        if state is None:
            self._admit(key)
        elif state.phase is _Phase.RUNNING:
            state.rerun = True
        elif state.phase is _Phase.BACKOFF and state.sleeper is not None:
            state.sleeper.cancel()

    async def join(self) -> None:
        """Wait until no key is waiting, running or backing off."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel every key's task and wait for them; later enqueues raise QueueClosed."""
        self._closed = True
        tasks = [state.task for state in self._keys.values() if state.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._keys.clear()
        self._idle.set()

    def _admit(self, key: K) -> None:
        if self._max_keys is not None and len(self._keys) >= self._max_keys:
            raise QueueFull(
                f"{self._name}: cannot enqueue {key!r}, {len(self._keys)} keys are pending "
                "(the limit)"
            )
        state = _KeyState()
        self._keys[key] = state
        self._idle.clear()
        state.task = asyncio.get_running_loop().create_task(
            self._drive(key, state), name=f"{self._name}:{key!r}"
        )

    async def _drive(self, key: K, state: _KeyState) -> None:
        """Handle ``key`` until a run succeeds with no new enqueue, then forget it."""
        try:
            while await self._run_once(key, state):
                pass
        finally:
            self._forget(key, state)

    async def _run_once(self, key: K, state: _KeyState) -> bool:
        """One run, and the backoff after a failure; True if another run is due."""
        async with self._slots:
            state.phase, state.rerun = _Phase.RUNNING, False
            succeeded = await self._call(key, state)
            state.phase = _Phase.WAITING
        if state.rerun:
            return True  # enqueued during the run: run again now, success or not
        if succeeded:
            return False
        await self._backoff(state)
        return True

    async def _call(self, key: K, state: _KeyState) -> bool:
        try:
            await self._handler(key)
        except Exception:
            state.failures += 1
            _log.warning(
                "%s: handling %r failed (attempt %d)",
                self._name,
                key,
                state.failures,
                exc_info=True,
            )
            return False
        state.failures = 0
        return True

    async def _backoff(self, state: _KeyState) -> None:
        """Sleep before a retry; an enqueue cancels the sleep so the retry comes at once."""
        sleeper = asyncio.ensure_future(self._sleep(self._delay(state.failures - 1)))
        state.phase, state.sleeper = _Phase.BACKOFF, sleeper
        try:
            await asyncio.wait({sleeper})
        finally:
            state.phase, state.sleeper = _Phase.WAITING, None
            sleeper.cancel()
            await asyncio.wait({sleeper})  # never leave the sleep running
        if not sleeper.cancelled():
            sleeper.exception()  # a sleep that fails counts as slept; mark it retrieved

    def _delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(retry_max, retry_base * 2**attempt)]."""
        if attempt >= _MAX_EXPONENT:
            return random.uniform(0, self._retry_max)
        return random.uniform(0, min(self._retry_max, self._retry_base * 2**attempt))

    def _forget(self, key: K, state: _KeyState) -> None:
        if self._keys.get(key) is state:
            del self._keys[key]
        if not self._keys:
            self._idle.set()


def _check_settings(
    concurrency: int, retry_base: float, retry_max: float, max_keys: int | None
) -> None:
    if concurrency < 1:
        raise InvalidInput("queue concurrency must be at least 1", "concurrency")
    if retry_base <= 0 or retry_max < retry_base:
        raise InvalidInput("queue retry_base must be > 0 and <= retry_max", "retry_base")
    if max_keys is not None and max_keys < 1:
        raise InvalidInput("queue max_keys must be at least 1", "max_keys")
