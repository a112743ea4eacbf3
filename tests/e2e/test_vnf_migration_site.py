"""E2E: `POST /v1/vnfs/NAME/migrate` on a real two-node site (controller + two agents with the
libvirt driver, each node with its own libvirtd on its own address: allinone/hypervisors.py).

The nodes enroll with their internal addresses (certificates from the site CA), their
hypervisors listen for TLS there, and the bump-in-the-wire VNF moves live from node1 to node2
through the controller's state machine: it keeps its boot id, one copy runs, both agents
settle. A migration whose destination hypervisor is killed mid-way leaves the VNF running
on node1 (same boot), node2 with nothing, and an event saying why. (vNIC slots, MACs and
order across a migration are checked on the domains themselves in test_live_migration.py:
two agents on one machine cannot bind vNIC ports with host-unique names before
`edgecloud up --nodes` makes them unique per node.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent import tls_files
from edgecloud.agent.enrolling import enroll
from edgecloud.allinone.hypervisors import NodeHypervisor
from edgecloud.images.building import build_bump_in_the_wire
from tests.e2e.libvirt_support import RunNames, create_bridge, libvirt_skip_reason
from tests.e2e.ovs_support import delete_bridge
from tests.e2e.real_site import delete_everything
from tests.integration.harness import Site, eventually, running_site

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
NODES = {"node1": "127.0.1.1", "node2": "127.0.1.2"}


@contextlib.asynccontextmanager
async def two_node_site(tmp_path: Path) -> AsyncIterator[tuple[Site, dict[str, NodeHypervisor]]]:
    if reason := libvirt_skip_reason():
        pytest.skip(reason)
    run = RunNames()
    create_bridge(run.bridge)
    hypervisors: dict[str, NodeHypervisor] = {}
    try:
        async with running_site(tmp_path) as site:
            for name, address in NODES.items():
                state = tmp_path / "agents" / name
                await enroll(await site.add_host(name), state, address)
                hv = NodeHypervisor(name, tmp_path / "hv" / name, address, tls_files.tls_dir(state))
                hypervisors[name] = hv
                await asyncio.to_thread(hv.start)
                await site.start_agent(
                    name,
                    compute="libvirt",
                    bridge=run.bridge,
                    address=address,
                    libvirt_uri=hv.uri,
                )
                await site.wait_host(name, "online", timeout=90)
            flavor = {"name": "small", "vcpus": 1, "memory_mib": 256}
            assert (await site.api.post("/v1/flavors", json=flavor)).status_code == 201
            files = await asyncio.to_thread(build_bump_in_the_wire, tmp_path / "images")
            await site.upload_kernel("bitw", files.kernel, files.initrd, files.cmdline)
            try:
                yield site, hypervisors
            finally:
                with contextlib.suppress(AssertionError):
                    await delete_everything(site)
    finally:
        for hv in hypervisors.values():
            await asyncio.to_thread(hv.purge)
        delete_bridge(run.bridge)


async def _vnf_on_node1(site: Site) -> dict[str, Any]:
    body = {"name": "mover", "image": "bitw", "flavor": "small"}
    assert (await site.api.post("/v1/vnfs", json=body)).status_code == 201
    vnf = await site.wait_vnf("mover", "running", timeout=120)
    assert vnf["host"] == "node1" and vnf["boot_id"]
    return vnf


async def _finished(site: Site, migration_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = dict((await site.api.get(f"/v1/migrations/{migration_id}")).json())
        return found if found["status"] in ("done", "failed") else None

    return dict(await eventually(check, 120, "migration finished"))


def _domains(hv: NodeHypervisor) -> dict[str, bool]:
    import libvirt

    conn: Any = libvirt.open(hv.uri)
    try:
        return {d.name(): bool(d.isActive()) for d in conn.listAllDomains(0)}
    finally:
        conn.close()


async def test_live_migration_through_the_controller(tmp_path: Path) -> None:
    async with two_node_site(tmp_path) as (site, hvs):
        before = await _vnf_on_node1(site)
        response = await site.api.post("/v1/vnfs/mover/migrate", json={"host": "node2"})
        assert response.status_code == 202, response.text
        done = await _finished(site, response.json()["id"])
        assert done["status"] == "done", done

        after = await site.wait_vnf("mover", "running", timeout=60)
        assert after["host"] == "node2"
        assert after["boot_id"] == before["boot_id"]  # the guest kept running
        assert _domains(hvs["node1"]) == {}  # one copy: the source has none left
        assert list(_domains(hvs["node2"]).values()) == [True]
        stats = done["stats"]
        print(
            f"live migration via the controller: total {stats['total_ms']:.0f} ms, "
            f"downtime {stats['downtime_ms']} ms, {stats['bytes'] / 2**20:.1f} MiB"
        )


async def test_destination_killed_mid_way_leaves_the_vnf_on_its_source(tmp_path: Path) -> None:
    async with two_node_site(tmp_path) as (site, hvs):
        before = await _vnf_on_node1(site)
        response = await site.api.post("/v1/vnfs/mover/migrate", json={"host": "node2"})
        assert response.status_code == 202, response.text
        incoming = hvs["node2"].root / "run" / "qemu"

        async def receiving() -> bool:  # the destination's QEMU has started
            return bool(list(incoming.glob("ec-*.pid")))

        await eventually(receiving, 60, "the destination receiving the guest")
        await asyncio.to_thread(hvs["node2"].stop)

        failed = await _finished(site, response.json()["id"])
        assert failed["status"] == "failed", failed
        vnf = await site.wait_vnf("mover", "running", timeout=60)
        assert vnf["host"] == "node1" and vnf["boot_id"] == before["boot_id"]
        assert list(_domains(hvs["node1"]).values()) == [True]
        assert not list(incoming.glob("ec-*.pid"))  # no copy left on node2
        events = (await site.api.get("/v1/events", params={"limit": 100})).json()
        assert any("failed, the VNF stays on node1" in e["message"] for e in events)
        print(f"failed migration: {failed['error']}")


async def test_cold_migration_restarts_the_vnf_on_the_destination(tmp_path: Path) -> None:
    async with two_node_site(tmp_path) as (site, hvs):
        before = await _vnf_on_node1(site)
        response = await site.api.post("/v1/vnfs/mover/migrate", json={"cold": True})
        assert response.status_code == 202, response.text
        assert response.json()["destination_host"] == "node2"
        done = await _finished(site, response.json()["id"])
        assert done["status"] == "done", done

        async def restarted() -> dict[str, Any] | None:
            vnf = await site.vnf("mover")
            ok = vnf and vnf["status"] == "running" and vnf["boot_id"] != before["boot_id"]
            return vnf if ok else None

        after = await eventually(restarted, 120, "mover started on node2")
        assert after["host"] == "node2"
        assert _domains(hvs["node1"]) == {}
        print(f"cold migration: source side {done['stats']['total_ms']:.0f} ms")
