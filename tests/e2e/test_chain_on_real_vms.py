"""Service chains on real VNFs: two bump-in-the-wire VMs between a customer namespace and a
network namespace; insert, remove and replace a service while a UDP probe runs, and check
(with OVS per-port counters, not assumed) that traffic crosses the new path; a service that
never becomes healthy leaves the old path forwarding and nothing behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgecloud.images.building import find_host_kernel
from edgecloud.probe import probe_in_namespaces
from tests.e2e.chain_support import BOOT, Endpoints, endpoints, service, tx_packets
from tests.e2e.real_site import real_site
from tests.integration.harness import Site, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
RATE = 300  # packets per second through TCG guests (benchmarks/chain_switch.py goes higher)


async def get_chain(site: Site) -> dict[str, Any]:
    return dict((await site.api.get("/v1/chains/c1")).json())


async def settled(site: Site, timeout: float = BOOT + 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        chain = await get_chain(site)
        return chain if chain["operation"] is None and chain["path_applied"] else None

    return dict(await eventually(check, timeout, "chain settled"))


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
        # a real kernel with no ramdisk: it panics (no root) and never reports its vNICs
        await site.upload_kernel("broken", find_host_kernel(), None, "console=ttyS0 panic=-1")
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
