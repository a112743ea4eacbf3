"""E2E: the traffic probe (edgecloud.probe) between two real network namespaces.

Each test gets namespaces ``ecp<hex>-src`` and ``ecp<hex>-dst`` joined by a veth pair with
10.251.x.y/30 addresses, plus a sink veth inside src (a place to redirect packets to so they
are lost), all removed in a finalizer even when the test fails. Traffic stays inside them.

Impairments sit on the sender's veth. tc netem is used where the kernel has it; these hosts'
kernel is built without sch_netem, so each netem case has a twin built from what it does have:
u32 filters on the probe's sequence number (UDP payload bytes 8..15) with mirred (loss) or an
HTB class (reordering). Those twins are deterministic, so their counts are exact.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecloud.errors import NotFound
from edgecloud.probe import ProbeResult, probe_in_namespaces
from tests.e2e.ovs_support import new_run_id, remove, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]
RATE = 2000
SEQ_LOW_BYTE = 20 + 8 + 15  # from the IP header: IP 20, UDP 8, then magic, run id, seq (u64)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (creates network namespaces, veths and tc qdiscs)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    return f"needs {' and '.join(missing)} (iproute2)" if missing else None


@pytest.fixture(scope="module", autouse=True)
def _needs_root() -> None:
    if reason := _skip_reason():
        pytest.skip(reason)


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth; the probe sends from src to dst_addr."""

    stem: str
    dst_addr: str

    @property
    def src_ns(self) -> str:
        return f"{self.stem}-src"

    @property
    def dst_ns(self) -> str:
        return f"{self.stem}-dst"

    @property
    def src_dev(self) -> str:
        return f"{self.stem}s"

    @property
    def sink_dev(self) -> str:
        return f"{self.stem}x"

    async def probe(
        self,
        started: asyncio.Event | None = None,
        duration_s: float = 1.0,
        run_id: int | None = None,
    ) -> ProbeResult:
        """``duration_s`` at RATE from src to dst."""
        return await probe_in_namespaces(
            self.src_ns,
            self.dst_ns,
            self.dst_addr,
            RATE,
            duration_s,
            started=started,
            run_id=run_id,
        )


@pytest.fixture
def pair() -> Iterator[Pair]:
    stem = f"ecp{new_run_id()[:8]}"
    net = f"10.251.{random.randrange(256)}"
    host = 4 * random.randrange(64)
    made = Pair(stem, f"{net}.{host + 2}")
    try:
        _build(made, f"{net}.{host + 1}")
        yield made
    finally:
        for ns in (made.src_ns, made.dst_ns):
            remove("ip", "netns", "delete", ns)
        for dev in (made.src_dev, made.sink_dev):  # left in the root namespace by a failure
            remove("ip", "link", "delete", dev)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _build(pair: Pair, src_addr: str) -> None:
    for ns in (pair.src_ns, pair.dst_ns):
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
    _run("ip", "link", "add", pair.src_dev, "type", "veth", "peer", "name", f"{pair.stem}d")
    _run("ip", "link", "add", pair.sink_dev, "type", "veth", "peer", "name", f"{pair.stem}y")
    ends: list[tuple[str, str, str | None]] = [
        (pair.src_dev, pair.src_ns, src_addr),
        (f"{pair.stem}d", pair.dst_ns, pair.dst_addr),
    ]
    ends += [(pair.sink_dev, pair.src_ns, None), (f"{pair.stem}y", pair.src_ns, None)]
    for dev, ns, addr in ends:
        _run("ip", "link", "set", dev, "netns", ns)
        if addr is not None:
            _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")


async def tc(pair: Pair, *args: str) -> None:
    await sh("tc", "-n", pair.src_ns, *args)


async def netem_or_skip(pair: Pair, *spec: str) -> None:
    argv = ("tc", "-n", pair.src_ns, "qdisc", "add", "dev", pair.src_dev, "root", "netem", *spec)
    rc, _, err = await sh(*argv, check=False)
    if rc != 0 and "unknown" in err:
        pytest.skip("this kernel has no tc netem (CONFIG_NET_SCH_NETEM); see the u32 twin")
    assert rc == 0, err


async def drop_seqs(pair: Pair, mask: int) -> None:
    """Lose every probe packet whose seq has its ``mask`` bits clear (mask 0: every one)."""
    await tc(pair, "qdisc", "add", "dev", pair.src_dev, "clsact")
    match = ["match", "u8", "0", str(mask), "at", str(SEQ_LOW_BYTE)] if mask else []
    await tc(pair, "filter", "add", "dev", pair.src_dev, "egress", "protocol", "ip", "prio", "1",
             "u32", "match", "ip", "protocol", "17", "0xff", *match,
             "action", "mirred", "egress", "redirect", "dev", pair.sink_dev)  # fmt: skip


async def delay_seqs(pair: Pair, mask: int) -> None:
    """Queue packets whose seq has its ``mask`` bits clear behind a slow HTB class."""
    dev = ["dev", pair.src_dev]
    await tc(pair, "qdisc", "add", *dev, "root", "handle", "1:", "htb", "default", "20")
    await tc(
        pair, "class", "add", *dev, "parent", "1:", "classid", "1:10", "htb", "rate", "200kbit"
    )
    await tc(pair, "class", "add", *dev, "parent", "1:", "classid", "1:20", "htb", "rate", "1gbit")
    await tc(pair, "filter", "add", *dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
             "match", "ip", "protocol", "17", "0xff",
             "match", "u8", "0", str(mask), "at", str(SEQ_LOW_BYTE), "flowid", "1:10")  # fmt: skip


async def test_a_clean_link_loses_and_reorders_nothing(pair: Pair) -> None:
    result = await pair.probe()
    assert result.stats.sent == RATE
    assert (result.stats.lost, result.stats.reordered, result.stats.duplicated) == (0, 0, 0)
    assert result.stats.last_loss_first_seq is None


async def test_netem_loss_of_ten_percent_is_measured(pair: Pair) -> None:
    await netem_or_skip(pair, "loss", "10%")
    result = await pair.probe()
    assert result.stats.received + result.stats.lost == result.stats.sent == RATE
    assert 4.0 <= result.stats.loss_pct <= 18.0, result.summary()


async def test_dropping_every_eighth_packet_is_measured_exactly(pair: Pair) -> None:
    await drop_seqs(pair, mask=0x07)
    result = await pair.probe()
    assert (result.stats.lost, result.stats.loss_pct) == (RATE // 8, 12.5), result.summary()
    assert (result.stats.last_loss_first_seq, result.stats.last_loss_last_seq) == (1992, 1992)
    assert result.stats.reordered == 0


async def test_netem_reordering_is_measured(pair: Pair) -> None:
    await netem_or_skip(pair, "delay", "10ms", "reorder", "25%", "50%")
    result = await pair.probe()
    assert result.stats.reordered > 0, result.summary()
    assert result.stats.lost == 0, result.summary()


async def test_delaying_every_fourth_packet_is_measured_as_reordering(pair: Pair) -> None:
    await delay_seqs(pair, mask=0x03)
    result = await pair.probe()
    assert result.stats.reordered > 0, result.summary()
    assert result.stats.lost == 0, result.summary()  # the receiver lingers for the slow ones


async def test_an_outage_during_the_probe_is_timed(pair: Pair) -> None:
    """The intended use: a change runs concurrently, started relative to the first packet."""
    started = asyncio.Event()
    marks: dict[str, float] = {}

    async def outage() -> None:
        await started.wait()
        await asyncio.sleep(0.3)
        marks["down"] = time.monotonic()
        await drop_seqs(pair, mask=0)
        marks["down_done"] = time.monotonic()
        await asyncio.sleep(0.2)
        marks["up"] = time.monotonic()
        await tc(pair, "qdisc", "del", "dev", pair.src_dev, "clsact")
        marks["up_done"] = time.monotonic()

    result, _ = await asyncio.gather(pair.probe(started=started), outage())
    stats = result.stats
    assert 0.15 * RATE <= stats.lost <= 0.5 * RATE, result.summary()
    assert stats.longest_gap_ms >= 150, result.summary()
    assert stats.longest_gap_at_s is not None and stats.last_loss_at_s is not None
    assert marks["down"] - 0.05 <= stats.longest_gap_at_s <= marks["down_done"] + 0.05
    assert marks["up"] <= stats.last_loss_at_s <= marks["up_done"] + 0.1


async def test_a_missing_namespace_is_not_found(pair: Pair) -> None:
    with pytest.raises(NotFound):
        await probe_in_namespaces(pair.src_ns, f"{pair.dst_ns}-no", pair.dst_addr, RATE, 0.2)


def workers_of(run_id: int) -> list[int]:
    """Pids of live probe workers of this run, found by their command lines."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"edgecloud.probe.worker" in argv and str(run_id).encode() in argv:
            pids.append(int(proc.name))
    return pids


async def test_cancelling_a_probe_kills_both_namespaced_workers(pair: Pair) -> None:
    started, run_id = asyncio.Event(), random.randrange(2**31, 2**32)
    probe = asyncio.create_task(pair.probe(started=started, duration_s=30.0, run_id=run_id))
    await asyncio.wait_for(started.wait(), 20)
    assert len(workers_of(run_id)) == 2  # ip netns exec execs: no wrapper process left over
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert workers_of(run_id) == []
