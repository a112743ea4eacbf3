"""Issue 10's acceptance on `edgecloud up --nodes 2` with real QEMU guests and Open vSwitch:

- a 3-service chain (bump-in-the-wire VNFs) spread over both nodes forwards a UDP probe
  between two namespaces plugged into node 1's bridge (the chain's attachment host);
- inserting, removing and replacing a service while the probe runs loses 0 packets;
- the middle service migrated live to the other node under a 1,000 pps probe: the guest
  prints, from inside, the same kernel boot id and the same vNICs (PCI address and MAC, in
  its own order) on the destination's console; the API shows the same slots and MACs; the
  probe's loss and longest gap are printed;
- `host lock` of node 2 empties it (its services move live to node 1) with the chain still
  forwarding; `host unlock` returns it to service.

Traffic stays inside the test's namespaces (10.252.0.x). The site is taken down afterwards
whatever happens (the ``site`` fixture), the namespaces deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from edgecloud.images.building import GuestAlive, parse_alive
from edgecloud.probe import probe_in_namespaces
from tests.e2e.chain_support import BOOT, service
from tests.e2e.multinode_support import MultiNodeSite
from tests.integration.harness import eventually

# a long real-VM scenario (2-3 min a test): `make scenarios`, not `make test` (README, Tests)
pytestmark = [pytest.mark.e2e, pytest.mark.scenario, pytest.mark.timeout(1500)]
RATE = 300  # pps through three TCG guests while services change
MIGRATION_RATE = 1000  # the probe rate for the live migration
VLAN = 2999  # the endpoints' network, below the hop tags (3000-4094)


class Chain:
    """The chain ``c1`` through the API, and the probe between its two endpoints."""

    def __init__(self, api: httpx.AsyncClient, customer_ns: str, network_ns: str) -> None:
        self.api, self.customer_ns, self.network_ns = api, customer_ns, network_ns

    async def get(self) -> dict[str, Any]:
        response = await self.api.get("/v1/chains/c1")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def settled(self, timeout: float = BOOT + 60) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            chain = await self.get()
            return chain if chain["operation"] is None and chain["path_applied"] else None

        return dict(await eventually(check, timeout, "chain settled"))

    async def probe(self, seconds: float, rate: int = RATE) -> Any:
        return await probe_in_namespaces(
            self.customer_ns, self.network_ns, "10.252.0.2", rate, seconds, port=47813
        )

    async def change(self, request: Any, seconds: float = 25.0) -> tuple[Any, dict[str, Any]]:
        """Start a change; probe across its switchover; the result and the settled chain."""
        response = await request
        assert response.status_code == 202, response.text
        result, chain = await asyncio.gather(self.probe(seconds), self.settled())
        return result, chain

    async def hosts(self) -> dict[str, str]:
        """Service name -> the host its VNF runs on."""
        chain = await self.get()
        vnfs = {v["id"]: v for v in (await self.api.get("/v1/vnfs")).json()}
        return {
            s["name"]: vnfs[s["instance_id"]]["host"]
            for s in chain["services"]
            if s["state"] == "active"
        }

    async def vnf_of(self, service_name: str) -> dict[str, Any]:
        chain = await self.get()
        svc = next(s for s in chain["services"] if s["name"] == service_name)
        vnfs = {v["id"]: v for v in (await self.api.get("/v1/vnfs")).json()}
        return dict(vnfs[svc["instance_id"]])


@pytest.fixture
def namespaces() -> Any:
    names = [f"ecx{secrets.token_hex(3)}-{side}" for side in ("c", "n")]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


async def test_a_chain_across_two_nodes_changes_migrates_and_survives_a_host_lock(
    tmp_path: Path, site: MultiNodeSite, namespaces: list[str]
) -> None:
    site.up()
    site.cli.run("image", "build", "bump-in-the-wire", "--name", "bitw")
    site.cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")
    node1, node2 = site.layout().nodes
    assert node1.bridge and node2.bridge
    async with _api(site) as api, _endpoints(tmp_path, node1.bridge, namespaces) as ports:
        chain = Chain(api, *namespaces)
        body = {"name": "c1", "customer": "acme", "host": node1.host, "ingress_port": ports[0],
                "egress_port": ports[1],
                "services": [service("router"), service("firewall"), service("nat")]}  # fmt: skip
        assert (await api.post("/v1/chains", json=body)).status_code == 202, "chain create"
        await chain.settled()
        where = await chain.hosts()
        assert set(where.values()) == {node1.host, node2.host}, f"not spread: {where}"
        baseline = await chain.probe(3.0)
        assert baseline.stats.received > 0.9 * baseline.stats.sent, baseline.summary()

        # insert, remove, replace across nodes while the probe runs
        insert = api.post("/v1/chains/c1/services", json=service("wanopt", after="firewall"))
        result, c = await chain.change(insert)
        assert c["path"] == ["router", "firewall", "wanopt", "nat"]
        assert result.stats.lost == 0, f"insert lost packets: {result.summary()}"
        result, c = await chain.change(api.delete("/v1/chains/c1/services/wanopt"), 10.0)
        assert c["path"] == ["router", "firewall", "nat"]
        assert result.stats.lost == 0, f"remove lost packets: {result.summary()}"
        result, c = await chain.change(api.put("/v1/chains/c1/services/nat", json=service("nat2")))
        assert c["path"] == ["router", "firewall", "nat2"]
        assert result.stats.lost == 0, f"replace lost packets: {result.summary()}"

        # live migration of the middle service under 1,000 pps
        before = await chain.vnf_of("firewall")
        alive_before = await _alive(api, before["name"])
        target = node2.host if before["host"] == node1.host else node1.host
        probing = asyncio.create_task(chain.probe(20.0, MIGRATION_RATE))
        await asyncio.sleep(3)
        moved = await api.post(f"/v1/vnfs/{before['name']}/migrate", json={"host": target})
        assert moved.status_code == 202, moved.text
        migration = await _migration_done(api, moved.json()["id"])
        result = await probing
        print(f"live migration under {MIGRATION_RATE} pps: {result.summary()}; "
              f"QEMU: {migration['stats']}")  # fmt: skip
        after = await chain.vnf_of("firewall")
        assert after["host"] == target and after["boot_id"] == before["boot_id"]
        assert [(n["pci_slot"], n["mac"]) for n in after["nics"]] == [
            (n["pci_slot"], n["mac"]) for n in before["nics"]
        ]
        alive_after = await _alive(api, after["name"])
        assert alive_after.boot == alive_before.boot, "the guest rebooted (kernel boot id)"
        assert alive_after.vnics == alive_before.vnics, "the guest's vNICs changed"
        assert result.stats.received > 0.5 * result.stats.sent, result.summary()
        check = await chain.probe(3.0)
        assert check.stats.lost == 0, f"after the migration: {check.summary()}"

        # host lock empties node 2 with the chain forwarding; unlock returns it
        probing = asyncio.create_task(chain.probe(60.0))
        await asyncio.sleep(2)
        locked = await api.post(f"/v1/hosts/{node2.host}/lock")
        assert locked.status_code == 202, locked.text
        host = await _lock_done(api, node2.host)
        assert host["maintenance"]["status"] == "done", host["maintenance"]
        assert set((await chain.hosts()).values()) == {node1.host}
        result = await probing
        print(f"host lock under {RATE} pps: {result.summary()}")
        assert result.stats.received > 0.9 * result.stats.sent, result.summary()
        unlocked = await api.post(f"/v1/hosts/{node2.host}/unlock")
        assert unlocked.status_code == 200 and unlocked.json()["state"] == "enabled"
        assert (await api.delete("/v1/chains/c1")).status_code == 202


def _api(site: MultiNodeSite) -> httpx.AsyncClient:
    url, headers, ca_cert = site.api_config()
    tls = ssl.create_default_context(cafile=ca_cert)  # as the CLI: the site CA only
    return httpx.AsyncClient(base_url=url, headers=headers, verify=tls, timeout=60)


class _Endpoints:
    def __init__(self, tmp_path: Path, bridge: str, namespaces: list[str]) -> None:
        self.ovs = OvsNetworkDriver(tmp_path / "ovs-endpoints", bridge=bridge)
        self.namespaces = namespaces
        self.ports = [f"ecx{secrets.token_hex(4)}" for _ in namespaces]

    async def __aenter__(self) -> list[str]:
        spec = NetworkSpec("chain-endpoints", "chain-endpoints", "vlan", VLAN)
        await self.ovs.ensure_network(spec)
        for i, (ns, port) in enumerate(zip(self.namespaces, self.ports, strict=True)):
            await self.ovs.plug_namespace_port(ns, port, spec, ip_cidr=f"10.252.0.{i + 1}/24")
        return self.ports

    async def __aexit__(self, *_exc: object) -> None:
        for port in self.ports:  # clean-up never hides the test's own failure
            with contextlib.suppress(Exception):
                await self.ovs.unplug_port(port)


def _endpoints(tmp_path: Path, bridge: str, namespaces: list[str]) -> _Endpoints:
    return _Endpoints(tmp_path, bridge, namespaces)


async def _alive(api: httpx.AsyncClient, vnf: str) -> GuestAlive:
    """The guest's latest heartbeat on its current host's console (printed every few s; a
    migrated guest's console on the destination holds only what it printed there)."""

    async def check() -> GuestAlive | None:
        response = await api.get(f"/v1/vnfs/{vnf}/console")
        if response.status_code != 200:
            return None
        beats = parse_alive(response.json()["output"])
        return beats[-1] if beats else None

    return await eventually(check, 60, f"a heartbeat from inside {vnf}")


async def _migration_done(api: httpx.AsyncClient, migration_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = (await api.get(f"/v1/migrations/{migration_id}")).json()
        return found if found["status"] in ("done", "failed") else None

    found = dict(await eventually(check, 300, "the migration finished"))
    assert found["status"] == "done", found
    return found


async def _lock_done(api: httpx.AsyncClient, host: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = (await api.get(f"/v1/hosts/{host}")).json()
        status = (found.get("maintenance") or {}).get("status")
        return found if status not in (None, "evacuating") else None

    return dict(await eventually(check, 600, f"host {host} emptied"))
