"""Conformance tests for compute drivers: the contract of drivers/compute/base.py, line by line.

Every compute driver (compute/fake.py now, compute/libvirt.py later) must pass these; the
network side is in network_conformance.py. A driver's test module subclasses
``ComputeDriverConformance`` in a class named ``Test...`` (see test_fake_compute.py) and
provides pytest fixtures, in the class, the module or a conftest.py:

Required
    ``driver``         the ComputeDriver under test. Close it on teardown if it needs closing;
                       the tests delete every domain they define (and only those).
    ``make_spec``      a callable ``make_spec(vnics: int = 0) -> DomainSpec`` returning a spec
                       the driver can define *and start*. Every call gives a new name
                       (DOMAIN_PREFIX + something unique), a new instance_id and new unicast
                       MACs; vNIC ``i`` has index ``i`` and a pci_slot that depends on ``i``
                       only, because the hot-plug test plugs ``make_spec(n + 1).vnics[n]`` into
                       a domain made by ``make_spec(n)``. ``SpecFactory`` builds one.
Optional (tests that need a missing one are skipped)
    ``reopen_driver``  a callable returning a *new* driver for the same node, as a restarted
                       agent would build (fake: same state_dir; libvirt: same URI).
    ``foreign_domain`` the name of a domain on the node this driver did not create (libvirt:
                       one defined with plain virsh); it must never be listed.

Class attributes a subclass may set:
    ``guest_reports_vnics``  the guest prints ``EDGECLOUD-VNIC index=.. name=.. mac=.. pci=..``
                             per vNIC and then ``EDGECLOUD-READY`` on its console (the fake
                             driver does; so does the e2e guest image). Then the vNIC order is
                             also checked from inside the guest.
    ``boot_timeout``         seconds to wait for ``EDGECLOUD-READY``.
    ``guest_agent_answers``  the guests ``make_spec`` makes run a guest agent: with the
                             ``guest_agent`` capability, ``guest_interfaces`` must then
                             return every vNIC at its declared PCI address in declared order
                             (within ``boot_timeout``); otherwise it must return None at once.

MACs are compared in lower case, as libvirt reports them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import pytest

from edgecloud.drivers.compute.base import (
    DOMAIN_PREFIX,
    BootSource,
    ComputeDriver,
    DomainInfo,
    DomainSpec,
    PowerState,
    VifBinding,
    VnicSpec,
)
from edgecloud.errors import DriverError

MakeSpec = Callable[..., DomainSpec]
DEFAULT_BOOT = BootSource(disk_path="/var/lib/edgecloud/images/conformance.qcow2")
_VNIC_LINE = re.compile(r"EDGECLOUD-VNIC index=(\d+) name=\S+ mac=(\S+) pci=(\S+)")


@dataclasses.dataclass
class SpecFactory:
    """A ``make_spec`` for drivers that boot anything: ``SpecFactory(boot=...)``.

    ``binding(instance_id, vnic_index, mac)`` gives each vNIC its VifBinding (default none).
    """

    boot: BootSource = DEFAULT_BOOT
    network: str = "conformance-net"
    model: str = "virtio"
    first_pci_slot: int = 3
    vcpus: int = 1
    memory_mib: int = 128
    binding: Callable[[str, int, str], VifBinding | None] = lambda _i, _n, _m: None

    def __call__(self, vnics: int = 0) -> DomainSpec:
        instance_id = str(uuid.uuid4())
        return DomainSpec(
            name=f"{DOMAIN_PREFIX}conformance-{instance_id[:13]}",
            instance_id=instance_id,
            vcpus=self.vcpus,
            memory_mib=self.memory_mib,
            boot=self.boot,
            vnics=tuple(self._vnic(instance_id, i) for i in range(vnics)),
        )

    def _vnic(self, instance_id: str, index: int) -> VnicSpec:
        raw = uuid.uuid4().hex  # 02:... is a locally administered unicast MAC
        mac = f"02:ec:{raw[0:2]}:{raw[2:4]}:{raw[4:6]}:{raw[6:8]}"
        binding = self.binding(instance_id, index, mac)
        slot = self.first_pci_slot + index
        return VnicSpec(index, self.network, self.model, mac, slot, binding=binding)


class Domains:
    """Defines domains for one test and remembers their names so they can be deleted."""

    def __init__(self, driver: ComputeDriver, make_spec: MakeSpec) -> None:
        self.driver, self.make_spec = driver, make_spec
        self.names: list[str] = []

    async def define(self, vnics: int = 0) -> DomainSpec:
        return await self.define_spec(self.make_spec(vnics))

    async def define_spec(self, spec: DomainSpec) -> DomainSpec:
        self.names.append(spec.name)
        await self.driver.define(spec)
        return spec

    async def started(self, vnics: int = 0) -> DomainSpec:
        spec = await self.define(vnics)
        await self.driver.start(spec.name)
        return spec


async def info_of(driver: ComputeDriver, name: str) -> DomainInfo | None:
    """The listed DomainInfo of ``name``, or None when the driver does not list it."""
    return next((d for d in await driver.list_domains() if d.name == name), None)


async def must_info(driver: ComputeDriver, name: str) -> DomainInfo:
    info = await info_of(driver, name)
    assert info is not None, f"{name} is not listed"
    return info


def macs(spec: DomainSpec) -> tuple[str, ...]:
    return tuple(v.mac.lower() for v in spec.vnics)


def _pci(slot: int) -> str:
    return f"0000:00:{slot:02x}.0"


def optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


async def wait_for_console(driver: ComputeDriver, name: str, needle: str, within: float) -> str:
    """Poll the console until ``needle`` appears; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while needle not in (log := await driver.console_log(name)):
        assert loop.time() < deadline, f"{needle} not on the console of {name}:\n{log}"
        await asyncio.sleep(0.1)
    return log


async def raises_driver_error(call: Callable[[], Awaitable[Any]]) -> DriverError:
    with pytest.raises(DriverError) as caught:
        await call()
    assert str(caught.value), "DriverError needs a sentence saying what failed"
    return caught.value


class ComputeDriverConformance:
    """The contract of ComputeDriver; subclass as ``Test...`` and provide the fixtures."""

    guest_reports_vnics: ClassVar[bool] = False
    guest_agent_answers: ClassVar[bool] = False
    boot_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    async def domains(self, driver: ComputeDriver, make_spec: MakeSpec) -> AsyncIterator[Domains]:
        made = Domains(driver, make_spec)
        yield made
        for name in made.names:
            await driver.delete(name)

    async def test_fingerprint_reports_capacity(self, driver: ComputeDriver) -> None:
        facts = await driver.fingerprint()
        assert facts.vcpus >= 1 and facts.memory_mib > 0 and facts.disk_gib >= 0
        assert facts.hypervisor

    async def test_define_does_not_start(self, driver: ComputeDriver, domains: Domains) -> None:
        spec = await domains.define(vnics=2)
        info = await must_info(driver, spec.name)
        assert (info.instance_id, info.state) == (spec.instance_id, PowerState.STOPPED)
        assert info.vnic_macs == macs(spec)

    async def test_define_twice_is_a_no_op(self, driver: ComputeDriver, domains: Domains) -> None:
        spec = await domains.define(vnics=1)
        await driver.define(spec)
        assert [d.name for d in await driver.list_domains()].count(spec.name) == 1
        await driver.start(spec.name)
        running = await must_info(driver, spec.name)
        await driver.define(spec)
        assert await must_info(driver, spec.name) == running

    async def test_changed_spec_takes_effect_at_next_start(
        self, driver: ComputeDriver, domains: Domains, make_spec: MakeSpec
    ) -> None:
        spec = await domains.started(vnics=1)
        before = await must_info(driver, spec.name)
        changed = dataclasses.replace(spec, vcpus=spec.vcpus + 1, vnics=make_spec(2).vnics)
        await driver.define(changed)
        assert await must_info(driver, spec.name) == before  # not restarted, old vNICs live
        await driver.stop(spec.name)
        await driver.start(spec.name)
        after = await must_info(driver, spec.name)
        assert after.state is PowerState.RUNNING and after.vnic_macs == macs(changed)

    async def test_define_rejects_invalid_specs(
        self, driver: ComputeDriver, domains: Domains, make_spec: MakeSpec
    ) -> None:
        spec = make_spec(2)
        first, second = spec.vnics
        bad_specs = [
            dataclasses.replace(spec, name=spec.name.removeprefix(DOMAIN_PREFIX)),
            dataclasses.replace(spec, vcpus=0),
            dataclasses.replace(spec, vnics=(first, dataclasses.replace(second, mac=first.mac))),
            dataclasses.replace(
                spec, vnics=(first, dataclasses.replace(second, pci_slot=first.pci_slot))
            ),
        ]
        for bad in bad_specs:
            await raises_driver_error(lambda bad=bad: domains.define_spec(bad))
        assert await info_of(driver, spec.name) is None

    async def test_start_running_and_stop_stopped_are_no_ops(
        self, driver: ComputeDriver, domains: Domains
    ) -> None:
        spec = await domains.define()
        await driver.stop(spec.name)
        await driver.destroy(spec.name)
        assert (await must_info(driver, spec.name)).state is PowerState.STOPPED
        await driver.start(spec.name)
        running = await must_info(driver, spec.name)
        await driver.start(spec.name)
        assert await must_info(driver, spec.name) == running
        await driver.stop(spec.name)
        stopped = await must_info(driver, spec.name)
        await driver.stop(spec.name)
        await driver.destroy(spec.name)
        assert await must_info(driver, spec.name) == stopped

    async def test_boot_id_changes_at_every_start_and_only_then(
        self, driver: ComputeDriver, domains: Domains
    ) -> None:
        spec = await domains.started()
        first = (await must_info(driver, spec.name)).boot_id
        assert first
        await driver.stop(spec.name)
        assert (await must_info(driver, spec.name)).boot_id == first
        await driver.start(spec.name)
        second = (await must_info(driver, spec.name)).boot_id
        await driver.destroy(spec.name)
        await driver.start(spec.name)
        third = (await must_info(driver, spec.name)).boot_id
        assert len({first, second, third}) == 3

    async def test_delete_removes_and_unknown_is_a_no_op(
        self, driver: ComputeDriver, domains: Domains, make_spec: MakeSpec
    ) -> None:
        stopped, running = await domains.define(), await domains.started(vnics=1)
        for spec in (stopped, running):
            await driver.delete(spec.name)
            assert await info_of(driver, spec.name) is None
            await driver.delete(spec.name)
        await driver.delete(make_spec().name)

    async def test_list_domains_shows_owned_domains_only(
        self, driver: ComputeDriver, domains: Domains, request: pytest.FixtureRequest
    ) -> None:
        stopped, running = await domains.define(), await domains.started()
        listed = {d.name: d for d in await driver.list_domains()}
        assert all(name.startswith(DOMAIN_PREFIX) for name in listed)
        assert listed[stopped.name].state is PowerState.STOPPED
        assert listed[running.name].state is PowerState.RUNNING
        foreign = optional_fixture(request, "foreign_domain")
        assert foreign is None or foreign not in listed

    async def test_console_log_is_readable(self, driver: ComputeDriver, domains: Domains) -> None:
        if not driver.capabilities.console_log:
            pytest.skip(f"{driver.name} driver has no console log")
        spec = await domains.started()
        if self.guest_reports_vnics:
            await wait_for_console(driver, spec.name, "EDGECLOUD-READY", self.boot_timeout)
        assert isinstance(await driver.console_log(spec.name), str)
        assert len((await driver.console_log(spec.name, max_bytes=16)).encode()) <= 16

    async def test_vnics_keep_their_declared_order(
        self, driver: ComputeDriver, domains: Domains
    ) -> None:
        spec = await domains.define(vnics=4)
        assert (await must_info(driver, spec.name)).vnic_macs == macs(spec)
        await driver.start(spec.name)
        assert (await must_info(driver, spec.name)).vnic_macs == macs(spec)
        if self.guest_reports_vnics:
            log = await wait_for_console(driver, spec.name, "EDGECLOUD-READY", self.boot_timeout)
            seen = [(int(i), mac, pci) for i, mac, pci in _VNIC_LINE.findall(log)]
            declared = [(v.index, v.mac.lower(), _pci(v.pci_slot)) for v in spec.vnics]
            assert seen == declared

    async def test_listing_order_is_declared_order_not_slot_order(
        self, driver: ComputeDriver, domains: Domains, make_spec: MakeSpec
    ) -> None:
        spec = make_spec(3)
        shuffled = (spec.vnics[2], spec.vnics[0], spec.vnics[1])
        vnics = tuple(dataclasses.replace(v, index=i) for i, v in enumerate(shuffled))
        spec = await domains.define_spec(dataclasses.replace(spec, vnics=vnics))
        await driver.start(spec.name)
        assert (await must_info(driver, spec.name)).vnic_macs == macs(spec)

    async def test_hot_plug_keeps_the_domain_running(
        self, driver: ComputeDriver, domains: Domains, make_spec: MakeSpec
    ) -> None:
        spec = await domains.started(vnics=1)
        extra = make_spec(2).vnics[1]
        if not driver.capabilities.hot_plug_vnic:
            with pytest.raises(NotImplementedError):
                await driver.attach_vnic(spec.name, extra)
            return
        before = await must_info(driver, spec.name)
        await driver.attach_vnic(spec.name, extra)
        plugged = await must_info(driver, spec.name)
        assert plugged.vnic_macs == (*macs(spec), extra.mac.lower())
        await driver.detach_vnic(spec.name, extra.mac)
        assert await must_info(driver, spec.name) == before
        await raises_driver_error(lambda: driver.detach_vnic(spec.name, extra.mac))

    async def test_unknown_domain_raises_driver_error(
        self, driver: ComputeDriver, make_spec: MakeSpec
    ) -> None:
        spec = make_spec(1)  # never defined
        name, vnic = spec.name, spec.vnics[0]
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: driver.start(name),
            lambda: driver.stop(name),
            lambda: driver.destroy(name),
        ]
        if driver.capabilities.console_log:
            calls.append(lambda: driver.console_log(name))
        if driver.capabilities.hot_plug_vnic:
            calls += [
                lambda: driver.attach_vnic(name, vnic),
                lambda: driver.detach_vnic(name, vnic.mac),
            ]
        for call in calls:
            error = await raises_driver_error(call)
            assert name in str(error)

    async def test_guest_interfaces_through_the_guest_agent(
        self, driver: ComputeDriver, domains: Domains
    ) -> None:
        if not driver.capabilities.guest_agent:
            with pytest.raises(NotImplementedError):
                await driver.guest_interfaces(f"{DOMAIN_PREFIX}any")
            return
        spec = await domains.define(vnics=3)
        assert await driver.guest_interfaces(spec.name, timeout=2.0) is None  # not running
        await driver.start(spec.name)
        loop = asyncio.get_running_loop()
        if not self.guest_agent_answers:
            asked = loop.time()
            assert await driver.guest_interfaces(spec.name, timeout=2.0) is None
            assert loop.time() - asked < 4.0, "a guest without an agent must not hold us long"
            return
        deadline = loop.time() + self.boot_timeout
        while (seen := await driver.guest_interfaces(spec.name, timeout=2.0)) is None:
            assert loop.time() < deadline, f"no guest agent answer from {spec.name}"
            await asyncio.sleep(0.5)
        nics = [(i.mac, i.pci) for i in seen if i.pci is not None]
        assert nics == [(v.mac.lower(), _pci(v.pci_slot)) for v in spec.vnics]
        assert all(i.name for i in seen)

    async def test_guest_interfaces_of_an_unknown_domain_raise(
        self, driver: ComputeDriver, make_spec: MakeSpec
    ) -> None:
        if not driver.capabilities.guest_agent:
            pytest.skip(f"{driver.name} driver has no guest agent support")
        name = make_spec().name
        error = await raises_driver_error(lambda: driver.guest_interfaces(name))
        assert name in str(error)

    async def test_a_restarted_agent_adopts_domains(
        self, driver: ComputeDriver, domains: Domains, request: pytest.FixtureRequest
    ) -> None:
        reopen: Callable[[], ComputeDriver] | None = optional_fixture(request, "reopen_driver")
        if reopen is None or not driver.capabilities.persistent:
            pytest.skip(f"{driver.name} driver cannot be reopened here")
        stopped, running = await domains.define(vnics=1), await domains.started(vnics=2)
        before = [await must_info(driver, s.name) for s in (stopped, running)]
        adopter = reopen()
        try:
            assert [await must_info(adopter, s.name) for s in (stopped, running)] == before
            await adopter.define(running)  # the restarted agent re-asserts its spec
            assert await must_info(adopter, running.name) == before[1]
        finally:
            await adopter.close()
