"""E2E: a real cloud-init guest (images/cloud_guest.py) on the libvirt driver, checked from inside.

A throwaway qcow2 overlay on the cached debian-cloud image (the image itself is never written)
boots from its disk under TCG with three virtio vNICs on a per-run OVS bridge and the config
drive the driver builds. Through the QEMU guest agent (tests/e2e/guest_agent_support.py, no
network) the test sees cloud-init finish, the hostname the config drive gave, and every vNIC's
MAC at its declared PCI address in declared order (read with the guest's own readlink); the
driver's ``guest_interfaces`` must say the same. Reports the guest agent's first answer and
cloud-init's finish, in seconds after start. Everything made here is removed, also on failure.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.drivers.compute.base import BootSource, DomainSpec, VifBinding, VnicSpec
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from tests.e2e.guest_agent_support import GuestAgent
from tests.e2e.libvirt_support import (
    RunNames,
    clean_up_run,
    create_bridge,
    libvirt_skip_reason,
    plugged,
)

pytestmark = pytest.mark.e2e
AGENT_TIMEOUT = 240.0  # TCG on a busy 2-core machine
CLOUD_INIT_TIMEOUT = 300.0
# readlink, not sysfs uevent (as the driver does): a second way to the same answer
GUEST_NICS = (
    "for n in /sys/class/net/*; do [ -e $n/device ] || continue; p=$(readlink -f $n/device); "
    "case ${p##*/} in virtio*) p=${p%/*};; esac; echo ${n##*/} $(cat $n/address) ${p##*/}; "
    "done | sort -k3"
)


CLOUD_INIT_PROBLEMS = (
    "cloud-init status --long; grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -20"
)


@pytest.fixture(scope="module")
def run() -> Iterator[RunNames]:
    if reason := libvirt_skip_reason():
        pytest.skip(reason)
    names = RunNames()
    create_bridge(names.bridge)
    yield names
    clean_up_run(names)


@pytest.fixture
async def driver(tmp_path: Path, run: RunNames) -> AsyncIterator[LibvirtComputeDriver]:
    driver = LibvirtComputeDriver(tmp_path / "state", name_prefix=run.domain_prefix)
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def overlay(tmp_path: Path, cloud_guest_image: Path) -> Iterator[Path]:
    """A qcow2 overlay on the built image: the guest writes here, never to the image."""
    path = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(cloud_guest_image),
         str(path), "4G"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    yield path
    path.unlink(missing_ok=True)


def _vnic(run: RunNames, index: int, slot: int) -> VnicSpec:
    mac = f"02:ec:{run.token[0:2]}:{run.token[2:4]}:{index:02x}:{slot:02x}"
    binding = plugged(VifBinding("ovs", bridge=run.bridge, port_name=run.port_name()))
    return VnicSpec(index, "e2e", "virtio", mac, slot, binding=binding)


@pytest.mark.timeout(900)  # the first run of a CI job builds the image (about 4 minutes)
async def test_cloud_init_guest_sees_its_vnics_in_declared_order(
    driver: LibvirtComputeDriver,
    run: RunNames,
    overlay: Path,
    cloud_guest_image: Path,
    record_property: Any,
) -> None:
    image_mtime = cloud_guest_image.stat().st_mtime_ns
    declared = (_vnic(run, 0, 0x03), _vnic(run, 1, 0x05), _vnic(run, 2, 0x08))
    hostname = f"cg-{run.token}"
    spec = DomainSpec(
        name=f"{run.domain_prefix}cloud",
        instance_id=f"e2e-cloud-{run.token}",
        vcpus=1,
        memory_mib=1024,
        boot=BootSource(disk_path=str(overlay)),
        vnics=(declared[2], declared[0], declared[1]),  # handed over scrambled
        metadata={"hostname": hostname},
    )
    try:
        await driver.define(spec)
        started = time.monotonic()
        await driver.start(spec.name)
        guest = GuestAgent(spec.name)
        first_answer = await guest.wait_until_answering(within=AGENT_TIMEOUT)
        waited = await guest.run("cloud-init", "status", "--wait", within=CLOUD_INIT_TIMEOUT)
        cloud_init_done = time.monotonic() - started
        if not waited.ok:
            problems = await guest.run("sh", "-c", CLOUD_INIT_PROBLEMS)
            pytest.fail(f"cloud-init failed in the guest:\n{problems.stdout}{problems.stderr}")
        assert await guest.read_file("/var/lib/cloud/instance/boot-finished")
        status = await guest.run("cloud-init", "status", "--long", check=True)
        assert "status: done" in status.stdout and "DataSourceConfigDrive" in status.stdout

        assert (await guest.run("hostname", check=True)).stdout.strip() == hostname
        nics = (await guest.run("sh", "-c", GUEST_NICS, check=True)).stdout.split("\n")
        seen = [tuple(line.split()) for line in nics if line.strip()]
        expected = [(v.mac, f"0000:00:{v.pci_slot:02x}.0") for v in declared]
        assert [(mac, pci) for _name, mac, pci in seen] == expected

        through_driver = await driver.guest_interfaces(spec.name)
        assert through_driver is not None
        assert [(i.name, i.mac, i.pci) for i in through_driver] == seen

        record_property("guest_agent_first_answer_s", round(first_answer, 1))
        record_property("cloud_init_finished_s", round(cloud_init_done, 1))
    finally:
        await driver.delete(spec.name)
    assert await driver.list_domains() == []
    assert cloud_guest_image.stat().st_mtime_ns == image_mtime
