"""Sender, receiver and the worker orchestration (probe/running.py, probe/worker.py) on
loopback only: in-process endpoints, and worker subprocesses in this network namespace."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from edgecloud.errors import DriverError, InvalidInput
from edgecloud.probe import ProbeStats, pack, probe_in_namespaces, receive, send
from edgecloud.probe.worker import main as worker_main
from edgecloud.probe.worker import parse_address

LOOPBACK = "127.0.0.1"


async def listening(
    stats: ProbeStats, run_id: int, stop: asyncio.Event
) -> tuple[asyncio.Task[int], tuple[str, int]]:
    """A receiver task on a free loopback port, and that port's address once bound."""
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    deadline = time.monotonic() + 20
    task = asyncio.create_task(
        receive((LOOPBACK, 0), run_id, deadline, stats, stop=stop, on_ready=bound.set_result)
    )
    return task, await asyncio.wait_for(bound, 5)


async def test_send_paces_and_receive_counts_every_packet() -> None:
    stats, stop = ProbeStats(), asyncio.Event()
    task, addr = await listening(stats, 42, stop)
    begin = time.monotonic()
    sent = await send(addr, 1000, 0.3, 42)
    elapsed = time.monotonic() - begin
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    stats.sent = sent
    assert sent == 300
    assert elapsed >= 299 / 1000  # the last packet is due 0.299 s after the first
    assert (stats.received, stats.lost, stats.duplicated) == (300, 0, 0)


async def test_receive_ignores_other_runs_and_foreign_datagrams() -> None:
    stats, stop = ProbeStats(), asyncio.Event()
    task, addr = await listening(stats, 1, stop)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=addr)
    try:
        for data in (pack(2, 0, 0), b"hello", pack(1, 0, 0)):
            transport.sendto(data)
    finally:
        transport.close()
    stop.set()
    assert await asyncio.wait_for(task, 5) == 2
    assert stats.received == 1


def send_paced_in_thread(addr: tuple[str, int], run_id: int, count: int) -> threading.Thread:
    """A sender beside the event loop: one packet a millisecond, stamped when it leaves."""

    def sending() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            start = time.monotonic()
            for seq in range(count):
                time.sleep(max(start + seq / 1000 - time.monotonic(), 0.0))
                sock.sendto(pack(run_id, seq, time.monotonic_ns()), addr)

    thread = threading.Thread(target=sending)
    thread.start()
    return thread


async def test_arrivals_are_the_kernels_time_not_when_a_late_receiver_reads_them() -> None:
    # the receiver's loop is blocked 400 ms while packets keep arriving: the gap on the wire
    # stays about a millisecond, and each packet's arrival follows its sending closely
    stats, stop = ProbeStats(sent=600), asyncio.Event()
    task, addr = await listening(stats, 7, stop)
    sender = send_paced_in_thread(addr, 7, 600)
    await asyncio.sleep(0.05)
    time.sleep(0.4)  # noqa: ASYNC251 - the point: a receiver that is not scheduled
    await asyncio.to_thread(sender.join, 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    report = stats.report()
    assert report.received == 600
    assert report.longest_gap_ms < 200, report.summary()
    assert report.longest_gap_sent_after_s is not None and report.longest_gap_at_s is not None
    assert -0.001 <= report.longest_gap_at_s - report.longest_gap_sent_after_s < 0.1


async def test_receive_stops_at_its_deadline_without_a_stop_event() -> None:
    begin = time.monotonic()
    await receive((LOOPBACK, 0), 1, begin + 0.2, ProbeStats(), linger_s=0.05)
    assert 0.2 <= time.monotonic() - begin < 5


@pytest.mark.parametrize(("rate", "duration"), [(0, 1.0), (-5, 1.0), (100, 0.0), (10**9, 1.0)])
async def test_send_refuses_bad_rates_and_durations(rate: int, duration: float) -> None:
    with pytest.raises(InvalidInput):
        await send((LOOPBACK, 9), rate, duration, 1)


async def test_probe_with_workers_in_this_namespace() -> None:
    started = asyncio.Event()
    result = await probe_in_namespaces(None, None, LOOPBACK, 2000, 0.5, port=0, started=started)
    assert started.is_set()
    assert (result.stats.sent, result.stats.received, result.stats.lost) == (1000, 1000, 0)
    assert result.stats.first_arrival_s is not None
    assert result.stats.first_arrival_s >= result.send_started_s
    assert result.as_dict()["achieved_pps"] > 0 and "lost 0" in result.summary()


def workers_of(run_id: int) -> list[int]:
    """Pids of live worker processes of this run (found by their command line)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"edgecloud.probe.worker" in argv and str(run_id).encode() in argv:
            pids.append(int(proc.name))
    return pids


async def test_cancelling_a_probe_kills_its_workers() -> None:
    started, run_id = asyncio.Event(), 31337 + os.getpid()
    probe = asyncio.create_task(
        probe_in_namespaces(
            None, None, LOOPBACK, 1000, 30.0, port=0, run_id=run_id, started=started
        )
    )
    await asyncio.wait_for(started.wait(), 20)
    assert len(workers_of(run_id)) == 2
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert workers_of(run_id) == []


async def test_a_worker_that_cannot_bind_is_a_driver_error() -> None:
    with pytest.raises(DriverError, match="receiver failed"):
        await probe_in_namespaces(None, None, "192.0.2.1", 1000, 0.2, port=0)


async def test_a_probe_that_overruns_its_timeout_is_a_driver_error() -> None:
    with pytest.raises(DriverError, match="within"):
        await probe_in_namespaces(None, None, LOOPBACK, 1000, 5.0, port=0, timeout_s=0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.1:80", ("10.0.0.1", 80)), ("[::1]:5000", ("::1", 5000)), ("h:0", ("h", 0))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["10.0.0.1", ":80", "h:x", "h:70000"])
def test_parse_address_refuses_junk(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_address(text)


def test_worker_reports_bad_arguments_with_exit_status_two(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["send", "--target", "127.0.0.1:9", "--rate", "0", "--duration", "1", "--run-id", "1"]
    assert worker_main(argv) == 2
    assert "rate must be" in capsys.readouterr().err
