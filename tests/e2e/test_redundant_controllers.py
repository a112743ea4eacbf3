"""E2E: `edgecloud up --nodes 2 --redundant --host-recovery` on real nodes (each its own
libvirtd and bridge), run as a user would (the `edgecloud` command as a subprocess, its own
--config file): a controller on each node, on the replicated PostgreSQL, heartbeats every
0.5 s, a host failed after 4 silent ones (2 s). Issue 11, acceptance (a) and (b) on ONE site
with a 3-service chain of bump-in-the-wire TCG guests attached on node 2 (B), services on
both nodes, under a 200 pps UDP probe between two namespaces on B's bridge.

- the client config and the agents' agent.json name both controllers; `status` says which
  leads, on which node, the database's primary and replica and each host's state;
- (a) SIGKILL of the leading controller's process (node 1's: it starts first): the other
  leads within 2 s (from the kill until its own API names it leader); a write loop
  (keypairs, through the SDK client with the site's client config: it fails over between the
  two addresses by itself) runs through the failover: every write that got a 2xx is there
  afterwards; the chain never stops forwarding (no packet lost or duplicated; the longest
  gap is printed); both hosts stay online, and the killed controller, started again by the
  supervisor, follows;
- (b) node 1 (A) dies whole: the supervisor (every node's service manager here) is frozen,
  then A's controller, agent, database node (pg_autoctl and PostgreSQL, the primary),
  libvirtd, virtlogd and QEMU processes are SIGKILLed in one go. The monitor promotes B's
  database, B's controller leads at a new epoch, A is judged failed, every VNF of A runs
  again on B (a new boot printing, from inside the guest, the same vNICs: PCI address and MAC
  in its own order; the API shows the same slots and MACs) and the chain forwards again.
  The time of each step after the kill is printed.
- (c), on a site of its own: node 1 (A) is only cut off (dropped packets; every process alive):
  A's agent fences A's guests before the recovery on B is committed, B's own guests keep
  running (the monitor vouches for B's controller), the probe never sees a duplicate, and
  when A is back it holds no stale copy and its database is secondary again.

Prints each controller's RSS and PSS (the second controller's footprint, docs/operations.md).
Whatever happens, every frozen process is resumed, the site taken down and the database
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud.allinone import replicated_db
from edgecloud.allinone.nodes import Node
from edgecloud.client import Client
from edgecloud.client.config import load_config
from edgecloud.errors import ClientError
from tests.e2e.host_failure_support import (
    RATE,
    Drill,
    all_dead,
    chain_across_nodes,
    node_pids,
)
from tests.e2e.multinode_support import MultiNodeSite
from tests.e2e.partition_support import Partition
from tests.e2e.site_chain import Chain, bridge_endpoints
from tests.integration.cli_support import poll

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as the postgres user"),
]
SITE = ("--host-recovery", "--heartbeat-interval", "0.5", "--heartbeat-misses", "4",
        "--resync-interval", "1")  # fmt: skip
LEADER_WITHIN = 2.0
DETECT_AFTER_LEADER = 3.0  # issue 11: a dead host detected within 3 s (of a leader to judge)
WRITES_AFTER_KILL = 30
PROBE_A = 12.0  # from 2 s before the kill, past the agents' move to the other controller
# from 2 s before the kill: the database's failover (about 10 s), then the rebuilt guests'
# boot (26 s alone, 45-56 s under load)
PROBE_B = 75.0


@pytest.fixture
def redundant(site: MultiNodeSite) -> Iterator[MultiNodeSite]:
    """The e2e ``site`` (taken down whatever happened), and its database removed after it
    (this finalizer runs before the ``site`` one: the site goes down here first)."""
    try:
        yield site
    finally:
        site.cli.run("down", "--state-dir", str(site.state), check=False)
        replicated_db.teardown(site.state)


def _tls(ca_cert: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_cert)
    context.check_hostname = False
    return context


def _leader(api_url: str, headers: dict[str, str], tls: ssl.SSLContext) -> dict[str, Any] | None:
    """The leader as the controller at ``api_url`` reports it ({id, epoch, ...}; None: no
    answer yet)."""
    try:
        response = httpx.get(f"{api_url}/v1/controllers", headers=headers, verify=tls, timeout=1)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    leader = response.json().get("leader")
    return dict(leader) if leader else None


def _memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
    return fields["Rss"] / 1024, fields["Pss"] / 1024


class WriteLoop:
    """Creates keypairs one after the other through one SDK client until stopped; keeps the
    names that were acknowledged (2xx) and the refusals (any ClientError, with its text)."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.acked: list[tuple[float, str]] = []
        self.refused: list[tuple[float, str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="write-loop", daemon=True)

    def _run(self) -> None:
        with Client(self.config, timeout=10) as client:
            index = 0
            while not self.stop.is_set():
                name = f"kp{index}"
                index += 1
                try:
                    client.create_keypair(name)
                except ClientError as exc:
                    self.refused.append((time.monotonic(), name, str(exc)))
                else:
                    self.acked.append((time.monotonic(), name))

    def acked_after(self, moment: float) -> int:
        return sum(1 for at, _ in self.acked if at > moment)


async def _until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Site:
    """The redundant site as the test sees it: its controllers, the admin's API access."""

    def __init__(self, site: MultiNodeSite) -> None:
        self.site = site
        self.info = site.info()
        self.config = load_config(site.cli.config)
        self.by_child = {c["child"]: c for c in self.info["controllers"]}
        self.headers = {"Authorization": f"Bearer {self.config.token}"}
        self.tls = _tls(self.config.ca_cert)

    def leader(self, child: str) -> dict[str, Any] | None:
        return _leader(self.by_child[child]["api_url"], self.headers, self.tls)

    def api(self, child: str) -> httpx.AsyncClient:
        tls = ssl.create_default_context(cafile=self.config.ca_cert)
        return httpx.AsyncClient(
            base_url=self.by_child[child]["api_url"], headers=self.headers, verify=tls, timeout=30
        )


def _check_the_site(site: MultiNodeSite, found: Site) -> dict[str, Any]:
    """Both controllers named everywhere; status names the leader, primary, replica, hosts.
    Returns the leading controller (node 1's: it started first)."""
    assert set(found.by_child) == {"controller", "controller-n2"}
    assert set(found.config.every_url) == {c["api_url"] for c in found.by_child.values()}
    for node in site.layout().nodes:  # every agent knows both controllers' gateways
        agent = json.loads((node.state_dir / "agent.json").read_text())
        assert set(agent["controllers"]) == {c["gateway"] for c in found.by_child.values()}
    for child in found.by_child:
        rss, pss = _memory(found.info["pids"][child])
        print(f"{child}: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")

    status = site.cli.json("status", "--state-dir", str(site.state))
    leaders = [c for c in status["controllers"]["controllers"] if c["leads"] and c["up"]]
    assert len(leaders) == 1 and leaders[0]["node"] is not None, status["controllers"]
    assert status["database"]["primary"] == "n1" and status["database"]["replicas"] == ["n2"]
    assert {(h["name"], h["availability"]) for h in status["hosts"]} == {
        (n.host, "online") for n in site.layout().nodes
    }
    text = site.cli.run("status", "--state-dir", str(site.state)).stdout
    assert "database primary n1  replica n2" in text and "  leads  " in text, text
    leading = next(c for c in found.by_child.values() if c["api_url"] == leaders[0]["api_url"])
    assert leading["child"] == "controller", f"node 2's controller leads: {leaders}"
    return leading


def _up(site: MultiNodeSite) -> Site:
    """`up --nodes 2 --redundant` with the two-node settings, as a user runs it."""
    site.cli.run(
        "--config", str(site.cli.config), "up", "--nodes", "2", "--redundant", "--detach",
        "--state-dir", str(site.state), "--api-port", "0", "--gateway-port", "0", *SITE,
    )  # fmt: skip
    return Site(site)


def _catalogue(site: MultiNodeSite) -> None:
    site.cli.run("image", "build", "bump-in-the-wire", "--name", "bitw")
    site.cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")


@pytest.mark.scenario  # 2.7 min: `make scenarios` keeps `make test` under 45 min
async def test_a_redundant_site_under_a_chain_loses_its_leader_then_a_whole_node(
    tmp_path: Path, redundant: MultiNodeSite, failure_namespaces: list[str]
) -> None:
    site = redundant
    found = _up(site)
    leading = _check_the_site(site, found)
    _catalogue(site)
    _, node_b = site.layout().nodes
    assert node_b.bridge
    async with (
        found.api("controller-n2") as api,  # node B's: it answers through (a) and (b)
        bridge_endpoints(tmp_path, node_b.bridge, failure_namespaces) as ports,
    ):
        chain = Chain(api, *failure_namespaces)
        drill, before, alive = await chain_across_nodes(site, api, chain, ports)
        try:
            await _leader_killed(site, found, leading, chain)
            await _node_killed(site, found, drill, before, alive)
        finally:
            drill.thaw_all()
        print(f"steps (s after node A was killed): {json.dumps(drill.steps)}")


async def _leader_killed(
    site: MultiNodeSite, found: Site, leading: dict[str, Any], chain: Chain
) -> None:
    """(a): SIGKILL of the leading controller under the write loop and the probe."""
    other = next(c for c in found.by_child.values() if c is not leading)
    was = await asyncio.to_thread(found.leader, other["child"])
    assert was is not None, "no leader"
    probing = asyncio.create_task(chain.probe(PROBE_A, RATE))
    loop = WriteLoop(site.cli.config)
    loop.thread.start()
    try:
        await _until(lambda: asyncio.sleep(0, len(loop.acked) >= 10), 30, "the first writes")
        await asyncio.sleep(1.0)  # the probe runs 2 s before the kill
        os.kill(found.info["pids"][leading["child"]], signal.SIGKILL)
        killed = time.monotonic()

        async def new_leader() -> dict[str, Any] | None:
            got = await asyncio.to_thread(found.leader, other["child"])
            return got if got is not None and got["id"] != was["id"] else None

        now_leads = await _until(new_leader, 10, "the other controller leading")
        took = time.monotonic() - killed
        print(f"(a) new leader {now_leads['id']} {took:.2f} s after SIGKILL of {leading['child']}")
        await _until(
            lambda: asyncio.sleep(0, loop.acked_after(killed) >= WRITES_AFTER_KILL),
            60,
            f"{WRITES_AFTER_KILL} writes acknowledged after the kill",
        )
    finally:
        loop.stop.set()
        await asyncio.to_thread(loop.thread.join, 30)
    result = await probing
    after = [at - killed for at, _ in loop.acked if at > killed]
    print(
        f"(a) write loop: {len(loop.acked)} acknowledged ({len(after)} after the kill, the "
        f"first {after[0]:.2f} s after it), {len(loop.refused)} refused: "
        f"{sorted({why for _, _, why in loop.refused})}"
    )
    print(f"(a) probe through the chain across the kill: {result.summary()}", flush=True)
    assert took < LEADER_WITHIN, f"a new leader took {took:.2f} s"
    assert result.stats.lost == 0 and result.stats.duplicated == 0, result.summary()

    with Client(found.config) as client:
        stored = {k["name"] for k in client.list_keypairs()}
        missing = [name for _, name in loop.acked if name not in stored]
        assert not missing, f"acknowledged writes lost: {missing}"
        # the agents found the surviving controller; the killed one is back and follows
        poll(
            lambda: all(h["availability"] == "online" for h in client.list_hosts()),
            30,
            "both hosts online after the failover",
        )
    restarted = site.info()["pids"][leading["child"]]
    assert restarted != found.info["pids"][leading["child"]]

    def settled() -> bool:  # the killed one's row counts as down 5 s after its last refresh
        status = site.cli.json("status", "--state-dir", str(site.state))["controllers"]
        up = [(c["api_url"], c["leads"]) for c in status["controllers"] if c["up"]]
        return sorted(up) == sorted([(other["api_url"], True), (leading["api_url"], False)])

    await asyncio.to_thread(poll, settled, 30, "the killed controller back, following")


async def _node_killed(
    site: MultiNodeSite,
    found: Site,
    drill: Drill,
    before: dict[str, dict[str, Any]],
    alive: dict[str, Any],
) -> None:
    """(b): node A (its controller, agent, database node, hypervisor and guests) dies whole."""
    cluster = replicated_db.Cluster.load(site.state)
    assert cluster is not None
    db_a = next(m for m in cluster.nodes if m.name == drill.a.child.rsplit("-", 1)[-1])
    assert await asyncio.to_thread(cluster.primary) == db_a.name, "A's database is not primary"
    leader_b = await asyncio.to_thread(found.leader, "controller-n2")
    assert leader_b is not None, "no leader"
    probing = asyncio.create_task(drill.chain.probe(PROBE_B, RATE))
    await asyncio.sleep(2)
    pids = drill.pids()
    victims = [pids["controller"], *node_pids(drill.a, pids[drill.a.child])]
    drill.freeze(pids["supervisor"])  # node A's service manager dies with it
    drill.t0 = time.monotonic()
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.kill_now(db_a)
    drill.step(f"node A killed ({len(victims)} processes + database node {db_a.name})")
    await drill.until(lambda: all_dead(victims), 10, "node A's processes gone")

    async def primary() -> bool:
        return await asyncio.to_thread(cluster.primary) not in (None, db_a.name)

    async def leads() -> bool:
        got = await asyncio.to_thread(found.leader, "controller-n2")
        return got is not None and got["id"] == leader_b["id"] and got["epoch"] > leader_b["epoch"]

    async def failed() -> bool:
        return await drill.host_state(drill.a.host) == "offline"

    await asyncio.gather(
        drill.watch(primary, "B's database primary (the monitor promoted it)"),
        drill.watch(leads, "B's controller leads (a new epoch)"),
        drill.watch(failed, "A detected failed (offline)"),
    )
    led = drill.steps["B's controller leads (a new epoch)"]
    detected = drill.steps["A detected failed (offline)"]
    assert detected - led <= DETECT_AFTER_LEADER, f"detected {detected - led:.2f} s after leading"
    await drill.recovered(before, alive)
    result = await probing
    print(f"  probe during the failure: {result.summary()}", flush=True)
    stats = result.stats
    assert stats.duplicated == 0, result.summary()
    assert stats.longest_gap_before_seq is not None, "the chain never forwarded again"
    assert stats.longest_gap_at_s is not None and stats.longest_gap_at_s >= drill.t0 - 1.0, (
        "the longest gap is not the failure's"
    )
    back = stats.longest_gap_at_s + stats.longest_gap_ms / 1000 - drill.t0
    drill.steps["the chain forwards again"] = round(back, 2)
    print(f"  +{back:6.2f} s  the chain forwards again (end of the probe's gap)")
    check = await drill.chain.probe(3.0, RATE)
    assert check.stats.lost == 0, f"after the recovery: {check.summary()}"


PROBE_C = 75.0  # from 2 s before the cut: the failover, then the rebuilt guests' boot


def _qemu_pids(node: Node) -> dict[str, int]:
    """The node's running QEMU processes by domain (their pid files)."""
    assert node.hypervisor_root is not None
    found = {}
    for path in (node.hypervisor_root / "run" / "qemu").glob("ec-*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.read_text().strip())
            if Path(f"/proc/{pid}").exists():
                found[path.stem] = pid
    return found


async def test_a_redundant_site_with_a_node_cut_off_never_forwards_twice(
    tmp_path: Path, redundant: MultiNodeSite, failure_namespaces: list[str]
) -> None:
    """(c): node A (node 1: its controller, agent, database node, which holds the primary,
    libvirtd and guests) is cut off from node B and the monitor, every process alive
    (tests/e2e/partition_support.py: dropped packets, nothing closed). A's controller can no
    longer say that the leader hears of A's host, so it stops answering A's agent, which fences
    A's guests; B's controller, cut from the store too until the monitor has promoted B's
    database, is vouched for by the monitor (it reaches B's database node only), so B's agent
    keeps B's guests. B leads, judges A failed, rebuilds A's VNFs on B. At no moment do two
    copies forward (the probe sees no duplicate); when A is back it holds no stale copy, its
    database rejoins as secondary and its host is online again."""
    problem = Partition.problem()
    if problem:
        pytest.skip(problem)
    site = redundant
    found = _up(site)
    _catalogue(site)
    node_a, node_b = site.layout().nodes
    assert node_b.bridge
    cluster = replicated_db.Cluster.load(site.state)
    assert cluster is not None
    db_a, db_b = cluster.nodes
    async with (
        found.api("controller-n2") as api,
        bridge_endpoints(tmp_path, node_b.bridge, failure_namespaces) as ports,
    ):
        chain = Chain(api, *failure_namespaces)
        drill, before, alive = await chain_across_nodes(site, api, chain, ports)
        assert await asyncio.to_thread(cluster.primary) == db_a.name
        pids = drill.pids()
        roots = [pids["controller"], *node_pids(node_a, pids[node_a.child])]
        roots += [cluster._autoctl_pid(db_a) or 0, cluster._postmaster_pid(db_a) or 0]
        partition = Partition(
            roots, node_a.address, db_a.port, node_b.address, [db_b.port, cluster.monitor.port]
        )
        guests_a, guests_b = _qemu_pids(node_a), _qemu_pids(node_b)
        assert guests_a and guests_b, (guests_a, guests_b)
        probing = asyncio.create_task(chain.probe(PROBE_C, RATE))
        try:
            await asyncio.sleep(2)
            drill.t0 = time.monotonic()
            partition.cut()
            drill.step(f"node A cut off ({len(partition.pids)} processes, all alive)")

            async def fenced() -> bool:
                return not set(_qemu_pids(node_a).values()) & set(guests_a.values())

            async def primary() -> bool:
                return await asyncio.to_thread(cluster.primary) == db_b.name

            async def failed() -> bool:
                return await drill.host_state(node_a.host) == "offline"

            await asyncio.gather(
                drill.watch(fenced, "A's agent fenced A's guests (their QEMU processes gone)"),
                drill.watch(primary, "B's database primary (the monitor promoted it)"),
                drill.watch(failed, "A detected failed (offline)"),
            )
            await drill.recovered(before, alive)
            result = await probing
        finally:
            partition.mend()
            if not probing.done():
                probing.cancel()
        drill.step("node A back (the partition mended)")
        print(f"  probe during the cut-off: {result.summary()}", flush=True)
        assert (
            drill.steps["A's agent fenced A's guests (their QEMU processes gone)"]
            < drill.steps["A's VNFs placed on B (recovery committed)"]
        ), "the recovery was committed before A's copies were stopped"
        assert result.stats.duplicated == 0, result.summary()
        kept = {name: pid for name, pid in guests_b.items() if _qemu_pids(node_b).get(name) == pid}
        assert kept == guests_b, f"B's own guests were stopped too: {guests_b} -> {kept}"

        async def online() -> bool:
            return await drill.host_state(node_a.host) == "online"

        await drill.until(online, 60, "A online again")
        drill.step("A online again")
        await drill.until(
            lambda: asyncio.to_thread(
                lambda: cluster.states().get(db_a.name, {}).get("reported") == "secondary"
            ),
            120,
            "A's database back as secondary",
        )
        drill.step("A's database secondary again")
        await asyncio.sleep(3)  # A holds no copy of the VNFs that now run on B
        assert not _qemu_pids(node_a), f"stale copies on A: {_qemu_pids(node_a)}"
        check = await chain.probe(3.0, RATE)
        assert check.stats.lost == 0, f"after A's return: {check.summary()}"
        print(f"steps (s after node A was cut off): {json.dumps(drill.steps)}")
