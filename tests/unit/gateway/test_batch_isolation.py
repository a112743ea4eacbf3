"""Batcher ``isolate``: one key whose write fails never fails the others' writes in its batch."""

from __future__ import annotations

import asyncio

from edgecloud.gateway.batching import Batcher


class Store:
    def __init__(self, bad: set[str], down: bool = False) -> None:
        self.bad, self.down = bad, down
        self.written: dict[str, int] = {}
        self.flushes = 0

    async def flush(self, batch: dict[str, int]) -> dict[str, None]:
        self.flushes += 1
        if self.down or self.bad & set(batch):
            raise RuntimeError(f"cannot write {sorted(self.bad & set(batch)) or 'anything'}")
        self.written.update(batch)
        return {}


async def _settle(batcher: Batcher[str, int, None]) -> None:
    await batcher.close()


async def test_others_in_the_batch_land_and_the_bad_key_is_reported_once() -> None:
    store, poisoned = Store({"h13"}), []

    async def on_poison(key: str, exc: Exception) -> None:
        poisoned.append((key, str(exc)))

    batcher: Batcher[str, int, None] = Batcher(
        store.flush, "t", delay=0.01, isolate=True, on_poison=on_poison
    )
    for i in range(100):
        batcher.put(f"h{i}", i)
    await _settle(batcher)
    assert set(store.written) == {f"h{i}" for i in range(100)} - {"h13"}
    assert poisoned == [("h13", "cannot write ['h13']")]
    assert store.flushes <= 1 + 2 * 7 + 2  # bisected (not one flush per key), then retried alone


async def test_without_isolation_one_bad_key_fails_the_whole_batch() -> None:
    store = Store({"h13"})
    batcher: Batcher[str, int, None] = Batcher(store.flush, "t", delay=0.01, attempts=1)
    for i in range(20):
        batcher.put(f"h{i}", i)
    await _settle(batcher)
    assert store.written == {}


async def test_a_store_that_is_down_poisons_nobody_and_is_retried() -> None:
    store, poisoned = Store(set(), down=True), []

    async def on_poison(key: str, exc: Exception) -> None:
        poisoned.append(key)

    batcher: Batcher[str, int, None] = Batcher(
        store.flush, "t", delay=0.01, attempts=2, isolate=True, on_poison=on_poison
    )
    for i in range(500):
        batcher.put(f"h{i}", i)
    await _settle(batcher)
    assert poisoned == [] and store.written == {}
    assert store.flushes <= 2 * (1 + 64)  # the isolation budget bounds the work per attempt


async def test_an_awaiting_caller_of_a_poisoned_key_gets_the_error() -> None:
    store = Store({"bad"})
    batcher: Batcher[str, int, None] = Batcher(store.flush, "t", delay=0.01, isolate=True)
    good = asyncio.ensure_future(batcher.submit("good", 1))
    bad = asyncio.ensure_future(batcher.submit("bad", 2))
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert store.written == {"good": 1}
    await _settle(batcher)


async def test_a_key_that_failed_once_alone_and_then_succeeds_is_not_reported() -> None:
    store, poisoned = Store({"h3"}), []

    async def on_poison(key: str, exc: Exception) -> None:
        poisoned.append(key)

    alone: list[int] = []

    async def flaky(batch: dict[str, int]) -> dict[str, None]:
        if set(batch) == {"h3"}:
            alone.append(1)
        if set(batch) == {"h3"} and store.bad:  # isolated: fails once more, then passes
            store.bad.clear()
            raise RuntimeError("a passing conflict")
        return await store.flush(batch)

    batcher: Batcher[str, int, None] = Batcher(
        flaky, "t", delay=0.01, isolate=True, on_poison=on_poison
    )
    for i in range(10):
        batcher.put(f"h{i}", i)
    await _settle(batcher)
    assert set(store.written) == {f"h{i}" for i in range(10)} and poisoned == []
    assert len(alone) == 2  # isolated and failed once, then retried alone and written
