"""An in-process site for integration tests: a real controller (HTTPS API, mTLS gateway,
SQLite or PostgreSQL store) on loopback and real agents with the fake drivers, each agent
enrolled through a real join token. Everything is stopped and awaited on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.controller.site import Controller, ControllerConfig
from edgecloud.images.building import build_blank_disk
from edgecloud.pci import parse_allowlist

HEARTBEAT = 0.5
RESYNC = 0.2


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what or check}; last value {last!r}"
    )


@dataclass
class AgentHandle:
    agent: Agent
    task: asyncio.Task[None]
    state_dir: Path

    async def stop(self) -> None:
        self.agent.stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


@dataclass
class Site:
    root: Path
    controller: Controller
    task: asyncio.Task[None]
    api: httpx.AsyncClient
    info: dict[str, Any]
    agents: dict[str, AgentHandle] = field(default_factory=dict)

    async def add_host(self, name: str) -> str:
        """Create the host record; returns its join token."""
        response = await self.api.post("/v1/hosts", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["join_token"])

    async def start_agent(
        self,
        name: str,
        token: str | None = None,
        compute: str = "fake",
        bridge: str | None = None,
        pci_devices: tuple[str, ...] = (),
        address: str | None = None,
        libvirt_uri: str | None = None,
        uplink: str | None = None,
    ) -> AgentHandle:
        """Enroll (when ``token`` is given) and run an agent (fake drivers unless told);
        ``address``: the node's internal address (agent --address); ``libvirt_uri``: a
        node's own libvirt daemon; ``uplink``: its bridge's trunk port to the other nodes."""
        state_dir = self.root / "agents" / name
        if token is not None:
            identity = await enroll(token, state_dir, address)
        else:
            from edgecloud.agent.identity import load

            identity = load(state_dir)
        agent = Agent(
            identity,
            compute=compute,
            resync_interval=RESYNC,
            bridge=bridge,
            pci_devices=parse_allowlist(pci_devices),
            address=address,
            libvirt_uri=libvirt_uri,
            uplink=uplink,
        )
        handle = AgentHandle(agent, asyncio.create_task(agent.run()), state_dir)
        self.agents[name] = handle
        return handle

    async def join(
        self,
        name: str,
        compute: str = "fake",
        bridge: str | None = None,
        pci_devices: tuple[str, ...] = (),
        address: str | None = None,
    ) -> AgentHandle:
        token = await self.add_host(name)
        handle = await self.start_agent(name, token, compute, bridge, pci_devices, address)
        await self.wait_host(name, "online", timeout=15.0 if compute == "fake" else 90.0)
        return handle

    async def api_verified(self) -> bool:
        """Whether a NEW API client given the controller's ``ca_cert`` (controller.json, what
        the client config names) verifies the API and is answered (CA rotation tests)."""
        context = ssl.create_default_context(cafile=self.info["ca_cert"])
        async with httpx.AsyncClient(verify=context, timeout=10) as client:
            try:
                return (await client.get(self.info["api_url"] + "/v1/health")).status_code == 200
            except httpx.ConnectError:
                return False

    async def host(self, name: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/hosts/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_host(
        self, name: str, availability: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            host = await self.host(name)
            return host if host["availability"] == availability else None

        return dict(await eventually(check, timeout, f"host {name} {availability}"))

    async def vnf(self, name: str) -> dict[str, Any] | None:
        response = await self.api.get(f"/v1/vnfs/{name}")
        return dict(response.json()) if response.status_code == 200 else None

    async def wait_vnf(self, name: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            vnf = await self.vnf(name)
            return vnf if vnf and vnf["status"] == status else None

        return dict(await eventually(check, timeout, f"VNF {name} {status}"))

    async def catalogue(self, networks: tuple[str, ...] = ("lan", "wan", "mgmt")) -> None:
        """Networks, a flavor 'small' and an image 'img' for VNFs."""
        for net in networks:
            assert (await self.api.post("/v1/networks", json={"name": net})).status_code == 201
        flavor = {"name": "small", "vcpus": 1, "memory_mib": 256}
        assert (await self.api.post("/v1/flavors", json=flavor)).status_code == 201
        await self.upload_image("img", build_blank_disk(self.root / "images"), "qcow2")

    async def upload_image(
        self, name: str, path: Path, disk_format: str, **params: str
    ) -> dict[str, Any]:
        """PUT the file as image ``name``, streamed (``params``: ramdisk, cmdline for a kernel)."""

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                while data := await asyncio.to_thread(f.read, 1 << 20):
                    yield data

        response = await self.api.put(
            f"/v1/images/{name}",
            params={"disk_format": disk_format, **params},
            content=chunks(),
            headers={"Content-Length": str(path.stat().st_size)},
            timeout=300,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def upload_kernel(
        self, name: str, kernel: Path, initrd: Path | None, cmdline: str
    ) -> dict[str, Any]:
        """A direct-boot image: ``initrd`` as image NAME-ramdisk, the kernel as NAME."""
        params = {"cmdline": cmdline}
        if initrd is not None:
            await self.upload_image(f"{name}-ramdisk", initrd, "ramdisk")
            params["ramdisk"] = f"{name}-ramdisk"
        return await self.upload_image(name, kernel, "kernel", **params)


@contextlib.asynccontextmanager
async def running_site(
    root: Path, db_url: str | None = None, **options: Any
) -> AsyncIterator[Site]:
    """A controller on loopback (free ports), yielding a Site; stops everything on exit."""
    config = ControllerConfig(
        state_dir=root / "controller",
        db_url=db_url,
        api_port=0,
        gateway_port=0,
        **{"heartbeat_interval": HEARTBEAT, **options},
    )
    async with serving(root, config) as site:
        yield site


@contextlib.asynccontextmanager
async def second_controller(
    root: Path, first: Site, db_url: str, *, copy_pki: bool = True, **options: Any
) -> AsyncIterator[Site]:
    """Another controller on the first one's store (PostgreSQL), with the first's admin token
    (tokens live in the store) and, with ``copy_pki``, a copy of its CA (without a site secret;
    with one, a controller takes the CA from the store: test_shared_ca.py)."""
    state_dir = root / "controller"
    if copy_pki:
        state_dir.mkdir(parents=True)
        shutil.copytree(first.root / "controller" / "pki", state_dir / "pki")
    config = ControllerConfig(
        state_dir=state_dir,
        db_url=db_url,
        api_port=0,
        gateway_port=0,
        **{"heartbeat_interval": HEARTBEAT, **options},
    )
    async with serving(
        root,
        config,
        authorization=first.api.headers["Authorization"],
        ca_file=first.info["ca_cert"],  # one site CA
        check_exit=False,
    ) as site:
        yield site


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    config: ControllerConfig,
    *,
    authorization: str | None = None,
    ca_file: str | None = None,
    check_exit: bool = True,
) -> AsyncIterator[Site]:
    """Run a Controller from ``config`` until it serves and yield it as a Site whose API
    client uses ``authorization`` (default: the admin token in its state folder) and trusts
    ``ca_file`` (default: its own CA); on exit stop its agents and it (its own error at exit
    raised with ``check_exit``), also when it never became ready."""
    controller = Controller(config)
    task = asyncio.create_task(controller.run())
    info_file = config.state_dir / "controller.json"

    async def ready() -> bool:
        if task.done():
            task.result()
        return info_file.exists()

    try:
        await eventually(ready, 30, "controller ready")
        info = json.loads(info_file.read_text())
        if authorization is None:
            token = (config.state_dir / "admin-token").read_text().strip()
            authorization = f"Bearer {token}"
        api = httpx.AsyncClient(
            base_url=info["api_url"],
            verify=ssl.create_default_context(cafile=ca_file or info["ca_cert"]),
            headers={"Authorization": authorization},
            timeout=30,
        )
        site = Site(root, controller, task, api, info)
        try:
            yield site
        finally:
            for handle in site.agents.values():
                await handle.stop()
            await api.aclose()
    finally:
        controller.stopping.set()
        if check_exit:
            await asyncio.wait_for(task, 30)
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
