"""A real site for e2e tests: controller + agent with the libvirt driver on a per-run OVS
bridge, the bump-in-the-wire image registered as ``bitw`` and a flavor ``small``; every VNF,
domain, port, namespace and the bridge are removed afterwards, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecloud.images.building import build_bump_in_the_wire
from tests.e2e.libvirt_support import RunNames, create_bridge, libvirt_skip_reason, sweep_domains
from tests.e2e.ovs_support import delete_bridge
from tests.integration.harness import Site, eventually, running_site


@contextlib.asynccontextmanager
async def real_site(
    tmp_path: Path, networks: tuple[str, ...] = ()
) -> AsyncIterator[tuple[Site, RunNames]]:
    reason = libvirt_skip_reason()
    if reason:
        pytest.skip(reason)
    run = RunNames()
    create_bridge(run.bridge)
    try:
        async with running_site(tmp_path) as site:
            await site.join("node1", compute="libvirt", bridge=run.bridge)
            for net in networks:
                assert (await site.api.post("/v1/networks", json={"name": net})).status_code == 201
            flavor = {"name": "small", "vcpus": 1, "memory_mib": 256}
            assert (await site.api.post("/v1/flavors", json=flavor)).status_code == 201
            files = await asyncio.to_thread(build_bump_in_the_wire, tmp_path / "images")
            await site.upload_kernel("bitw", files.kernel, files.initrd, files.cmdline)
            try:
                yield site, run
            finally:
                await delete_everything(site)
    finally:
        sweep_domains(run.domain_prefix)
        delete_bridge(run.bridge)


async def delete_everything(site: Site) -> None:
    """Chains, stacks and VNFs, through the API, waiting until they are gone."""
    for chain in (await site.api.get("/v1/chains")).json():
        await site.api.delete(f"/v1/chains/{chain['name']}")
    with contextlib.suppress(AssertionError):
        await eventually(lambda: _empty(site, "/v1/chains"), 60, "chains deleted")
    for stack in (await site.api.get("/v1/stacks")).json():
        await site.api.delete(f"/v1/stacks/{stack['name']}")
    for vnf in (await site.api.get("/v1/vnfs")).json():
        await site.api.delete(f"/v1/vnfs/{vnf['name']}")
    await eventually(lambda: _empty(site, "/v1/vnfs"), 90, "every VNF deleted")


async def _empty(site: Site, path: str) -> bool:
    return (await site.api.get(path)).json() == []
