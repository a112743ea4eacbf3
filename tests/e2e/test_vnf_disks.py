"""E2E: a disk per VNF. Real QEMU domains boot from their own qcow2 overlays on one base image.

Two domains are defined from the same base (a raw disk image, as a node's image cache holds
it) and run at the same time; each gets its own overlay (backing file: the base, grown to the
flavor's disk size), QEMU holds the overlays open, not the base for writing; after both are
deleted no overlay is left and the base's sha256 is what it was. The base needs no OS for
this: the firmware finds no bootable disk and the domain keeps running, which is all the disk
plumbing needs (the full guest is in test_cloud_guest*.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgecloud.drivers.compute.base import BootSource, DomainSpec, PowerState
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from tests.drivers.compute_conformance import must_info
from tests.e2e.libvirt_support import RunNames, clean_up_run, libvirt_skip_reason, sweep_domains

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run() -> Iterator[RunNames]:
    if reason := libvirt_skip_reason():
        pytest.skip(reason)
    names = RunNames()
    yield names
    clean_up_run(names)


@pytest.fixture
async def driver(tmp_path: Path, run: RunNames) -> AsyncIterator[LibvirtComputeDriver]:
    driver = LibvirtComputeDriver(tmp_path / "state", name_prefix=run.domain_prefix, accel="tcg")
    try:
        yield driver
    finally:
        await driver.close()
        sweep_domains(run.domain_prefix)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def qemu_img_info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(path)], check=True, capture_output=True
    )
    return dict(json.loads(out.stdout))


async def test_two_vnfs_from_one_base_each_write_only_their_overlay(
    driver: LibvirtComputeDriver, run: RunNames, tmp_path: Path
) -> None:
    base = tmp_path / "cache" / "base.img"
    base.parent.mkdir()
    with base.open("wb") as f:
        f.truncate(64 << 20)
        f.seek(510)
        f.write(b"\x55\xaa")
    base.chmod(0o444)
    before = sha256(base)
    names = [f"{run.domain_prefix}disk{i}" for i in range(2)]
    for i, name in enumerate(names):
        spec = DomainSpec(
            name=name,
            instance_id=f"e2e-disk-{run.token}-{i}",
            vcpus=1,
            memory_mib=64,
            boot=BootSource(disk_path=str(base), disk_format="raw"),
            disk_gib=1,
        )
        await driver.define(spec)
        await driver.define(spec)  # idempotent: the overlay is made once
        await driver.start(name)
    overlays = [driver.state_dir / "disks" / f"{name}.qcow2" for name in names]
    for name, overlay in zip(names, overlays, strict=True):
        assert (await must_info(driver, name)).state == PowerState.RUNNING
        info = qemu_img_info(overlay)
        assert info["format"] == "qcow2"
        assert info["backing-filename"] == str(base)
        assert info["virtual-size"] == 1 << 30  # grown to the flavor's 1 GiB
    for name in names:
        await driver.delete(name)
    assert [o for o in overlays if o.exists()] == []
    assert sha256(base) == before
