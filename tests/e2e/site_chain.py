"""A service chain on a multi-node site (`edgecloud up --nodes 2`) for e2e tests: the site's
API as the CLI reaches it, two namespaces plugged into a node's bridge as the chain's ends, the
chain ``c1`` and a UDP probe between its ends, and waits on migrations, host locks and the
guest's own heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from pathlib import Path
from typing import Any

import httpx

from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from edgecloud.images.building import GuestAlive, parse_alive
from edgecloud.probe import probe_in_namespaces
from tests.e2e.chain_support import BOOT
from tests.e2e.multinode_support import MultiNodeSite
from tests.integration.harness import eventually

RATE = 300  # pps through three TCG guests while services change
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

    async def migrate_under_probe(
        self, vnf: dict[str, Any], target: str, seconds: float, rate: int
    ) -> tuple[Any, dict[str, Any]]:
        """Move ``vnf`` live to ``target`` 3 s into a probe of ``seconds`` at ``rate``: the
        probe's result and the finished migration."""
        probing = asyncio.create_task(self.probe(seconds, rate))
        await asyncio.sleep(3)
        moved = await self.api.post(f"/v1/vnfs/{vnf['name']}/migrate", json={"host": target})
        assert moved.status_code == 202, moved.text
        migration = await migration_done(self.api, moved.json()["id"])
        return await probing, migration

    async def vnf_of(self, service_name: str) -> dict[str, Any]:
        chain = await self.get()
        svc = next(s for s in chain["services"] if s["name"] == service_name)
        vnfs = {v["id"]: v for v in (await self.api.get("/v1/vnfs")).json()}
        return dict(vnfs[svc["instance_id"]])


def site_api(site: MultiNodeSite) -> httpx.AsyncClient:
    """The site's API with the admin's token, trusting the site CA only (as the CLI)."""
    url, headers, ca_cert = site.api_config()
    tls = ssl.create_default_context(cafile=ca_cert)  # as the CLI: the site CA only
    return httpx.AsyncClient(base_url=url, headers=headers, verify=tls, timeout=60)


class BridgeEndpoints:
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


def bridge_endpoints(tmp_path: Path, bridge: str, namespaces: list[str]) -> BridgeEndpoints:
    """Two ports on ``bridge`` (the chain's ingress and egress), one in each namespace,
    10.252.0.1 and .2 on VLAN 2999; unplugged on leaving."""
    return BridgeEndpoints(tmp_path, bridge, namespaces)


async def guest_alive(api: httpx.AsyncClient, vnf: str) -> GuestAlive:
    """The guest's latest heartbeat on its current host's console (printed every few s; a
    migrated guest's console on the destination holds only what it printed there)."""

    async def check() -> GuestAlive | None:
        response = await api.get(f"/v1/vnfs/{vnf}/console")
        if response.status_code != 200:
            return None
        beats = parse_alive(response.json()["output"])
        return beats[-1] if beats else None

    return await eventually(check, 60, f"a heartbeat from inside {vnf}")


async def migration_done(api: httpx.AsyncClient, migration_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = (await api.get(f"/v1/migrations/{migration_id}")).json()
        return found if found["status"] in ("done", "failed") else None

    found = dict(await eventually(check, 300, "the migration finished"))
    assert found["status"] == "done", found
    return found


async def lock_done(api: httpx.AsyncClient, host: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = (await api.get(f"/v1/hosts/{host}")).json()
        status = (found.get("maintenance") or {}).get("status")
        return found if status not in (None, "evacuating") else None

    return dict(await eventually(check, 600, f"host {host} emptied"))
