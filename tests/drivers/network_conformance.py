"""Conformance tests for network drivers: the contract of drivers/network/base.py, line by line.

Every network driver (network/fake.py now, network/ovs.py later) must pass these; the compute
side is in compute_conformance.py. A driver's test module subclasses
``NetworkDriverConformance`` in a class named ``Test...`` (see test_fake_network.py) and
provides pytest fixtures, in the class, the module or a conftest.py:

Required
    ``driver``         the NetworkDriver under test, *before* ``setup()`` (the tests call it).
                       Close it on teardown if it needs closing; the tests release every
                       instance and delete every network they create (and only those).
    ``make_network``   a callable ``make_network(kind: str = "vlan") -> NetworkSpec`` returning
                       a network of that kind the driver can set up, for every kind in
                       ``driver.capabilities.kinds``. Every call gives a new name, network_id
                       and segmentation_id (VLAN id / VNI; the local VLAN for flat networks).
                       ``NetworkFactory`` builds one.
Optional (tests that need a missing one are skipped)
    ``reopen_driver``  a callable returning a *new* driver for the same node, as a restarted
                       agent would build (fake: same state_dir; OVS: same ovsdb socket).

Instance ids are fresh uuid4 strings; MACs are compared in lower case.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from edgecloud.drivers.network.base import (
    DhcpReservation,
    DhcpSubnet,
    NetworkDriver,
    NetworkSpec,
    PortInfo,
)
from edgecloud.errors import DriverError

MakeNetwork = Callable[..., NetworkSpec]
IFNAMSIZ = 15  # longest Linux interface name


@dataclasses.dataclass
class NetworkFactory:
    """A ``make_network`` handing out names ``<prefix><n>`` and segment ids from ``first_*``."""

    prefix: str = "conformance-net-"
    first_vlan: int = 3000
    first_vni: int = 70000
    counter: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    def __call__(self, kind: str = "vlan") -> NetworkSpec:
        n = next(self.counter)
        segment = self.first_vni + n if kind == "vxlan" else self.first_vlan + n
        return NetworkSpec(f"{self.prefix}{n}", str(uuid.uuid4()), kind, segment)


def random_mac() -> str:
    raw = uuid.uuid4().hex
    return "02:ec:" + ":".join(raw[i : i + 2] for i in range(0, 8, 2))


class Bench:
    """A test's networks and instances, remembered so they can be removed afterwards."""

    def __init__(self, driver: NetworkDriver, make_network: MakeNetwork) -> None:
        self.driver, self.make_network = driver, make_network
        self.networks: list[str] = []
        self.instances: list[str] = []

    async def network(self, kind: str = "vlan") -> NetworkSpec:
        spec = self.make_network(kind)
        self.networks.append(spec.name)
        await self.driver.ensure_network(spec)
        return spec

    def instance(self) -> str:
        self.instances.append(str(uuid.uuid4()))
        return self.instances[-1]

    async def cleanup(self) -> None:
        for instance_id in self.instances:
            await self.driver.release_instance(instance_id)
        for name in self.networks:
            await self.driver.delete_network(name)


def optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


async def ports_of(driver: NetworkDriver, *instance_ids: str) -> set[PortInfo]:
    return {p for p in await driver.list_ports() if p.instance_id in instance_ids}


async def raises_driver_error(call: Callable[[], Awaitable[Any]]) -> DriverError:
    with pytest.raises(DriverError) as caught:
        await call()
    assert str(caught.value), "DriverError needs a sentence saying what failed"
    return caught.value


class NetworkDriverConformance:
    """The contract of NetworkDriver; subclass as ``Test...`` and provide the fixtures."""

    @pytest.fixture
    async def bench(self, driver: NetworkDriver, make_network: MakeNetwork) -> AsyncIterator[Bench]:
        await driver.setup()
        made = Bench(driver, make_network)
        yield made
        await made.cleanup()

    async def test_setup_is_idempotent(self, driver: NetworkDriver) -> None:
        await driver.setup()
        await driver.setup()

    async def test_ensure_network_is_idempotent_for_every_kind(
        self, driver: NetworkDriver, bench: Bench
    ) -> None:
        for kind in driver.capabilities.kinds:
            network = await bench.network(kind)
            await driver.ensure_network(network)
            instance_id = bench.instance()
            await driver.bind(instance_id, 0, random_mac(), network)
            assert len(await ports_of(driver, instance_id)) == 1

    async def test_bind_returns_how_to_plug_the_port(
        self, driver: NetworkDriver, bench: Bench
    ) -> None:
        network, instance_id, mac = await bench.network(), bench.instance(), random_mac()
        binding = await driver.bind(instance_id, 0, mac, network)
        assert binding.kind and 0 < len(binding.port_name) <= IFNAMSIZ
        assert await ports_of(driver, instance_id) == {
            PortInfo(binding.port_name, instance_id, 0, mac.lower(), network.name)
        }

    async def test_bind_is_idempotent(self, driver: NetworkDriver, bench: Bench) -> None:
        network, instance_id, mac = await bench.network(), bench.instance(), random_mac()
        first = await driver.bind(instance_id, 1, mac, network)
        assert await driver.bind(instance_id, 1, mac, network) == first
        assert len(await ports_of(driver, instance_id)) == 1

    async def test_list_ports_shows_every_vnic_port(
        self, driver: NetworkDriver, bench: Bench
    ) -> None:
        red, blue = await bench.network(), await bench.network()
        one, two = bench.instance(), bench.instance()
        wanted = [(one, 0, red), (one, 1, blue), (one, 2, red), (two, 0, blue)]
        expected = set()
        for instance_id, index, network in wanted:
            mac = random_mac()
            binding = await driver.bind(instance_id, index, mac, network)
            expected.add(PortInfo(binding.port_name, instance_id, index, mac, network.name))
        assert await ports_of(driver, one, two) == expected
        assert len({p.port_name for p in expected}) == len(expected)

    async def test_release_instance_removes_its_ports_only(
        self, driver: NetworkDriver, bench: Bench
    ) -> None:
        network, leaving, staying = await bench.network(), bench.instance(), bench.instance()
        for index in range(3):
            await driver.bind(leaving, index, random_mac(), network)
        await driver.bind(staying, 0, random_mac(), network)
        kept = await ports_of(driver, staying)
        await driver.release_instance(leaving)
        assert await ports_of(driver, leaving, staying) == kept
        await driver.release_instance(leaving)
        await driver.release_instance(str(uuid.uuid4()))

    async def test_delete_network(
        self, driver: NetworkDriver, bench: Bench, make_network: MakeNetwork
    ) -> None:
        network = await bench.network()
        await driver.delete_network(network.name)
        await driver.delete_network(network.name)
        await driver.delete_network(make_network().name)
        await raises_driver_error(lambda: driver.bind(bench.instance(), 0, random_mac(), network))
        await driver.ensure_network(network)
        await driver.bind(bench.instance(), 0, random_mac(), network)

    async def test_bind_on_a_network_not_ensured_raises_driver_error(
        self, driver: NetworkDriver, bench: Bench, make_network: MakeNetwork
    ) -> None:
        never_ensured = make_network()
        call = lambda: driver.bind(bench.instance(), 0, random_mac(), never_ensured)  # noqa: E731
        await raises_driver_error(call)

    async def test_a_restarted_agent_finds_its_ports(
        self, driver: NetworkDriver, bench: Bench, request: pytest.FixtureRequest
    ) -> None:
        reopen: Callable[[], NetworkDriver] | None = optional_fixture(request, "reopen_driver")
        if reopen is None:
            pytest.skip(f"{driver.name} driver cannot be reopened here")
        network, instance_id = await bench.network(), bench.instance()
        macs = [random_mac(), random_mac()]
        bindings = [await driver.bind(instance_id, i, mac, network) for i, mac in enumerate(macs)]
        before = await ports_of(driver, instance_id)
        adopter = reopen()
        try:
            assert await ports_of(adopter, instance_id) == before
            await adopter.setup()  # the restarted agent re-asserts everything
            await adopter.ensure_network(network)
            again = [await adopter.bind(instance_id, i, mac, network) for i, mac in enumerate(macs)]
            assert again == bindings
            assert await ports_of(adopter, instance_id) == before
        finally:
            await adopter.close()

    # DHCP (drivers with capabilities.dhcp) ---------------------------------------------------
    @staticmethod
    def _dhcp_subnet(spec: NetworkSpec, *reservations: tuple[str, str]) -> DhcpSubnet:
        third = spec.segmentation_id % 250 if spec.segmentation_id else 1
        return DhcpSubnet(
            subnet_id=str(uuid.uuid4()),
            cidr=f"10.{third}.0.0/24",
            server_address=f"10.{third}.0.2",
            gateway=f"10.{third}.0.1",
            dns_nameservers=(f"10.{third}.0.53",),
            reservations=tuple(DhcpReservation(mac, ip) for mac, ip in reservations),
        )

    async def test_dhcp_serves_exactly_the_given_reservations_and_stops(
        self, driver: NetworkDriver, bench: Bench
    ) -> None:
        if not driver.capabilities.dhcp:
            pytest.skip(f"{driver.name} serves no DHCP")
        spec = await bench.network()
        third = spec.segmentation_id % 250 if spec.segmentation_id else 1
        first = self._dhcp_subnet(spec, (random_mac(), f"10.{third}.0.10"))
        await driver.ensure_dhcp(spec, (first,))
        await driver.ensure_dhcp(spec, (first,))  # idempotent
        assert (await driver.dhcp_served())[spec.name] == (first,)
        second = dataclasses.replace(
            first,
            reservations=(*first.reservations, DhcpReservation(random_mac(), f"10.{third}.0.11")),
        )
        await driver.ensure_dhcp(spec, (second,))
        assert (await driver.dhcp_served())[spec.name] == (second,)
        await driver.ensure_dhcp(spec, ())
        assert spec.name not in await driver.dhcp_served()

    async def test_delete_network_stops_its_dhcp(self, driver: NetworkDriver, bench: Bench) -> None:
        if not driver.capabilities.dhcp:
            pytest.skip(f"{driver.name} serves no DHCP")
        spec = await bench.network()
        await driver.ensure_dhcp(spec, (self._dhcp_subnet(spec),))
        assert spec.name in await driver.dhcp_served()
        await driver.delete_network(spec.name)
        assert spec.name not in await driver.dhcp_served()
