"""E2E: the libvirt compute driver passes the shared compute conformance suite on real QEMU.

Runs tests/drivers/compute_conformance.py against drivers/compute/libvirt.py with
``qemu:///system``: every domain boots the bump-in-the-wire image (images/building.py) under
TCG, with vNICs plugged into a per-run OVS bridge, and the guest's own console report checks
the vNIC order. Domain names carry a per-run prefix; the driver sees only those. Every domain
of the run is destroyed and undefined after each test and the bridge deleted after the module,
also when a test fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.drivers.compute.base import BootSource, DomainSpec, VifBinding
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from edgecloud.images.building import build_bump_in_the_wire
from tests.drivers.compute_conformance import ComputeDriverConformance, SpecFactory
from tests.e2e.libvirt_support import (
    RunNames,
    clean_up_run,
    create_bridge,
    libvirt_skip_reason,
    plugged,
    sweep_domains,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run() -> Iterator[RunNames]:
    if reason := libvirt_skip_reason():
        pytest.skip(reason)
    names = RunNames()
    create_bridge(names.bridge)
    yield names
    clean_up_run(names)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory, run: RunNames) -> Path:
    """Shared by the module's drivers (as one agent's), so the KVM probe runs once."""
    return tmp_path_factory.mktemp("libvirt-state")


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory, run: RunNames) -> BootSource:
    image = build_bump_in_the_wire(tmp_path_factory.mktemp("images"))
    return BootSource(
        kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
    )


@pytest.fixture
async def driver(state_dir: Path, run: RunNames) -> AsyncIterator[LibvirtComputeDriver]:
    driver = LibvirtComputeDriver(state_dir, name_prefix=run.domain_prefix)
    try:
        yield driver
    finally:
        await driver.close()
        sweep_domains(run.domain_prefix)


@pytest.fixture
def reopen_driver(state_dir: Path, run: RunNames) -> Callable[[], LibvirtComputeDriver]:
    return lambda: LibvirtComputeDriver(state_dir, name_prefix=run.domain_prefix)


@pytest.fixture
def make_spec(run: RunNames, boot: BootSource) -> Callable[..., DomainSpec]:
    factory = SpecFactory(
        boot=boot,
        memory_mib=256,
        binding=lambda _i, _n, _m: plugged(
            VifBinding("ovs", bridge=run.bridge, port_name=run.port_name())
        ),
    )

    def make_spec(vnics: int = 0) -> DomainSpec:
        spec = factory(vnics)
        return dataclasses.replace(spec, name=f"{run.domain_prefix}{spec.instance_id[:13]}")

    return make_spec


@pytest.fixture
def foreign_domain(run: RunNames) -> Iterator[str]:
    """A domain with the run's prefix defined by plain libvirt: not ours, never listed."""
    import libvirt

    name = f"{run.domain_prefix}foreign"
    xml = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    conn: Any = libvirt.open("qemu:///system")
    try:
        conn.defineXML(xml)
        yield name
    finally:
        conn.close()
        sweep_domains(name)


class TestLibvirtComputeConformance(ComputeDriverConformance):
    guest_reports_vnics = True
    boot_timeout = 40.0
