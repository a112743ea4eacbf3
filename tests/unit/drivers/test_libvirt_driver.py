"""Tests of the libvirt compute driver (drivers/compute/libvirt.py) on libvirt's test driver.

``test:///default`` is libvirt's in-process fake hypervisor: no root, no QEMU, no guest, but the
real libvirt API, XML parser and domain lifecycle. The shared compute conformance suite runs
here in seconds; tests/e2e/test_libvirt_conformance.py runs it again with real QEMU guests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.drivers.compute_conformance import ComputeDriverConformance, SpecFactory

from edgecloud.drivers import registry
from edgecloud.drivers.compute.base import BootSource, VifBinding
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from edgecloud.errors import DriverError

libvirt = pytest.importorskip("libvirt", reason="needs libvirt-python (scripts/bootstrap-host)")
if not (shutil.which("genisoimage") or shutil.which("xorriso")):
    pytest.skip("needs genisoimage or xorriso for config drives", allow_module_level=True)

URI = "test:///default"
BOOT = BootSource(kernel_path="/boot/vmlinuz", initrd_path="/boot/initrd.img", cmdline="quiet")


def _driver(state_dir: Path, **kwargs: Any) -> LibvirtComputeDriver:
    return LibvirtComputeDriver(state_dir, uri=URI, allow_unbound_vnics=True, **kwargs)


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LibvirtComputeDriver]:
    driver = _driver(tmp_path)
    yield driver
    await driver.close()


@pytest.fixture
def make_spec() -> SpecFactory:
    return SpecFactory(boot=BOOT)


@pytest.fixture
def reopen_driver(tmp_path: Path) -> Callable[[], LibvirtComputeDriver]:
    return lambda: _driver(tmp_path)


@pytest.fixture
def foreign_domain() -> Iterator[str]:
    """A domain defined with plain libvirt. The connection stays open: test:///default
    forgets everything when its last connection closes."""
    name = f"ec-foreign-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(URI)
    dom = conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    yield name
    dom.undefine()
    conn.close()


class TestLibvirtOnTestDriverConformance(ComputeDriverConformance):
    async def test_hot_plug_keeps_the_domain_running(self) -> None:  # type: ignore[override]
        pytest.skip(
            "libvirt's test driver has no virDomainAttachDeviceFlags: "
            "tests/e2e/test_libvirt_conformance.py covers hot plug on real QEMU"
        )


async def test_registry_builds_the_libvirt_driver(tmp_path: Path) -> None:
    driver = registry.compute_driver("libvirt", tmp_path)
    assert isinstance(driver, LibvirtComputeDriver)
    await driver.close()


async def test_fingerprint_reports_tcg_without_probing_off_qemu(
    driver: LibvirtComputeDriver,
) -> None:
    facts = await driver.fingerprint()
    assert facts.hypervisor == "qemu-tcg" and facts.details["accel"] == "tcg"


async def test_real_domains_need_an_ovs_binding(tmp_path: Path, make_spec: SpecFactory) -> None:
    strict = LibvirtComputeDriver(tmp_path, uri=URI)
    try:
        with pytest.raises(DriverError, match="ovs binding"):
            await strict.define(make_spec(1))
    finally:
        await strict.close()


async def test_define_writes_config_drive_and_console_paths(
    driver: LibvirtComputeDriver, tmp_path: Path
) -> None:
    binding = VifBinding("ovs", bridge="br-test", port_name="tap-test0", vlan=7)
    spec = SpecFactory(boot=BOOT, binding=lambda _i, _n, _m: binding)(2)
    await driver.define(spec)
    try:
        assert (tmp_path / "configdrive" / f"{spec.name}.iso").stat().st_size > 0
        xml = libvirt.open(URI).lookupByName(spec.name).XMLDesc(0)
        assert str(tmp_path / "console" / f"{spec.name}.log") in xml
        assert "<target dev='tap-test0' managed='no'/>" in xml and "openvswitch" not in xml
    finally:
        await driver.delete(spec.name)
    assert not (tmp_path / "configdrive" / f"{spec.name}.iso").exists()


async def test_a_domain_of_another_instance_is_not_taken_over(
    driver: LibvirtComputeDriver, make_spec: SpecFactory
) -> None:
    spec = make_spec(1)
    await driver.define(spec)
    try:
        other = dataclasses.replace(spec, instance_id=str(uuid.uuid4()))
        with pytest.raises(DriverError, match="already belongs"):
            await driver.define(other)
    finally:
        await driver.delete(spec.name)


async def test_foreign_domains_are_never_touched(
    driver: LibvirtComputeDriver, foreign_domain: str
) -> None:
    with pytest.raises(DriverError, match=foreign_domain):
        await driver.start(foreign_domain)
    with pytest.raises(DriverError, match="not created by edgecloud"):
        await driver.delete(foreign_domain)
    assert foreign_domain not in {d.name for d in await driver.list_domains()}


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (bootstrap-host)")
async def test_guest_interfaces_without_an_answering_agent_is_none(
    driver: LibvirtComputeDriver, make_spec: SpecFactory, tmp_path: Path
) -> None:
    """A disk-booted domain has the agent channel, but libvirt's test driver runs no guest (and
    supports no agent commands): the answer is None, quickly, not an error."""
    base = tmp_path / "cloud.qcow2"
    await asyncio.to_thread(
        subprocess.run, ["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True
    )
    spec = dataclasses.replace(make_spec(2), boot=BootSource(disk_path=str(base)))
    await driver.define(spec)
    try:
        assert await driver.guest_interfaces(spec.name, timeout=1.0) is None  # stopped
        await driver.start(spec.name)
        assert await driver.guest_interfaces(spec.name, timeout=1.0) is None
    finally:
        await driver.delete(spec.name)


def test_the_live_xml_says_whether_the_agent_is_connected() -> None:
    from edgecloud.drivers.compute.libvirt import _agent_connected

    def xml(target: str) -> str:
        return f"<domain><devices><channel type='unix'>{target}</channel></devices></domain>"

    name = "name='org.qemu.guest_agent.0'"
    assert _agent_connected(xml(f"<target type='virtio' {name} state='connected'/>"))
    assert not _agent_connected(xml(f"<target type='virtio' {name} state='disconnected'/>"))
    assert _agent_connected(xml(f"<target type='virtio' {name}/>"))  # not said: ask
    assert not _agent_connected(xml("<target type='virtio' name='org.example.other'/>"))
    assert not _agent_connected("<domain><devices/></domain>")


# memory copy of a live migration ------------------------------------------------------------
@pytest.mark.parametrize(
    ("requested", "domain_type", "qemu_version", "resolved"),
    [
        ("auto", "kvm", 7_002_000, "pre-copy"),
        ("auto", "qemu", 7_002_000, "paused"),  # TCG < 9.0: its dirty tracking can lose writes
        ("auto", "qemu", 8_002_009, "paused"),
        ("auto", "qemu", 9_000_000, "pre-copy"),  # fixed upstream in 9.0
        ("auto", "qemu", 10_000_002, "pre-copy"),
        ("pre-copy", "qemu", 7_002_000, "pre-copy"),
        ("paused", "kvm", 10_000_002, "paused"),
    ],
)
def test_auto_copies_memory_paused_only_under_an_old_tcg(
    requested: str, domain_type: str, qemu_version: int, resolved: str
) -> None:
    from edgecloud.drivers.compute.libvirt import copy_mode

    assert copy_mode(requested, domain_type, qemu_version) == resolved


def test_a_paused_copy_is_not_live_and_a_diskless_one_copies_no_disk() -> None:
    from edgecloud.drivers.compute.libvirt import copy_mode, migration_flags

    with pytest.raises(DriverError, match="unknown memory copy mode 'post-copy'"):
        copy_mode("post-copy", "kvm", 10_000_002)
    live = migration_flags("pre-copy", with_disk=True)
    assert live & libvirt.VIR_MIGRATE_LIVE and live & libvirt.VIR_MIGRATE_NON_SHARED_INC
    assert live & libvirt.VIR_MIGRATE_TLS and live & libvirt.VIR_MIGRATE_PEER2PEER
    paused = migration_flags("paused", with_disk=False)
    assert not paused & libvirt.VIR_MIGRATE_LIVE
    assert not paused & libvirt.VIR_MIGRATE_NON_SHARED_INC
    assert paused & libvirt.VIR_MIGRATE_TLS and paused & libvirt.VIR_MIGRATE_PERSIST_DEST
