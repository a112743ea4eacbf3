"""E2E: live migration between two nodes' own libvirt daemons, over TLS with site certificates.

Two NodeHypervisors (allinone/hypervisors.py) on 127.0.1.1 and 127.0.1.2, each with the TLS
files an enrolled agent has (agent/tls_files.py, certificates from a site CA naming the node's
address); the bump-in-the-wire VNF runs on the first. The libvirt driver moves it live to the
second (prepare_incoming there, migrate_out here): the guest keeps its boot id, its vNICs'
MACs, order and PCI slots, and uses the destination's own ports; one copy remains. A
migration whose destination hypervisor dies mid-way leaves the guest running on the source.
"""

from __future__ import annotations

import asyncio
import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent import identity, tls_files
from edgecloud.allinone.hypervisors import NodeHypervisor
from edgecloud.drivers.compute.base import (
    BootSource,
    DomainSpec,
    MigrationPeer,
    PowerState,
    VifBinding,
    VnicSpec,
)
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from edgecloud.errors import DriverError
from edgecloud.images.building import ImageFiles, build_blank_disk, build_bump_in_the_wire
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import make_key_and_csr
from tests.drivers.compute_conformance import must_info, wait_for_console
from tests.e2e.libvirt_support import (
    RunNames,
    clean_up_run,
    create_bridge,
    libvirt_skip_reason,
    ovs_ports,
    plugged,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
BOOT_TIMEOUT = 60.0
ADDRESSES = ("127.0.1.1", "127.0.1.2")


@dataclasses.dataclass
class Node:
    hypervisor: NodeHypervisor
    state: Path
    driver: LibvirtComputeDriver


@pytest.fixture(scope="module")
def run() -> Iterator[RunNames]:
    if reason := libvirt_skip_reason():
        pytest.skip(reason)
    names = RunNames()
    create_bridge(names.bridge)
    yield names
    clean_up_run(names)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, run: RunNames) -> ImageFiles:
    return build_bump_in_the_wire(tmp_path_factory.mktemp("images"))


@pytest.fixture
async def nodes(tmp_path: Path, run: RunNames) -> AsyncIterator[tuple[Node, Node]]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", "e2e")
    made: list[Node] = []
    try:
        for i, address in enumerate(ADDRESSES, 1):
            state = tmp_path / f"agent{i}"
            key, csr = make_key_and_csr(f"n{i}")
            cert, _serial = ca.sign_csr(csr, f"n{i}", address=address)
            who = identity.save(state, f"n{i}", "127.0.0.1:1", ca.cert_pem, cert, key)
            tls_files.ensure(who)
            hv = NodeHypervisor(f"n{i}", tmp_path / f"hv{i}", address, tls_files.tls_dir(state))
            made.append(Node(hv, state, LibvirtComputeDriver(state, uri=hv.uri, accel="tcg",
                                                             name_prefix=run.domain_prefix)))  # fmt: skip
            await asyncio.to_thread(hv.start)
        yield made[0], made[1]
    finally:
        for node in made:
            await node.driver.close()
            await asyncio.to_thread(node.hypervisor.purge)


def _spec(run: RunNames, image: ImageFiles, ports: tuple[str, str]) -> DomainSpec:
    vnics = tuple(
        VnicSpec(i, "e2e", "virtio", f"02:ec:{run.token[:2]}:{run.token[2:4]}:00:{slot:02x}",
                 slot, binding=plugged(VifBinding("ovs", bridge=run.bridge, port_name=port)))
        for i, (slot, port) in enumerate(zip((0x05, 0x03), ports, strict=True))
    )  # fmt: skip
    return DomainSpec(
        name=f"{run.domain_prefix}mig",
        instance_id=f"e2e-{run.token}",
        vcpus=1,
        memory_mib=256,
        boot=BootSource(
            kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
        ),
        vnics=vnics,
    )


def _live_nics(uri: str, name: str) -> list[tuple[str, str, str]]:
    """(MAC, guest PCI slot, host tap) of each vNIC in the running domain's XML, in order."""
    import libvirt

    conn: Any = libvirt.open(uri)
    try:
        root = ET.fromstring(conn.lookupByName(name).XMLDesc(0))
    finally:
        conn.close()
    found = []
    for iface in root.iterfind("devices/interface"):
        mac, addr, target = iface.find("mac"), iface.find("address"), iface.find("target")
        assert mac is not None and addr is not None and target is not None
        found.append((mac.get("address", ""), addr.get("slot", ""), target.get("dev", "")))
    return found


async def _booted(node: Node, run: RunNames, image: ImageFiles) -> DomainSpec:
    spec = _spec(run, image, (run.port_name(), run.port_name()))
    await node.driver.define(spec)
    await node.driver.start(spec.name)
    await wait_for_console(node.driver, spec.name, "EDGECLOUD-READY", BOOT_TIMEOUT)
    return spec


async def test_live_migration_keeps_the_guest(
    nodes: tuple[Node, Node], run: RunNames, image: ImageFiles
) -> None:
    source, destination = nodes
    spec = await _booted(source, run, image)
    before = await must_info(source.driver, spec.name)
    nics_before = _live_nics(source.hypervisor.uri, spec.name)
    incoming = _spec(run, image, (run.port_name(), run.port_name()))
    placement = await destination.driver.prepare_incoming(incoming)
    peer = MigrationPeer("n2", ADDRESSES[1], str(tls_files.libvirt_dir(source.state)), placement)

    stats = await source.driver.migrate_out(spec.name, peer)

    assert await source.driver.list_domains() == []
    after = await must_info(destination.driver, spec.name)
    assert after.state is PowerState.RUNNING
    assert after.boot_id == before.boot_id  # the same boot of the guest, not a restart
    assert after.vnic_macs == before.vnic_macs
    nics_after = _live_nics(destination.hypervisor.uri, spec.name)
    assert [n[:2] for n in nics_after] == [n[:2] for n in nics_before]  # MACs, slots, order
    assert [n[2] for n in nics_after] == [v.binding.port_name for v in incoming.vnics if v.binding]
    ports = ovs_ports(run.bridge)
    assert {n[2] for n in nics_after} <= ports
    assert {n[2] for n in nics_before} <= ports  # libvirt leaves taps to the network driver
    assert stats.total_ms > 0 and stats.bytes > 0
    await destination.driver.destroy(spec.name)  # a restart there is a new boot
    await destination.driver.start(spec.name)
    assert (await must_info(destination.driver, spec.name)).boot_id != before.boot_id
    print(
        f"live migration: total {stats.total_ms:.0f} ms, downtime {stats.downtime_ms} ms, "
        f"{stats.bytes / 2**20:.1f} MiB"
    )


async def test_destination_dying_mid_way_leaves_the_guest_on_the_source(
    nodes: tuple[Node, Node], run: RunNames, image: ImageFiles
) -> None:
    source, destination = nodes
    spec = await _booted(source, run, image)
    before = await must_info(source.driver, spec.name)
    placement = await destination.driver.prepare_incoming(
        _spec(run, image, (run.port_name(), run.port_name()))
    )
    peer = MigrationPeer("n2", ADDRESSES[1], str(tls_files.libvirt_dir(source.state)), placement)
    migrating = asyncio.ensure_future(source.driver.migrate_out(spec.name, peer))
    qemu_pids = destination.hypervisor.root / "run" / "qemu"
    deadline = asyncio.get_running_loop().time() + 30
    while not (qemu_pids / f"{spec.name}.pid").exists():  # the destination's QEMU receives
        assert not migrating.done(), migrating
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await asyncio.to_thread(destination.hypervisor.stop)
    with pytest.raises(DriverError):
        await migrating
    after = await must_info(source.driver, spec.name)
    assert after.state is PowerState.RUNNING and after.boot_id == before.boot_id


async def test_the_overlay_disk_moves_with_the_guest(
    nodes: tuple[Node, Node], run: RunNames, tmp_path: Path
) -> None:
    """A disk-booted domain (a blank base: the guest waits in its firmware, running): what it
    wrote to its overlay is on the destination's own overlay afterwards (copied over NBD)."""
    source, destination = nodes
    base = await asyncio.to_thread(build_blank_disk, tmp_path / "base")
    spec = dataclasses.replace(
        _spec(run, _NO_KERNEL, (run.port_name(), run.port_name())),
        name=f"{run.domain_prefix}disk",
        boot=BootSource(disk_path=str(base), disk_format="qcow2"),
    )
    await source.driver.define(spec)
    overlay = source.state / "disks" / f"{spec.name}.qcow2"
    await _qemu_io(overlay, "write -P 0xab 1M 64k")  # the guest's writes, before it runs
    await source.driver.start(spec.name)
    incoming = dataclasses.replace(
        spec, vnics=_spec(run, _NO_KERNEL, (run.port_name(), run.port_name())).vnics
    )
    placement = await destination.driver.prepare_incoming(incoming)
    assert placement.disk_path and placement.disk_path != str(overlay)
    peer = MigrationPeer("n2", ADDRESSES[1], str(tls_files.libvirt_dir(source.state)), placement)

    stats = await source.driver.migrate_out(spec.name, peer)

    assert not overlay.exists()  # the source's copy is gone with its domain
    assert (await must_info(destination.driver, spec.name)).state is PowerState.RUNNING
    await _qemu_io(Path(placement.disk_path), "read -P 0xab 1M 64k", "-r", "-U")
    print(f"with its overlay: total {stats.total_ms:.0f} ms, downtime {stats.downtime_ms} ms")


_NO_KERNEL = ImageFiles(Path("/nonexistent"), Path("/nonexistent"), "")  # boot replaced


async def _qemu_io(path: Path, command: str, *options: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "qemu-io", *options, "-c", command, str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0 and "Pattern verification failed" not in out, out
