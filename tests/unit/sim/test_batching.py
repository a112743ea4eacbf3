"""The gateway's coalescing of store work (gateway/batching.py), with a fake flush."""

from __future__ import annotations

import asyncio

import pytest

from edgecloud.gateway.batching import Batcher


class Store:
    """A flush that records its batches and fails the first ``fail`` times."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[dict[str, int]] = []
        self.fail = fail

    async def flush(self, batch: dict[str, int]) -> dict[str, int]:
        if self.fail:
            self.fail -= 1
            raise OSError("database is locked")
        self.batches.append(dict(batch))
        return {key: value * 10 for key, value in batch.items()}


async def test_many_puts_are_one_flush_and_the_newest_value_wins() -> None:
    store = Store()
    batcher: Batcher[str, int, int] = Batcher(store.flush, "test", delay=0.01)
    for i in range(5):
        batcher.put(f"h{i}", i)
    batcher.put("h0", 99)
    await batcher.close()
    assert store.batches == [{"h0": 99, "h1": 1, "h2": 2, "h3": 3, "h4": 4}]


async def test_submit_returns_the_answer_for_its_key() -> None:
    store = Store()
    batcher: Batcher[str, int, int] = Batcher(store.flush, "test", delay=0.01, max_batch=2)
    answers = await asyncio.gather(*(batcher.submit(f"h{i}", i) for i in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert [len(b) for b in store.batches] == [2, 2, 1]


async def test_failed_writes_are_retried_and_waiters_see_the_error() -> None:
    store = Store(fail=1)
    batcher: Batcher[str, int, int] = Batcher(store.flush, "test", delay=0.01)
    batcher.put("write", 1)
    with pytest.raises(OSError):
        await batcher.submit("read", 2)
    await batcher.close()
    assert store.batches == [{"write": 1}]


async def test_a_write_failing_every_time_is_dropped() -> None:
    store = Store(fail=10)
    batcher: Batcher[str, int, int] = Batcher(store.flush, "test", delay=0.001, attempts=3)
    batcher.put("write", 1)
    await batcher.close()
    assert store.batches == [] and store.fail == 7 and batcher.pending == 0
