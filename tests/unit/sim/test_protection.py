"""The gateway's protections as pure logic: mass-loss judgement and admission bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edgecloud.gateway.admission import Admission, GatewayStats, Protection
from edgecloud.gateway.liveness import judge
from edgecloud.sim.loading import percentile
from edgecloud.sim.scenarios import Run, SimOptions, summary

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


def test_stragglers_of_an_event_keep_its_grace_after_it_ends() -> None:
    gone = {"late1": 0.0, "late2": 0.0, "new": 10.0}  # the others of the event are back
    caught = {"late1", "late2"}
    verdict = judge(60.0, gone, 100, LIMIT, Protection(), caught)
    assert not verdict.mass_loss  # 3 of 100 missing: the event is over
    assert verdict.offline == ["new"]  # not caught in the event: the normal limit
    verdict = judge(700.0, gone, 100, LIMIT, Protection(mass_loss_grace=600.0), caught)
    assert sorted(verdict.offline) == ["late1", "late2", "new"]


def test_hosts_missing_together_are_caught_before_their_silence_passes_the_limit() -> None:
    gone = {f"h{i}": 55.0 for i in range(90)}
    verdict = judge(60.0, gone, 100, LIMIT, Protection())
    assert verdict.together and not verdict.mass_loss  # no alarm yet: they may be back soon
    assert not judge(60.0, {"a": 55.0}, 100, LIMIT, Protection()).together
    assert not judge(60.0, gone, 100, LIMIT, Protection(enabled=False)).together


async def test_handshake_slots_bound_the_connections_in_flight() -> None:
    stats = GatewayStats()
    admission = Admission(Protection(max_handshakes=2), stats)
    await admission.handshake_slot()
    await admission.handshake_slot()
    third = asyncio.create_task(admission.handshake_slot())
    await asyncio.sleep(0.01)
    assert not third.done()  # the next connection stays in the kernel's accept queue
    admission.handshake_done()
    await asyncio.wait_for(third, 1)
    assert admission.in_flight == 2 and stats.handshakes_peak == 2


async def test_a_slow_handshake_frees_its_slot_after_the_lease() -> None:
    stats = GatewayStats()
    admission = Admission(Protection(max_handshakes=1, handshake_lease=0.05), stats)
    await admission.handshake_slot()
    stalled = admission.lease()  # a peer that never answers
    waiting = asyncio.create_task(admission.handshake_slot())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await asyncio.wait_for(waiting, 1)  # the lease ran out: the next connection is accepted
    assert stats.handshakes_slow == 1 and admission.in_flight == 1
    stalled.done()  # its handshake ends later: the slot is not freed twice
    quick = admission.lease()
    quick.done()
    assert admission.in_flight == 0 and stats.handshakes_slow == 1
    await asyncio.wait_for(admission.handshake_slot(), 1)  # exactly one slot again
    assert not await _acquired_within(admission, 0.1)


async def _acquired_within(admission: Admission, seconds: float) -> bool:
    try:
        await asyncio.wait_for(admission.handshake_slot(), seconds)
    except TimeoutError:
        return False
    return True


async def test_syncs_beyond_the_bound_get_a_jittered_retry_after() -> None:
    protection = Protection(max_syncs=1, max_sync_waiting=0, retry_after=(1.0, 3.0))
    admission = Admission(protection, GatewayStats())
    async with admission.sync() as first:
        assert first is None or 1.0 <= first <= 3.0
        async with admission.sync() as second:
            assert second is not None and 1.0 <= second <= 3.0


async def test_without_protection_nothing_is_bounded() -> None:
    admission = Admission(Protection(enabled=False, max_handshakes=1), GatewayStats())
    await asyncio.wait_for(admission.handshake_slot(), 1)
    await asyncio.wait_for(admission.handshake_slot(), 1)
    async with admission.sync() as retry_after:
        assert retry_after is None and admission.in_flight == 2


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([], 99) is None


def test_counters_of_a_restarted_controller_start_again(tmp_path: Path) -> None:
    run = Run(SimOptions(state_dir=tmp_path, nodes=1), lambda _: None, t0=0.0)

    def row(t: float, accepted: int, started: float) -> dict[str, Any]:
        keys = ("frames_in", "heartbeats", "retries", "full_syncs", "tls_resumed", "hb_late")
        keys += ("handshakes_failed", "hosts_marked_offline")
        gw = {"accepted": accepted, "time": t, "started": started, **dict.fromkeys(keys, 0)}
        return {"t": t, "phase": "dor", "gw": gw}

    # killed, then restarted at 1.8 s: its first stats already count 3 (and may equal the
    # old controller's count); the new controller's counters start from zero at its start
    run.timeline = [row(1.0, 500, 0.0), row(2.0, 3, 1.8), row(3.0, 10, 1.8)]
    assert summary(run, 1.5, 3.0)["accepted"] == 10
    run.timeline = [row(1.0, 10, 0.0), row(2.0, 10, 1.8), row(3.0, 12, 1.8)]
    assert summary(run, 1.5, 3.0)["accepted"] == 12
    run.timeline = [row(1.0, 5, 0.0), row(2.0, 9, 0.0), row(3.0, 12, 0.0)]  # no restart
    assert summary(run, 1.5, 3.0)["accepted"] == 7
