"""Service chains on real VNFs: two bump-in-the-wire VMs between a customer namespace and a
network namespace; insert, remove and replace a service while a UDP probe runs, and check
(with OVS per-port counters, not assumed) that traffic crosses the new path; a service that
never becomes healthy leaves the old path forwarding and nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from edgecloud.probe import probe_in_namespaces
from tests.e2e.libvirt_support import RunNames
from tests.e2e.real_site import real_site
from tests.integration.harness import Site, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
BOOT = 240.0
RATE = 300  # packets per second through TCG guests (benchmarks/chain_switch.py goes higher)

SERVICE = """
heat_template_version: 2018-08-31
parameters:
  image: {type: string, default: bitw}
resources:
  left: {type: OS::Neutron::Net}
  right: {type: OS::Neutron::Net}
  vnf:
    type: OS::Nova::Server
    properties:
      image: {get_param: image}
      flavor: small
      networks:
        - {network: {get_resource: left}, tag: in}
        - {network: {get_resource: right}, tag: out}
  service:
    type: Edgecloud::Chain::Service
    properties: {server: {get_resource: vnf}, customer_nic: 0, network_nic: 1}
"""


@dataclass
class Endpoints:
    customer_ns: str
    network_ns: str
    customer_port: str
    network_port: str
    network_ip: str = "10.252.0.2"


@contextlib.asynccontextmanager
async def endpoints(run: RunNames, tmp_path: Path) -> AsyncIterator[Endpoints]:
    """A customer and a network namespace, each with a port on the run's bridge."""
    ovs = OvsNetworkDriver(tmp_path / "ovs-endpoints", bridge=run.bridge)
    ends = Endpoints(f"ecc{run.token}", f"ecn{run.token}", f"ecc{run.token}", f"ecn{run.token}")
    spec = NetworkSpec("chain-endpoints", "chain-endpoints", "vlan", 4000)
    try:
        for ns in (ends.customer_ns, ends.network_ns):
            await asyncio.to_thread(subprocess.run, ["ip", "netns", "add", ns], check=True)
        await ovs.ensure_network(spec)
        await ovs.plug_namespace_port(
            ends.customer_ns, ends.customer_port, spec, ip_cidr="10.252.0.1/24"
        )
        await ovs.plug_namespace_port(
            ends.network_ns, ends.network_port, spec, ip_cidr="10.252.0.2/24"
        )
        yield ends
    finally:
        for port in (ends.customer_port, ends.network_port):
            with contextlib.suppress(Exception):
                await ovs.unplug_port(port)
        for ns in (ends.customer_ns, ends.network_ns):
            await asyncio.to_thread(
                subprocess.run, ["ip", "netns", "del", ns], check=False, capture_output=True
            )


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": SERVICE, "health_timeout": BOOT, **extra}


async def get_chain(site: Site) -> dict[str, Any]:
    return dict((await site.api.get("/v1/chains/c1")).json())


async def settled(site: Site, timeout: float = BOOT + 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        chain = await get_chain(site)
        return chain if chain["operation"] is None and chain["path_applied"] else None

    return dict(await eventually(check, timeout, "chain settled"))


def tx_packets(bridge: str, port: str) -> int:
    """Packets OVS sent out of ``port`` (into the VNF), read live from the switch (the
    statistics column of OVSDB is refreshed only every few seconds)."""
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow14", "dump-ports", bridge, port],
        capture_output=True,
        text=True,
    )
    ports = subprocess.run(
        ["ovs-vsctl", "list-ports", bridge], capture_output=True, text=True
    ).stdout.split()
    assert out.returncode == 0, f"{out.stderr.strip()} (ports on {bridge}: {ports})"
    found = re.search(r"tx pkts=(\d+)", out.stdout)
    assert found, out.stdout
    return int(found[1])


def service_port(site: Site, chain: dict[str, Any], name: str) -> str:
    """The OVS port of the service's customer-facing vNIC."""
    svc = next(s for s in chain["services"] if s["name"] == name)
    return site.agents["node1"].agent.network.vnic_port(svc["instance_id"], svc["customer_vnic"])


async def probe(ends: Endpoints, seconds: float) -> Any:
    return await probe_in_namespaces(
        ends.customer_ns, ends.network_ns, ends.network_ip, RATE, seconds, port=47811
    )


async def pending_vnf_running(site: Site, name: str) -> bool:
    chain = await get_chain(site)
    svc = next((s for s in chain["services"] if s["name"] == name), None)
    if svc is None:
        return False
    vnfs = (await site.api.get("/v1/vnfs")).json()
    return any(v["id"] == svc["instance_id"] and v["status"] == "running" for v in vnfs)


async def change_under_probe(
    site: Site, ends: Endpoints, request: Any, new_service: str | None
) -> Any:
    """Start the change; probe across the switchover (which follows the new VNF's boot)."""
    response = await request
    assert response.status_code == 202, response.text
    if new_service is not None:
        await eventually(
            lambda: pending_vnf_running(site, new_service), BOOT, f"{new_service} started"
        )
    result, chain = await asyncio.gather(probe(ends, 25.0), settled(site))
    return result, chain


async def test_chain_insert_remove_replace_keep_traffic_flowing(tmp_path: Path) -> None:
    async with real_site(tmp_path) as (site, run), endpoints(run, tmp_path) as ends:
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": ends.customer_port,
                "egress_port": ends.network_port, "services": [service("router"), service("firewall")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        chain = await settled(site)
        assert chain["path"] == ["router", "firewall"]
        baseline = await probe(ends, 3.0)
        assert baseline.stats.received > 0.9 * baseline.stats.sent, baseline.summary()

        # insert wanopt after the router while traffic flows
        request = site.api.post("/v1/chains/c1/services", json=service("wanopt", after="router"))
        result, chain = await change_under_probe(site, ends, request, "wanopt")
        assert chain["path"] == ["router", "wanopt", "firewall"]
        assert result.stats.lost == 0, f"insert lost packets: {result.summary()}"
        before = tx_packets(run.bridge, service_port(site, chain, "wanopt"))
        check = await probe(ends, 2.0)
        assert (
            check.stats.received > 0
            and tx_packets(run.bridge, service_port(site, chain, "wanopt")) - before
            >= check.stats.received
        )

        # remove it while traffic flows: the router talks to the firewall again
        firewall_before = tx_packets(run.bridge, service_port(site, chain, "firewall"))
        probing = asyncio.create_task(probe(ends, 10.0))
        await asyncio.sleep(3)
        assert (await site.api.delete("/v1/chains/c1/services/wanopt")).status_code == 202
        chain = await settled(site)
        result = await probing
        assert chain["path"] == ["router", "firewall"]
        assert result.stats.lost == 0, f"remove lost packets: {result.summary()}"
        assert tx_packets(run.bridge, service_port(site, chain, "firewall")) > firewall_before

        # replace the firewall
        request = site.api.put("/v1/chains/c1/services/firewall", json=service("firewall2"))
        result, chain = await change_under_probe(site, ends, request, "firewall2")
        assert chain["path"] == ["router", "firewall2"]
        assert result.stats.lost == 0, f"replace lost packets: {result.summary()}"
        before = tx_packets(run.bridge, service_port(site, chain, "firewall2"))
        check = await probe(ends, 2.0)
        assert (
            tx_packets(run.bridge, service_port(site, chain, "firewall2")) - before
            >= check.stats.received
            > 0
        )
        await eventually(
            lambda: _gone(site, "/v1/stacks/c1-firewall"), 90, "the old firewall's stack deleted"
        )


async def test_service_that_never_becomes_healthy_leaves_old_path(tmp_path: Path) -> None:
    async with real_site(tmp_path) as (site, run), endpoints(run, tmp_path) as ends:
        broken_kernel = tmp_path / "not-a-kernel"
        broken_kernel.write_bytes(b"\0" * 4096)
        image = {"name": "broken", "kernel_path": str(broken_kernel), "cmdline": "console=ttyS0"}
        assert (await site.api.post("/v1/images", json=image)).status_code == 201
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": ends.customer_port,
                "egress_port": ends.network_port, "services": [service("router")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        await settled(site)
        ovs = site.agents["node1"].agent.network
        flows_before = await ovs.steering()  # type: ignore[attr-defined]
        bad = service("broken", parameters={"image": "broken"}, health_timeout=20)
        assert (await site.api.post("/v1/chains/c1/services", json=bad)).status_code == 202
        result, chain = await asyncio.gather(probe(ends, 10.0), settled(site, timeout=120))
        assert chain["path"] == ["router"] and "insert failed, old path kept" in chain["last_error"]
        assert result.stats.received > 0.9 * result.stats.sent, result.summary()
        await eventually(
            lambda: _gone(site, "/v1/stacks/c1-broken"), 90, "the broken stack deleted"
        )
        vnfs = [v["name"] for v in (await site.api.get("/v1/vnfs")).json()]
        assert not [n for n in vnfs if "broken" in n], vnfs
        assert await ovs.steering() == flows_before  # type: ignore[attr-defined]


async def _gone(site: Site, path: str) -> bool:
    return (await site.api.get(path)).status_code == 404
