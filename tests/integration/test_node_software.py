"""A node takes a new release in service (issue 12): the controller uploads and signs the
wheel of release N.0.1 (this checkout's code under a patch version), the node's agent, a
real ``edgecloud agent`` process, stages it (signature checked against the site CA, bytes
fetched over its mTLS port and checked, unpacked beside the installed release) and restarts
into it in the same process: its hello says the new release, the host list shows it, and its
running VNF is adopted, not restarted (same boot id). A crash of the new agent starts the
installed code, which runs the selected release again; a restart into the installed release
goes back. A package signed by another site is refused and stages nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgecloud import __version__, staging
from edgecloud.errors import DriverError
from edgecloud.services import node_software
from edgecloud.upgrades.releases import parse
from tests.integration.harness import Site, eventually, running_site
from tests.integration.test_site import create_vnf
from tests.integration.wheels import source_wheel

PATCH = f"{parse(__version__).major}.{parse(__version__).minor}.{parse(__version__).patch + 1}"


@asynccontextmanager
async def agent_process(
    site: Site, name: str, log: Path, join: bool = True
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``edgecloud agent --driver fake`` for host ``name`` in its own process: enrolled by a
    join token (``join``), or started again as a supervisor would after a crash."""
    state = site.root / "agents" / name
    joining = ["--join", await site.add_host(name)] if join else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgecloud", "agent", "--state-dir", str(state), *joining,
            "--driver", "fake", "--resync-interval", "0.5",
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _release_of(site: Site, name: str, release: str) -> bool:
    host = await site.host(name)
    return host["availability"] == "online" and host["release"] == release


async def test_a_node_stages_a_release_and_restarts_into_it_with_its_vnf_running(
    tmp_path: Path,
) -> None:
    log = tmp_path / "agent.log"
    async with running_site(tmp_path) as site:
        filename = f"edgecloud-{PATCH}-py3-none-any.whl"
        uploaded = await site.api.post(
            "/v1/software", params={"filename": filename}, content=source_wheel(PATCH)
        )
        assert uploaded.status_code == 201, uploaded.text
        await site.catalogue()
        async with agent_process(site, "node1", log) as process:
            pid = process.pid
            await site.wait_host("node1", "online", timeout=30)
            assert (await site.host("node1"))["release"] == __version__
            await create_vnf(site, "v1")
            running = await site.wait_vnf("v1", "running", timeout=30)
            assert site.controller.gateway is not None
            ctx = site.controller.gateway.ctx
            state = site.root / "agents" / "node1"

            await node_software.stage(ctx, "node1", PATCH)
            assert staging.staged(state) == [PATCH]
            staged = staging.staged_dir(state, PATCH)
            assert f'__version__ = "{PATCH}"' in (staged / "edgecloud" / "__init__.py").read_text()
            await node_software.stage(ctx, "node1", PATCH)  # again: nothing to do

            began = time.monotonic()
            await node_software.restart(ctx, "node1", PATCH)
            await eventually(lambda: _release_of(site, "node1", PATCH), 30, f"node1 at {PATCH}")
            took = time.monotonic() - began
            assert process.returncode is None and process.pid == pid  # the same process
            assert staging.selected(state) == PATCH
            vnf = await site.wait_vnf("v1", "running")
            assert vnf["boot_id"] == running["boot_id"], "the agent's restart restarted the VNF"
            assert f"re-executing as release {PATCH}" in log.read_text()
            assert took < 20, took

            await node_software.restart(ctx, "node1", None)  # back to the installed release
            await eventually(
                lambda: _release_of(site, "node1", __version__), 30, "node1 installed again"
            )
            assert staging.selected(state) is None
            assert (await site.wait_vnf("v1", "running"))["boot_id"] == running["boot_id"]

        # a crash: the installed code starts and runs the selected release at once
        staging.select(state, PATCH)
        async with agent_process(site, "node1", log, join=False):
            await eventually(lambda: _release_of(site, "node1", PATCH), 30, "selected again")
            assert "this node runs release" in log.read_text()


async def test_a_package_the_site_did_not_sign_is_not_staged(tmp_path: Path) -> None:
    async with running_site(tmp_path / "a") as site, running_site(tmp_path / "b") as other:
        filename = f"edgecloud-{PATCH}-py3-none-any.whl"
        data = source_wheel(PATCH)
        for where in (site, other):
            response = await where.api.post(
                "/v1/software", params={"filename": filename}, content=data
            )
            assert response.status_code == 201
        node = await site.join("node1")
        foreign = (await other.api.get(f"/v1/software/{PATCH}")).json()
        signed = {k: foreign[k] for k in ("manifest", "signature", "signer")}
        assert site.controller.gateway is not None
        with pytest.raises(DriverError, match="not issued by this site's CA"):
            await site.controller.gateway.call(
                (await site.host("node1"))["id"], "stage", signed, 30
            )
        assert staging.staged(node.state_dir) == []
        await asyncio.sleep(0)
