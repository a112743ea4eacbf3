"""KeyedQueue: coalescing, per-key order, parallelism, retries on a fake clock, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from edgecloud.errors import InvalidInput
from edgecloud.reconcile import queueing
from edgecloud.reconcile.queueing import KeyedQueue, QueueClosed, QueueFull

DEADLINE = 5.0
Handler = Callable[[str], Awaitable[None]]
MakeQueue = Callable[..., KeyedQueue[str]]


class FakeSleep:
    """Records requested delays; returns at once, or blocks until cancelled if ``block``."""

    def __init__(self, *, block: bool = False) -> None:
        self.delays: list[float] = []
        self.cancelled = 0
        self.block = block
        self.called = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.called.set()
        if not self.block:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@pytest.fixture
async def make_queue() -> AsyncIterator[MakeQueue]:
    queues: list[KeyedQueue[str]] = []

    def make(handler: Handler, **kwargs: Any) -> KeyedQueue[str]:
        queues.append(KeyedQueue(handler, name="test", **kwargs))
        return queues[-1]

    yield make
    for queue in queues:
        await queue.close()


async def join(queue: KeyedQueue[str]) -> None:
    await asyncio.wait_for(queue.join(), DEADLINE)


async def wait_for_event(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), DEADLINE)


async def test_join_on_an_empty_queue_returns(make_queue: MakeQueue) -> None:
    async def handler(key: str) -> None:
        raise AssertionError("never called")

    queue = make_queue(handler)
    await join(queue)
    assert queue.pending == 0


async def test_enqueues_of_a_waiting_key_coalesce(make_queue: MakeQueue) -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        if key == "busy":
            await gate.wait()

    queue = make_queue(handler, concurrency=1)
    queue.enqueue("busy")
    for _ in range(3):
        queue.enqueue("a")
        await asyncio.sleep(0)
    assert queue.pending == 2
    gate.set()
    await join(queue)
    assert calls == ["busy", "a"]
    assert queue.pending == 0


async def test_enqueue_during_handling_runs_once_more(make_queue: MakeQueue) -> None:
    calls: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        started.set()
        await gate.wait()

    queue = make_queue(handler)
    queue.enqueue("a")
    await wait_for_event(started)
    for _ in range(3):
        queue.enqueue("a")
    gate.set()
    await join(queue)
    assert calls == ["a", "a"]


async def test_one_key_is_handled_sequentially(make_queue: MakeQueue) -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []

    async def handler(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs.append(key)
        for _ in range(3):
            await asyncio.sleep(0)
        running.discard(key)

    queue = make_queue(handler)
    for _ in range(20):
        queue.enqueue("a")
        queue.enqueue("b")
        await asyncio.sleep(0)
    await join(queue)
    assert overlaps == []
    assert runs.count("a") >= 2 and runs.count("b") >= 2


async def test_different_keys_run_in_parallel(make_queue: MakeQueue) -> None:
    keys = [f"k{i}" for i in range(5)]
    everyone_in = asyncio.Event()
    inside: set[str] = set()

    async def handler(key: str) -> None:
        inside.add(key)
        if len(inside) == len(keys):
            everyone_in.set()
        await everyone_in.wait()  # only returns if all five run at once

    queue = make_queue(handler)
    for key in keys:
        queue.enqueue(key)
    await join(queue)


async def test_concurrency_bounds_parallel_handlers(make_queue: MakeQueue) -> None:
    running = 0
    most = 0

    async def handler(key: str) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1

    queue = make_queue(handler, concurrency=2)
    for i in range(6):
        queue.enqueue(f"k{i}")
    await join(queue)
    assert most == 2


def failing(times: int, calls: list[str]) -> Handler:
    """A handler that raises on its first ``times`` calls, then succeeds."""

    async def handler(key: str) -> None:
        calls.append(key)
        if len(calls) <= times:
            raise RuntimeError(f"boom {len(calls)}")

    return handler


async def test_failures_are_retried_with_bounded_jitter(
    make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    sleep = FakeSleep()
    queue = make_queue(failing(6, calls), retry_base=0.5, retry_max=8.0, sleep=sleep)
    with caplog.at_level(logging.WARNING, logger=queueing.__name__):
        queue.enqueue("vnf-1")
        await join(queue)
    assert len(calls) == 7
    assert len(sleep.delays) == 6
    for attempt, delay in enumerate(sleep.delays):
        assert 0 <= delay <= min(8.0, 0.5 * 2**attempt)
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 6
    assert all("'vnf-1'" in r.getMessage() and r.exc_info for r in failures)


async def test_backoff_ceilings_double_up_to_the_maximum(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing.random, "uniform", lambda low, high: high)
    calls: list[str] = []
    sleep = FakeSleep()
    queue = make_queue(failing(5, calls), retry_base=0.5, retry_max=3.0, sleep=sleep)
    queue.enqueue("a")
    await join(queue)
    assert sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_success_resets_the_backoff(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing.random, "uniform", lambda low, high: high)
    calls: list[str] = []
    outcomes = iter([False, False, True, False, True])

    async def handler(key: str) -> None:
        calls.append(key)
        if not next(outcomes):
            raise RuntimeError("boom")

    sleep = FakeSleep()
    queue = make_queue(handler, retry_base=1.0, retry_max=30.0, sleep=sleep)
    queue.enqueue("a")
    await join(queue)
    queue.enqueue("a")
    await join(queue)
    assert sleep.delays == [1.0, 2.0, 1.0]


async def test_enqueue_during_backoff_retries_at_once(make_queue: MakeQueue) -> None:
    calls: list[str] = []
    sleep = FakeSleep(block=True)
    queue = make_queue(failing(1, calls), sleep=sleep)
    queue.enqueue("a")
    await wait_for_event(sleep.called)
    assert calls == ["a"]
    queue.enqueue("a")
    await join(queue)
    assert calls == ["a", "a"]
    assert sleep.cancelled == 1


async def test_close_leaves_no_tasks(make_queue: MakeQueue) -> None:
    before = asyncio.all_tasks()
    started = asyncio.Event()
    sleep = FakeSleep(block=True)

    async def handler(key: str) -> None:
        if key == "fails":
            raise RuntimeError("boom")
        started.set()
        await asyncio.get_running_loop().create_future()  # runs until cancelled

    queue = KeyedQueue(handler, concurrency=2, sleep=sleep)
    for key in ("fails", "runs", "waits-for-a-slot", "also-waits"):
        queue.enqueue(key)
    await wait_for_event(started)
    await wait_for_event(sleep.called)
    assert queue.pending == 4
    await queue.close()
    assert asyncio.all_tasks() == before
    assert queue.pending == 0
    assert sleep.cancelled == 1
    with pytest.raises(QueueClosed):
        queue.enqueue("late")
    await join(queue)


async def test_queue_full_refuses_new_keys_only(make_queue: MakeQueue) -> None:
    gate = asyncio.Event()

    async def handler(key: str) -> None:
        await gate.wait()

    queue = make_queue(handler, max_keys=2)
    queue.enqueue("a")
    queue.enqueue("b")
    queue.enqueue("a")  # already held: coalesces, no error
    with pytest.raises(QueueFull):
        queue.enqueue("c")
    gate.set()
    await join(queue)
    queue.enqueue("c")
    await join(queue)


@pytest.mark.parametrize(
    "settings",
    [
        {"concurrency": 0},
        {"retry_base": 0.0},
        {"retry_base": 2.0, "retry_max": 1.0},
        {"max_keys": 0},
    ],
)
async def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    async def handler(key: str) -> None:
        pass

    with pytest.raises(InvalidInput):
        KeyedQueue(handler, **settings)
