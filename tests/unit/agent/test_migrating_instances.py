"""The agent and migrating instances (fake drivers): the domain of an instance that migrates
is the migration's (never started, stopped, redefined or deleted by the agent), the
destination prepares without defining and reports it, ``migrate_out`` moves the guest and
frees the source's ports, and what was prepared for a migration that ended is removed."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent.applying import Applier
from edgecloud.agent.image_cache import ImageCache
from edgecloud.drivers.compute.base import PowerState
from edgecloud.drivers.compute.fake import FakeComputeDriver
from edgecloud.drivers.network.fake import FakeNetworkDriver
from edgecloud.errors import DriverError
from edgecloud.protocol.desired import DesiredState, read

KERNEL = b"a fake kernel"


class _Fetcher:
    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        partial.write_bytes(KERNEL)


def _node(tmp_path: Path, name: str) -> Applier:
    state = tmp_path / name
    state.mkdir()
    return Applier(
        FakeComputeDriver(), FakeNetworkDriver(), state, ImageCache(state / "images", _Fetcher())
    )


def _wire(version: int, mark: dict[str, Any] | None = None) -> dict[str, Any]:
    """A snapshot in wire form."""
    instance: dict[str, Any] = {
        "id": "i-1",
        "name": "v1",
        "domain": "ec-v1-00000001",
        "desired_state": "running",
        "reboots": 0,
        "vcpus": 1,
        "memory_mib": 64,
        "disk_gib": 0,
        "image": {
            "name": "k",
            "format": "kernel",
            "sha256": hashlib.sha256(KERNEL).hexdigest(),
            "size": len(KERNEL),
            "cmdline": "",
            "ramdisk": None,
        },
        "vnics": [
            {
                "index": 0,
                "network": "lan",
                "model": "virtio",
                "mac": "52:54:00:00:00:01",
                "pci_slot": 3,
            },
        ],
    }
    if mark is not None:
        instance["migration"] = mark
    network = {"name": "lan", "id": "n-1", "kind": "vlan", "segmentation_id": 100}
    return {"version": version, "instances": [instance], "networks": [network]}


def _spec(version: int, mark: dict[str, Any] | None = None) -> DesiredState:
    return read(_wire(version, mark))


OUT = {"id": "m-1", "kind": "live", "role": "outgoing",
       "destination": {"host": "h2", "address": "10.0.0.2"}}  # fmt: skip
IN = {"id": "m-1", "kind": "live", "role": "incoming", "source": "h1"}


@pytest.fixture(autouse=True)
def _no_incoming_left() -> Any:
    yield
    FakeComputeDriver._incoming.clear()


async def _running(node: Applier) -> Any:
    (domain,) = await node.compute.list_domains()
    assert domain.state is PowerState.RUNNING
    return domain


async def test_live_migration_between_two_agents(tmp_path: Path) -> None:
    source, destination = _node(tmp_path, "h1"), _node(tmp_path, "h2")
    assert await source.apply(_spec(1)) == []
    booted = await _running(source)

    assert await source.apply(_spec(2, OUT)) == []
    assert await destination.apply(_spec(1, IN)) == []
    assert await destination.compute.list_domains() == []  # prepared, not defined
    report = (await destination.observe()).instances["i-1"]
    assert report.power == "absent" and report.migration is not None
    assert report.migration.prepared is True and report.migration.id == "m-1"
    placement = report.migration.placement
    assert placement is not None
    assert set(placement["ports"]) == {"52:54:00:00:00:01"}

    with pytest.raises(DriverError, match="not the one"):
        await source.migrate_out({"instance_id": "i-1", "migration_id": "m-0"}, tmp_path)
    stats = await source.migrate_out(
        {"instance_id": "i-1", "migration_id": "m-1", "placement": placement}, tmp_path
    )
    assert stats["total_ms"] >= 0
    assert await source.compute.list_domains() == []
    assert await source.network.list_ports() == []  # the source's port is released
    arrived = await _running(destination)
    assert arrived.boot_id == booted.boot_id

    assert await source.resync() == []  # the outgoing instance is not started again
    assert await source.compute.list_domains() == []
    assert await destination.apply(_spec(2)) == []  # the move committed: adopted, not restarted
    assert (await _running(destination)).boot_id == booted.boot_id
    assert await source.apply(read({"version": 3, "instances": [], "networks": []})) == []
    assert destination.prepared == {}


async def test_a_migrating_domain_is_never_touched(tmp_path: Path) -> None:
    node = _node(tmp_path, "h1")
    await node.apply(_spec(1))
    booted = await _running(node)
    await node.apply(_spec(2, OUT))
    assert isinstance(node.compute, FakeComputeDriver)
    node.compute.crash("ec-v1-00000001")  # e.g. paused at the end of a migration
    assert await node.resync() == []
    (domain,) = await node.compute.list_domains()
    assert domain.state is PowerState.CRASHED and domain.boot_id == booted.boot_id
    stopped = _wire(3, OUT)
    stopped["instances"][0]["desired_state"] = "stopped"
    assert await node.apply(read(stopped)) == []
    assert (await node.compute.list_domains())[0].state is PowerState.CRASHED


async def test_what_was_prepared_is_removed_when_the_migration_fails(tmp_path: Path) -> None:
    destination = _node(tmp_path, "h2")
    await destination.apply(_spec(1, IN))
    assert "i-1" in destination.prepared and await destination.network.list_ports()
    await destination.apply(read({"version": 2, "instances": [], "networks": []}))
    assert destination.prepared == {}
    assert await destination.network.list_ports() == []
    assert "ec-v1-00000001" not in FakeComputeDriver._incoming


async def test_only_an_outgoing_instance_is_migrated(tmp_path: Path) -> None:
    node = _node(tmp_path, "h1")
    await node.apply(_spec(1))
    with pytest.raises(DriverError, match="not migrating that VNF out"):
        await node.migrate_out({"instance_id": "i-1", "migration_id": "m-1"}, tmp_path)


async def test_fencing_stops_what_runs_and_skips_an_instance_without_a_domain(
    tmp_path: Path,
) -> None:
    """A returning host whose hypervisor lost a domain still fences (and then connects):
    a missing domain is nothing to stop, not an error that keeps the agent from its hello."""
    node = _node(tmp_path, "h1")
    two = _wire(1)
    second = copy.deepcopy(two["instances"][0])
    second.update(id="i-2", name="v2", domain="ec-v2-00000002")
    second["vnics"][0]["mac"] = "52:54:00:00:00:02"
    two["instances"].append(second)
    assert await node.apply(read(two)) == []
    await node.compute.delete("ec-v2-00000002")  # lost behind the agent's back
    await node.fence(("i-1", "i-2"))
    (domain,) = await node.compute.list_domains()
    assert domain.state is PowerState.STOPPED and node.applied_version == 0
    assert await node.resync() == []  # fenced: neither is started or made again
    assert [d.state for d in await node.compute.list_domains()] == [PowerState.STOPPED]
