"""The gateway's protections as pure logic: mass-loss judgement and admission bounds."""

from __future__ import annotations

import asyncio

from edgecloud.gateway.admission import Admission, GatewayStats, Protection
from edgecloud.gateway.liveness import judge
from edgecloud.sim.loading import percentile

LIMIT = 30.0


def test_a_few_silent_hosts_are_declared_offline_one_by_one() -> None:
    gone = {"a": 0.0, "b": 50.0}
    verdict = judge(60.0, gone, 100, LIMIT, Protection())
    assert verdict.offline == ["a"] and not verdict.mass_loss


def test_many_silent_hosts_are_one_event_and_held_off() -> None:
    gone = {f"h{i}": 0.0 for i in range(20)}
    verdict = judge(60.0, gone, 100, LIMIT, Protection())
    assert verdict.mass_loss and verdict.offline == [] and verdict.silent == 20


def test_held_off_hosts_are_declared_after_the_grace() -> None:
    gone = {f"h{i}": 0.0 for i in range(20)}
    verdict = judge(700.0, gone, 100, LIMIT, Protection(mass_loss_grace=600.0))
    assert verdict.mass_loss and len(verdict.offline) == 20


def test_a_storm_shorter_than_the_limit_is_no_event() -> None:
    gone = {f"h{i}": 55.0 for i in range(90)}
    verdict = judge(60.0, gone, 100, LIMIT, Protection())
    assert not verdict.mass_loss and verdict.offline == []


def test_without_protection_every_silent_host_goes_offline() -> None:
    gone = {f"h{i}": 0.0 for i in range(20)}
    verdict = judge(60.0, gone, 100, LIMIT, Protection(enabled=False))
    assert not verdict.mass_loss and len(verdict.offline) == 20


async def test_handshakes_beyond_the_wait_line_are_closed_at_once() -> None:
    stats = GatewayStats()
    admission = Admission(Protection(max_handshakes=1, max_waiting=1, max_wait=5), stats)
    release = asyncio.Event()
    outcomes: list[bool] = []

    async def connect() -> None:
        async with admission.handshake() as admitted:
            outcomes.append(admitted)
            if admitted:
                await release.wait()

    tasks = []
    for _ in range(3):
        tasks.append(asyncio.create_task(connect()))
        await asyncio.sleep(0.01)
    assert outcomes == [True, False]  # one in flight, one waiting, one closed
    release.set()
    await asyncio.gather(*tasks)
    assert outcomes == [True, False, True] and stats.rejected == 1


async def test_syncs_beyond_the_bound_get_a_jittered_retry_after() -> None:
    protection = Protection(max_syncs=1, max_sync_waiting=0, retry_after=(1.0, 3.0))
    admission = Admission(protection, GatewayStats())
    async with admission.sync() as first:
        assert first is None or 1.0 <= first <= 3.0
        async with admission.sync() as second:
            assert second is not None and 1.0 <= second <= 3.0


async def test_without_protection_nothing_is_bounded() -> None:
    admission = Admission(Protection(enabled=False, max_handshakes=1), GatewayStats())
    async with admission.handshake() as a, admission.handshake() as b:
        assert a and b


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([], 99) is None
