"""E2E: a real QEMU guest (TCG) sees its vNICs in the declared order, with the declared MACs.

Builds the bump-in-the-wire VNF image (images/building.py), boots it with the libvirt driver
on a per-run OVS bridge (VifBindings made here, not by the OVS driver) and reads the guest's
own report from its serial console. The vNICs are handed to the driver in a scrambled order
and with mixed models, so libvirt's automatic slot assignment (XML order) or the guest's
driver load order (virtio before e1000) would give a different order: only the explicit PCI
slots make the test pass. Everything made here is removed in finalizers, also on failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgecloud.drivers.compute.base import BootSource, DomainSpec, PowerState, VifBinding, VnicSpec
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from edgecloud.errors import DriverError
from edgecloud.images.building import ImageFiles, build_bump_in_the_wire, parse_console
from tests.drivers.compute_conformance import must_info, wait_for_console
from tests.e2e.libvirt_support import (
    RunNames,
    clean_up_run,
    create_bridge,
    libvirt_skip_reason,
    ovs_port_tag,
    ovs_ports,
    plugged,
    sweep_domains,
)

pytestmark = pytest.mark.e2e
BOOT_TIMEOUT = 45.0


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


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's tests, so the KVM probe (cached there) runs once."""
    return tmp_path_factory.mktemp("libvirt-state")


@pytest.fixture
async def driver(state_dir: Path, run: RunNames) -> AsyncIterator[LibvirtComputeDriver]:
    driver = LibvirtComputeDriver(state_dir, name_prefix=run.domain_prefix)
    try:
        yield driver
    finally:
        await driver.close()
        sweep_domains(run.domain_prefix)


def _vnic(
    run: RunNames,
    index: int,
    model: str,
    slot: int,
    tag: str | None = None,
    vlan: int | None = None,
) -> VnicSpec:
    mac = f"02:ec:{run.token[0:2]}:{run.token[2:4]}:{index:02x}:{slot:02x}"
    binding = plugged(VifBinding("ovs", bridge=run.bridge, port_name=run.port_name(), vlan=vlan))
    return VnicSpec(index, "e2e", model, mac, slot, tag=tag, binding=binding)


async def test_guest_sees_vnics_in_declared_order(
    driver: LibvirtComputeDriver, run: RunNames, image: ImageFiles
) -> None:
    declared = (
        _vnic(run, 0, "e1000", 0x03, tag="in"),
        _vnic(run, 1, "virtio", 0x05, vlan=101),
        _vnic(run, 2, "rtl8139", 0x06),
        _vnic(run, 3, "virtio", 0x09, tag="out"),
    )
    scrambled = (declared[3], declared[1], declared[0], declared[2])
    spec = DomainSpec(
        name=f"{run.domain_prefix}boot",
        instance_id=f"e2e-{run.token}",
        vcpus=1,
        memory_mib=256,
        boot=BootSource(
            kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
        ),
        vnics=scrambled,
    )
    await driver.define(spec)
    started = time.monotonic()
    await driver.start(spec.name)
    log = await wait_for_console(driver, spec.name, "EDGECLOUD-READY", BOOT_TIMEOUT)
    boot_seconds = time.monotonic() - started

    seen = [(v.index, v.mac, v.pci, v.tag) for v in parse_console(log)]
    expected = [(v.index, v.mac, f"0000:00:{v.pci_slot:02x}.0", v.tag) for v in declared]
    assert seen == expected, log
    by_mac = {v.mac: v.name for v in parse_console(log)}
    assert f"EDGECLOUD-FORWARDING in={by_mac[declared[0].mac]} out={by_mac[declared[3].mac]}" in log

    info = await must_info(driver, spec.name)
    assert info.state is PowerState.RUNNING
    assert info.vnic_macs == tuple(v.mac for v in declared)
    ports = {v.binding.port_name for v in declared if v.binding}
    assert ports <= ovs_ports(run.bridge)
    assert declared[1].binding is not None
    assert ovs_port_tag(declared[1].binding.port_name) == 101
    print(f"guest reported its vNICs {boot_seconds:.1f} s after start (TCG)")

    await driver.stop(spec.name)
    assert (await must_info(driver, spec.name)).state is PowerState.STOPPED
    await driver.delete(spec.name)
    assert await driver.list_domains() == []


async def test_adopting_driver_sees_the_same_boot(
    driver: LibvirtComputeDriver, run: RunNames, image: ImageFiles, state_dir: Path
) -> None:
    """A second driver (a restarted agent) lists the running domain with the same boot id."""
    vnics = (_vnic(run, 0, "virtio", 0x03), _vnic(run, 1, "virtio", 0x04))
    spec = DomainSpec(
        name=f"{run.domain_prefix}adopt",
        instance_id=f"e2e-adopt-{run.token}",
        vcpus=1,
        memory_mib=256,
        boot=BootSource(
            kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
        ),
        vnics=vnics,
    )
    await driver.define(spec)
    await driver.start(spec.name)
    before = await must_info(driver, spec.name)
    adopter = LibvirtComputeDriver(state_dir, name_prefix=run.domain_prefix)
    try:
        await adopter.define(dataclasses.replace(spec))
        await adopter.start(spec.name)  # running: a no-op
        assert await must_info(adopter, spec.name) == before
        log = await wait_for_console(adopter, spec.name, "EDGECLOUD-READY", BOOT_TIMEOUT)
        assert [v.mac for v in parse_console(log)] == [v.mac for v in vnics]
    finally:
        await adopter.close()
    await asyncio.wait_for(driver.delete(spec.name), 30)


async def test_hot_plug_into_a_stopped_domain_changes_its_definition(
    driver: LibvirtComputeDriver, run: RunNames, image: ImageFiles
) -> None:
    first = _vnic(run, 0, "virtio", 0x03)
    spec = DomainSpec(
        name=f"{run.domain_prefix}coldplug",
        instance_id=f"e2e-coldplug-{run.token}",
        vcpus=1,
        memory_mib=256,
        boot=BootSource(
            kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
        ),
        vnics=(first,),
    )
    await driver.define(spec)
    extra = _vnic(run, 1, "e1000", 0x04)
    await driver.attach_vnic(spec.name, extra)
    await driver.attach_vnic(spec.name, extra)  # already plugged: a no-op
    info = await must_info(driver, spec.name)
    assert info.state is PowerState.STOPPED
    assert info.vnic_macs == (first.mac, extra.mac)
    clash = dataclasses.replace(_vnic(run, 2, "virtio", 0x04), mac="02:ec:00:00:00:99")
    with pytest.raises(DriverError, match="slot"):
        await driver.attach_vnic(spec.name, clash)
    await driver.define(spec)  # the hot-plugged definition is rewritten from the spec
    assert (await must_info(driver, spec.name)).vnic_macs == (first.mac,)
    await driver.delete(spec.name)
