"""Tests of the fake compute driver (drivers/compute/fake.py).

It runs the shared compute conformance suite (compute_conformance.py) both in memory and with a
state_dir, then checks what only the fake has: persistence across processes, the test hooks
(fail_next, crash), the synthetic console and its hypervisor-like spec checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edgecloud.drivers import registry
from edgecloud.drivers.compute.base import BootSource, DomainSpec, PowerState
from edgecloud.drivers.compute.fake import CONSOLE_LINES, STATE_FILE, FakeComputeDriver
from edgecloud.errors import DriverError
from tests.drivers.compute_conformance import (
    ComputeDriverConformance,
    SpecFactory,
    must_info,
)


@pytest.fixture(params=["in-memory", "state-dir"])
def state_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    return tmp_path if request.param == "state-dir" else None


@pytest.fixture
async def driver(state_dir: Path | None) -> AsyncIterator[FakeComputeDriver]:
    driver = FakeComputeDriver(state_dir=state_dir)
    yield driver
    await driver.close()


@pytest.fixture
def make_spec() -> SpecFactory:
    return SpecFactory()


@pytest.fixture
def reopen_driver(state_dir: Path | None) -> Callable[[], FakeComputeDriver] | None:
    return None if state_dir is None else (lambda: FakeComputeDriver(state_dir=state_dir))


class TestFakeComputeConformance(ComputeDriverConformance):
    guest_reports_vnics = True
    guest_agent_answers = True  # SpecFactory's guests boot from a disk


# -- persistence -----------------------------------------------------------------------------


async def test_a_new_driver_sees_the_same_domains(tmp_path: Path, make_spec: SpecFactory) -> None:
    first = FakeComputeDriver(state_dir=tmp_path)
    spec = make_spec(2)
    await first.define(spec)
    await first.start(spec.name)
    before = await must_info(first, spec.name)
    log = await first.console_log(spec.name)
    second = FakeComputeDriver(state_dir=tmp_path)
    after = await must_info(second, spec.name)
    assert after == before and after.state is PowerState.RUNNING
    assert await second.console_log(spec.name) == log
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [STATE_FILE]  # no temporary file left behind


async def test_a_new_process_sees_the_same_domains(tmp_path: Path, make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver(state_dir=tmp_path)
    spec = make_spec(1)
    await driver.define(spec)
    await driver.start(spec.name)
    boot_id = (await must_info(driver, spec.name)).boot_id
    script = textwrap.dedent(
        f"""
        import asyncio, json
        from edgecloud.drivers.compute.fake import FakeComputeDriver
        domains = asyncio.run(FakeComputeDriver(state_dir={str(tmp_path)!r}).list_domains())
        print(json.dumps([[d.name, d.state.value, d.boot_id] for d in domains]))
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert json.loads(out) == [[spec.name, "running", boot_id]]


async def test_unreadable_state_file_is_a_driver_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(DriverError, match="cannot read fake domains"):
        FakeComputeDriver(state_dir=tmp_path)


async def test_in_memory_driver_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_spec: SpecFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    driver = FakeComputeDriver()
    spec = make_spec(1)
    await driver.define(spec)
    await driver.start(spec.name)
    assert list(tmp_path.iterdir()) == []


# -- test hooks ------------------------------------------------------------------------------


async def test_fail_next_fails_one_call(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec = make_spec()
    driver.fail_next("define", "disk image is gone")
    with pytest.raises(DriverError, match="disk image is gone"):
        await driver.define(spec)
    assert await driver.list_domains() == []
    await driver.define(spec)
    driver.fail_next("start", "no memory")
    with pytest.raises(DriverError, match="no memory"):
        await driver.start(spec.name)
    await driver.start(spec.name)
    assert (await must_info(driver, spec.name)).state is PowerState.RUNNING


def test_fail_next_rejects_unknown_operations() -> None:
    with pytest.raises(ValueError, match="unknown operation 'boot'"):
        FakeComputeDriver().fail_next("boot", "x")


async def test_crash(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec = make_spec(1)
    await driver.define(spec)
    with pytest.raises(DriverError, match="not running"):
        driver.crash(spec.name)
    await driver.start(spec.name)
    running = await must_info(driver, spec.name)
    driver.crash(spec.name)
    crashed = await must_info(driver, spec.name)
    assert crashed == dataclasses.replace(running, state=PowerState.CRASHED)
    assert "Kernel panic" in await driver.console_log(spec.name)
    await driver.start(spec.name)
    restarted = await must_info(driver, spec.name)
    assert restarted.state is PowerState.RUNNING and restarted.boot_id != running.boot_id
    driver.crash(spec.name)
    await driver.stop(spec.name)
    assert (await must_info(driver, spec.name)).state is PowerState.STOPPED


# -- guest agent -------------------------------------------------------------------------------


async def test_guest_agent_answers_for_disk_boots_only_unless_told(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    driver = FakeComputeDriver(state_dir=tmp_path)
    disk = make_spec(2)
    kernel = dataclasses.replace(
        make_spec(1), boot=BootSource(kernel_path="/img/vmlinuz", initrd_path="/img/initrd")
    )
    for spec in (disk, kernel):
        await driver.define(spec)
        await driver.start(spec.name)
    seen = await driver.guest_interfaces(disk.name)
    assert seen is not None
    assert [(i.name, i.mac, i.pci) for i in seen] == [
        (f"ens{v.pci_slot}", v.mac.lower(), f"0000:00:{v.pci_slot:02x}.0") for v in disk.vnics
    ]
    assert await driver.guest_interfaces(kernel.name) is None  # no agent in a kernel boot
    driver.set_guest_agent(disk.name, False)
    driver.set_guest_agent(kernel.name, True)
    reopened = FakeComputeDriver(state_dir=tmp_path)  # the hook's setting is kept
    assert await reopened.guest_interfaces(disk.name) is None
    assert await reopened.guest_interfaces(kernel.name) is not None
    await reopened.stop(kernel.name)
    assert await reopened.guest_interfaces(kernel.name) is None  # no running guest


async def test_guest_interfaces_can_fail_like_the_rest(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec = make_spec(1)
    await driver.define(spec)
    await driver.start(spec.name)
    driver.fail_next("guest_interfaces", "agent channel broken")
    with pytest.raises(DriverError, match="agent channel broken"):
        await driver.guest_interfaces(spec.name)
    assert await driver.guest_interfaces(spec.name) is not None


# -- console -----------------------------------------------------------------------------------


async def test_console_reports_vnics_at_every_start(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec = make_spec(2)
    await driver.define(spec)
    for _ in range(2):
        await driver.start(spec.name)
        await driver.stop(spec.name)
    await driver.start(spec.name)
    lines = (await driver.console_log(spec.name)).splitlines()
    expected = [
        f"EDGECLOUD-VNIC index={i} name=eth{i} mac={v.mac} pci=0000:00:{v.pci_slot:02x}.0"
        for i, v in enumerate(spec.vnics)
    ]
    assert lines[-3:] == [*expected, "EDGECLOUD-READY"]
    assert lines.count("EDGECLOUD-READY") == 1  # a new boot, a new console (append off)


async def test_console_keeps_the_tail_only(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec, extra = make_spec(1), make_spec(2).vnics[1]
    await driver.define(spec)
    await driver.start(spec.name)
    for _ in range(CONSOLE_LINES):  # every hot plug re-reports: more lines than are kept
        await driver.attach_vnic(spec.name, extra)
        await driver.detach_vnic(spec.name, extra.mac)
    log = await driver.console_log(spec.name)
    assert len(log.splitlines()) == CONSOLE_LINES
    assert await driver.console_log(spec.name, max_bytes=20) == log[-20:]
    assert await driver.console_log(spec.name, max_bytes=0) == ""


async def test_hot_plugged_vnic_shows_on_the_console(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec, extra = make_spec(1), make_spec(2).vnics[1]
    await driver.define(spec)
    await driver.start(spec.name)
    await driver.attach_vnic(spec.name, extra)
    assert f"EDGECLOUD-VNIC index=1 name=eth1 mac={extra.mac}" in await driver.console_log(
        spec.name
    )


# -- spec checks -------------------------------------------------------------------------------


def _second_vnic(**changes: object) -> Callable[[DomainSpec], DomainSpec]:
    def change(spec: DomainSpec) -> DomainSpec:
        second = dataclasses.replace(spec.vnics[1], **changes)  # type: ignore[arg-type]
        return dataclasses.replace(spec, vnics=(spec.vnics[0], second))

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda spec: dataclasses.replace(spec, memory_mib=8), "16 MiB"),
        (_second_vnic(model="ne2k"), "no vNIC model 'ne2k'"),
        (_second_vnic(model="sriov-vf"), "no vNIC model 'sriov-vf'"),
        (_second_vnic(mac="03:00:00:00:00:01"), "not a unicast MAC"),
        (_second_vnic(mac="52:54:00:00:01"), "not a unicast MAC"),
        (_second_vnic(pci_slot=0), "PCI slot 0 is not in 1..31"),
        (_second_vnic(pci_slot=32), "PCI slot 32 is not in 1..31"),
        (_second_vnic(index=0), "vNIC index 0 is given to two vNICs"),
    ],
)
async def test_rejects_what_a_hypervisor_would(
    make_spec: SpecFactory, change: Callable[[DomainSpec], DomainSpec], message: str
) -> None:
    with pytest.raises(DriverError, match=message):
        await FakeComputeDriver().define(change(make_spec(2)))


async def test_a_name_belongs_to_one_instance(make_spec: SpecFactory) -> None:
    driver = FakeComputeDriver()
    spec = make_spec()
    await driver.define(spec)
    with pytest.raises(DriverError, match="already belongs to instance"):
        await driver.define(dataclasses.replace(spec, instance_id="someone-else"))


async def test_fingerprint_and_registry(tmp_path: Path) -> None:
    facts = await FakeComputeDriver(vcpus=8, memory_mib=16384, disk_gib=100).fingerprint()
    assert (facts.vcpus, facts.memory_mib, facts.disk_gib, facts.hypervisor) == (
        8,
        16384,
        100,
        "fake",
    )
    assert isinstance(registry.compute_driver("fake", tmp_path), FakeComputeDriver)
