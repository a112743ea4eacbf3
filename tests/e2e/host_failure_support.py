"""Shared pieces of the host-failure e2e tests (issue 11): a chain across the two real nodes
of `edgecloud up --nodes 2` with services on both, a drill clock that records each step of a
failure, and what tells that a node is dead and its VNFs run again elsewhere (the guest's own
heartbeat: a new boot printing the same vNICs).

Used by tests/e2e/test_host_failure_real_nodes.py (one controller) and
tests/e2e/test_redundant_controllers.py (two controllers on the replicated database). API
reads tolerate a moment without a writable store (503 while the database fails over).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edgecloud.allinone.nodes import Node
from edgecloud.images.building import GuestAlive, parse_alive
from tests.e2e.chain_support import BOOT, service
from tests.e2e.multinode_support import MultiNodeSite
from tests.e2e.site_chain import Chain

RATE = 200  # pps through three TCG guests
RECOVER_LIMIT = BOOT  # TCG guests booting two at a time on a shared 2-core machine


class Drill:
    """The site with its chain, node A (services to lose) and node B (the survivor), and a
    clock: every step is recorded as seconds since the failure."""

    def __init__(self, site: MultiNodeSite, api: httpx.AsyncClient, chain: Chain) -> None:
        self.site, self.api, self.chain = site, api, chain
        self.a, self.b = site.layout().nodes
        self.t0 = 0.0
        self.steps: dict[str, float] = {}
        self.stopped: list[int] = []  # SIGSTOPped: resumed whatever happens

    def step(self, name: str) -> float:
        self.steps[name] = round(time.monotonic() - self.t0, 2)
        print(f"  +{self.steps[name]:6.2f} s  {name}", flush=True)
        return self.steps[name]

    def pids(self) -> dict[str, int]:
        return dict(self.site.info()["pids"])

    def freeze(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)

    def thaw(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        if pid in self.stopped:
            self.stopped.remove(pid)

    def thaw_all(self) -> None:
        for pid in list(self.stopped):
            self.thaw(pid)

    async def vnfs_on(self, host: str) -> dict[str, dict[str, Any]]:
        """The VNFs placed on ``host`` ({} while the API cannot answer)."""
        response = await self.api.get("/v1/vnfs")
        if response.status_code != 200:
            return {}
        return {v["name"]: v for v in response.json() if v["host"] == host}

    async def until(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = await check()
            except httpx.TransportError:  # a controller going away under the request
                found = None
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    async def watch(self, check: Any, name: str, timeout: float = 60) -> None:
        """Wait for ``check`` and record the moment as step ``name``."""
        await self.until(check, timeout, name)
        self.step(name)

    async def host_state(self, host: str) -> str | None:
        """The host's availability (None while the API cannot answer)."""
        response = await self.api.get(f"/v1/hosts/{host}")
        return str(response.json()["availability"]) if response.status_code == 200 else None

    async def recovered(
        self,
        before: dict[str, dict[str, Any]],
        alive: dict[str, GuestAlive],
        on_running: Callable[[], None] = lambda: None,
    ) -> None:
        """Wait, step by step, until every VNF of ``before`` runs on B with its binding;
        ``on_running`` is called as soon as they all run there."""

        async def placed() -> bool:
            on_b = await self.vnfs_on(self.b.host)
            return bool(on_b) and all(name in on_b for name in before)

        await self.until(placed, 30, f"{sorted(before)} placed on {self.b.host}")
        self.step("A's VNFs placed on B (recovery committed)")

        async def running() -> bool:
            on_b = await self.vnfs_on(self.b.host)
            return all(on_b.get(n, {}).get("power_state") == "running" for n in before)

        await self.until(running, RECOVER_LIMIT, "the recovered VNFs running")
        self.step("A's VNFs running on B (domains started)")
        on_running()
        for name, old in alive.items():
            new = await self.until(lambda n=name: beat(self.api, n), RECOVER_LIMIT, f"{name} up")
            assert new.boot != old.boot, f"{name}: still the old boot?"
            assert new.vnics == old.vnics, f"{name}: vNICs {new.vnics} != {old.vnics}"
        self.step("A's VNFs verified from inside on B (same vNICs, new boot)")
        on_b = await self.vnfs_on(self.b.host)
        for name, vnf in before.items():
            assert binding(on_b[name]) == binding(vnf), name


async def beat(api: httpx.AsyncClient, vnf: str) -> GuestAlive | None:
    """The guest's last heartbeat on its console (None: none yet, or no answer)."""
    response = await api.get(f"/v1/vnfs/{vnf}/console")
    if response.status_code != 200:
        return None
    beats = parse_alive(response.json()["output"])
    return beats[-1] if beats else None


def binding(vnf: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(n["pci_slot"], n["mac"], n.get("ip")) for n in vnf["nics"]]


async def all_dead(pids: list[int]) -> bool:
    """None of them runs any more (a zombie counts as dead)."""
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("Z", "X"):
            return False
    return True


def node_pids(node: Node, agent_pid: int) -> list[int]:
    """The node's agent, libvirtd, virtlogd and QEMU processes (from their pid files)."""
    assert node.hypervisor_root is not None
    run = node.hypervisor_root / "run"
    files = [run / "libvirtd.pid", run / "virtlogd.pid", *run.glob("qemu/ec-*.pid")]
    return [agent_pid, *(int(f.read_text().strip()) for f in files if f.exists())]


async def chain_across_nodes(
    site: MultiNodeSite, api: httpx.AsyncClient, chain: Chain, ports: list[str]
) -> tuple[Drill, dict[str, dict[str, Any]], dict[str, GuestAlive]]:
    """The chain c1 attached on B with services on both nodes; A's VNFs and their guests'
    heartbeats (what a recovered copy must print again)."""
    drill = Drill(site, api, chain)
    body = {"name": "c1", "customer": "acme", "host": drill.b.host, "ingress_port": ports[0],
            "egress_port": ports[1],
            "services": [service("router"), service("firewall"), service("nat")]}  # fmt: skip
    assert (await api.post("/v1/chains", json=body)).status_code == 202, "chain create"
    await chain.settled()
    where = await chain.hosts()
    assert set(where.values()) == {drill.a.host, drill.b.host}, f"not spread: {where}"
    baseline = await chain.probe(3.0, RATE)
    assert baseline.stats.lost == 0, baseline.summary()
    before = await drill.vnfs_on(drill.a.host)
    alive = {}
    for name in before:
        alive[name] = await drill.until(lambda n=name: beat(api, n), 120, f"{name} heartbeat")
    print(f"\nchain {where}; A={drill.a.host} B={drill.b.host}", flush=True)
    return drill, before, alive
