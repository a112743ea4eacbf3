"""E2E, real Open vSwitch, no VMs: a chain across two nodes' bridges, changed under a probe.

Two node bridges (each driven by its own OvsNetworkDriver with an ``uplink``) joined by
patch-port trunks through a third, plain learning bridge standing in for the site switch.
Network namespaces stand in for the VNFs (a Linux bridge inside joins the service's two
vNIC ports: a bump in the wire) and for the customer and the network at the ingress and
egress of node A. The per-node flows come from chains/planning.py, phase by phase, exactly as
the controller sends them (additive -> switched -> final), applied by the real driver: one
bundle per node, the nodes 0.1 s apart. A 1,000 pps probe runs through each change.
Names carry a per-run stem; everything is removed in a finalizer, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgecloud.chains import planning
from edgecloud.chains.planning import HostFlows, Port, ServiceHop
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver, default_datapath_type
from edgecloud.probe import ProbeResult, probe_in_namespaces
from tests.e2e.ovs_support import delete_bridge, new_run_id, remove, sh, skip_without_ovs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
RATE = 1000
NODES = ("a", "b")
SPEC = NetworkSpec("chain-e2e", "chain-e2e", "vlan", 2999)  # the endpoints' access VLAN
DRAIN = 0.5
BETWEEN_NODES = 0.1  # one node commits each phase this long after the other


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs() -> None:
    skip_without_ovs()


@dataclass
class Site:
    """Two nodes and a switch on this machine, as the chain's dataplane sees them."""

    stem: str
    root: Path
    drivers: dict[str, OvsNetworkDriver] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    instances: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, node)
    tags: dict[str, int] = field(default_factory=dict)
    subnet: str = f"10.253.{random.randrange(256)}"
    vlans: int = 2100  # the services' networks (below the hop tags)
    next_tag: int = planning.HOP_TAGS.start - 1
    commits: list[tuple[str, int, float]] = field(default_factory=list)  # node, flows, ms

    @property
    def customer(self) -> str:
        return f"{self.stem}-cust"

    @property
    def network(self) -> str:
        return f"{self.stem}-net"

    async def build(self) -> None:
        switch = f"{self.stem}s"
        dp = default_datapath_type()
        await sh("ovs-vsctl", "add-br", switch, "--", "set", "Bridge", switch,
                 f"datapath_type={dp}")  # fmt: skip
        for node in NODES:
            bridge, uplink, far = f"{self.stem}{node}", f"{self.stem}u{node}", f"{self.stem}s{node}"
            driver = OvsNetworkDriver(self.root / node, bridge=bridge, uplink=uplink)
            await driver.setup()  # adds the uplink as a trunk port; the patch makes it a link
            await driver.ensure_network(SPEC)
            await sh(
                "ovs-vsctl", "--may-exist", "add-port", bridge, uplink, "--", "set", "Interface", uplink,
                "type=patch", f"options:peer={far}", "--", "add-port", switch, far, "--",
                "set", "Interface", far, "type=patch", f"options:peer={uplink}",
            )  # fmt: skip
            self.drivers[node] = driver
        a = self.drivers["a"]
        for ns, port, host in ((self.customer, "cust0", 1), (self.network, "net0", 2)):
            await self._namespace(ns)
            await a.plug_namespace_port(
                ns, self._port(port), SPEC, None, f"{self.subnet}.{host}/24"
            )

    def _port(self, name: str) -> str:
        return f"{self.stem}{name[0]}"  # cust0 -> <stem>c, net0 -> <stem>n

    async def _namespace(self, name: str) -> None:
        await sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        await sh("ip", "-n", name, "link", "set", "lo", "up")

    async def add_service(self, name: str, node: str) -> None:
        """A namespace whose Linux bridge joins the service's two vNIC ports on ``node``."""
        instance_id = f"{random.getrandbits(32):08x}-e2e"
        ns = f"{self.stem}-{name}"
        await self._namespace(ns)
        await sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        for index in (0, 1):
            # each vNIC on a network of its own (as a service's left and right networks):
            # two ports of one VLAN joined by the namespace's bridge would loop via NORMAL
            spec = NetworkSpec(f"{name}-{index}", f"{name}-{index}", "vlan", self._vlan())
            await self.drivers[node].ensure_network(spec)
            port = self.drivers[node].vnic_port(instance_id, index)
            await self.drivers[node].plug_namespace_port(ns, port, spec)
            await sh("ip", "-n", ns, "link", "set", port, "master", "br0")
        await sh("ip", "-n", ns, "link", "set", "br0", "up")
        self.instances[name] = (instance_id, node)

    def _vlan(self) -> int:
        self.vlans += 1
        return self.vlans

    def plan(self, path: list[str]) -> dict[str, HostFlows]:
        """The per-node flows of ``path`` (fresh tags for new hops, kept ones for the rest)."""
        services = [ServiceHop(self.instances[n][0], 0, 1) for n in path]
        hops = planning.hops(
            Port(name=self._port("cust0")), Port(name=self._port("net0")), services
        )
        where = {self._port("cust0"): ("a",), self._port("net0"): ("a",)}
        for instance_id, node in self.instances.values():
            for index in (0, 1):
                where[Port(instance_id=instance_id, vnic_index=index).key()] = (node,)
        for direction in planning.directions(hops):
            if planning.hop_id(direction) not in self.tags:  # fresh, never reused (as the
                self.next_tag += 1  # controller: least recently released last)
                self.tags[planning.hop_id(direction)] = self.next_tag
        return planning.host_flows(hops, where, self.tags)

    async def apply(self, flows: dict[str, HostFlows]) -> float:
        """Commit each node's flows (node a, then b 0.1 s later); returns when b committed.
        Each node's commit time (one bundle) is kept in ``commits``."""
        for i, node in enumerate(NODES):
            if i:
                await asyncio.sleep(BETWEEN_NODES)
            t0 = time.monotonic()
            n = await self.drivers[node].apply_steering(
                planning.to_wire(flows.get(node, {})), False
            )
            self.commits.append((node, n, round((time.monotonic() - t0) * 1000, 1)))
        return time.monotonic()

    async def change(self, old: list[str], new: list[str]) -> dict[str, Any]:
        """Make before break, as reconcile/chains.py does it; returns phase durations (ms)."""
        before, after = self.plan(old), self.plan(new)
        self.commits.clear()
        t0 = time.monotonic()
        t1 = await self.apply(planning.additive(before, after))
        t2 = await self.apply(planning.switched(before, after))
        switch = self.commits[2:4]
        await asyncio.sleep(DRAIN)
        await self.apply(after)
        keep = {planning.hop_id(h) for h in planning.directions(self._hops(new))}
        self.tags = {hop: tag for hop, tag in self.tags.items() if hop in keep}
        return {
            "prepare_ms": round((t1 - t0) * 1000, 1),
            "switch_ms": round((t2 - t1) * 1000, 1),  # includes BETWEEN_NODES
            "switch_bundles": switch,  # (node, flows changed, commit ms)
        }

    def _hops(self, path: list[str]) -> list[planning.Hop]:
        services = [ServiceHop(self.instances[n][0], 0, 1) for n in path]
        return planning.hops(
            Port(name=self._port("cust0")), Port(name=self._port("net0")), services
        )

    async def probe(self, seconds: float, started: asyncio.Event | None = None) -> ProbeResult:
        return await probe_in_namespaces(
            self.customer, self.network, f"{self.subnet}.2", RATE, seconds, started=started
        )

    async def rx(self, name: str) -> int:
        """Packets the service's customer-side port received (inside its namespace)."""
        instance_id, node = self.instances[name]
        _, out, _ = await sh("ip", "-n", f"{self.stem}-{name}", "-j", "-s", "link", "show",
                             self.drivers[node].vnic_port(instance_id, 0))  # fmt: skip
        return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[Site]:
    site = Site(f"ec{new_run_id()[:8]}", tmp_path)
    try:
        await site.build()
        yield site
    finally:
        for driver in site.drivers.values():
            await driver.close()  # the OpenFlow connections its steering opened
        for ns in site.namespaces:
            remove("ip", "netns", "delete", ns)
        for bridge in (*(f"{site.stem}{n}" for n in NODES), f"{site.stem}s"):
            delete_bridge(bridge)


async def under_probe(
    site: Site, old: list[str], new: list[str]
) -> tuple[ProbeResult, dict[str, Any]]:
    """A 3 s probe with the change starting 1 s into it."""
    started = asyncio.Event()

    async def change() -> dict[str, Any]:
        await started.wait()
        await asyncio.sleep(1.0)
        return await site.change(old, new)

    result, timing = await asyncio.gather(site.probe(3.0, started), change())
    return result, timing


async def test_chain_across_two_nodes_changes_with_no_loss(tmp_path: Path) -> None:
    async with two_nodes(tmp_path) as site:
        await site.add_service("s1", "a")
        await site.add_service("s2", "b")
        await site.apply(site.plan(["s1", "s2"]))
        flows = await site.drivers["b"].steering()
        assert any("dl_vlan=" in match for match in flows), flows  # node b gets tagged hops
        warm = await site.probe(1.0)  # ARP learnt through the chain, path proven
        assert warm.stats.received > 0, warm.summary()
        figures: dict[str, Any] = {}
        await site.add_service("s3", "b")
        await site.add_service("s4", "a")
        for kind, old, new in (
            ("insert", ["s1", "s2"], ["s1", "s3", "s2"]),  # s3 on b between a and b
            ("replace", ["s1", "s3", "s2"], ["s1", "s3", "s4"]),  # s2 (b) -> s4 (a)
            ("remove", ["s1", "s3", "s4"], ["s1", "s4"]),  # s3 (b) out
        ):
            rx = {name: await site.rx(name) for name in new}
            result, timing = await under_probe(site, old, new)
            figures[kind] = {**timing, "longest_gap_ms": result.stats.longest_gap_ms}
            assert result.stats.sent > 2000 and result.stats.lost == 0, (kind, result.summary())
            for name in new:
                assert await site.rx(name) > rx[name], f"{kind}: no traffic through {name}"
        print("chain across nodes, real OVS:", figures)
