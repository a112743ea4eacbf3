"""Tests of the fake network driver (drivers/network/fake.py).

It runs the shared network conformance suite (network_conformance.py) both in memory and with a
state_dir, then checks what only the fake promises: the shape of its bindings, port names,
the need for setup, network checks, persistence and the fail_next hook.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edgecloud.drivers import registry
from edgecloud.drivers.compute.base import VifBinding
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.fake import STATE_FILE, FakeNetworkDriver, port_name
from edgecloud.errors import DriverError
from tests.drivers.network_conformance import NetworkDriverConformance, NetworkFactory

INSTANCE = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b"
MAC = "02:ec:00:00:00:01"


@pytest.fixture(params=["in-memory", "state-dir"])
def state_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    return tmp_path if request.param == "state-dir" else None


@pytest.fixture
async def driver(state_dir: Path | None) -> AsyncIterator[FakeNetworkDriver]:
    driver = FakeNetworkDriver(state_dir=state_dir)
    yield driver
    await driver.close()


@pytest.fixture
def make_network() -> NetworkFactory:
    return NetworkFactory()


@pytest.fixture
def reopen_driver(state_dir: Path | None) -> Callable[[], FakeNetworkDriver] | None:
    return None if state_dir is None else (lambda: FakeNetworkDriver(state_dir=state_dir))


class TestFakeNetworkConformance(NetworkDriverConformance):
    pass


async def ready(driver: FakeNetworkDriver, *networks: NetworkSpec) -> FakeNetworkDriver:
    await driver.setup()
    for network in networks:
        await driver.ensure_network(network)
    return driver


async def test_binding_looks_like_an_ovs_port() -> None:
    network = NetworkSpec("net", "id-1", "vlan", 101)
    driver = await ready(FakeNetworkDriver(), network)
    assert await driver.bind(INSTANCE, 2, MAC.upper(), network) == VifBinding(
        kind="fake",
        bridge="br-int",
        port_name="ecp3f2b8c1e2",
        vlan=101,
        interface_id=f"{INSTANCE}-2",
        external_ids={
            "iface-id": f"{INSTANCE}-2",
            "attached-mac": MAC,
            "vm-uuid": INSTANCE,
            "edgecloud-vnic-index": "2",
        },
    )


def test_port_names_fit_a_linux_interface_name() -> None:
    assert port_name(INSTANCE, 7) == "ecp3f2b8c1e7"
    assert port_name(INSTANCE, 123456) == "ecp3f2b8c1e1234"


async def test_two_vnics_cannot_share_a_port_name() -> None:
    network = NetworkSpec("net", "id-1", "flat", 5)
    driver = await ready(FakeNetworkDriver(), network)
    await driver.bind("abc1", 2, MAC, network)
    with pytest.raises(DriverError, match="port ecpabc12 is taken by vNIC 2 of abc1"):
        await driver.bind("abc", 12, "02:ec:00:00:00:02", network)


async def test_everything_needs_setup_first() -> None:
    driver, network = FakeNetworkDriver(), NetworkSpec("net", "id-1", "vlan", 101)
    with pytest.raises(DriverError, match="bridge br-int does not exist"):
        await driver.ensure_network(network)
    await ready(driver, network)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (NetworkSpec("n", "i", "gre", 1), "kind 'gre' is not one of"),
        (NetworkSpec("n", "i", "vlan", None), "vlan needs a segment id in 1..4094"),
        (NetworkSpec("n", "i", "vlan", 4095), "vlan needs a segment id in 1..4094"),
        (NetworkSpec("n", "i", "vxlan", 2**24), "vxlan needs a segment id in 1..16777215"),
    ],
)
async def test_rejects_bad_networks(network: NetworkSpec, message: str) -> None:
    with pytest.raises(DriverError, match=message):
        await ready(FakeNetworkDriver(), network)


async def test_a_new_driver_sees_the_same_bridge_networks_and_ports(tmp_path: Path) -> None:
    network = NetworkSpec("net", "id-1", "vxlan", 70001)
    first = await ready(FakeNetworkDriver(state_dir=tmp_path), network)
    binding = await first.bind(INSTANCE, 0, MAC, network)
    second = FakeNetworkDriver(state_dir=tmp_path)
    assert await second.list_ports() == await first.list_ports()
    assert await second.bind(INSTANCE, 0, MAC, network) == binding  # no setup needed again
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [STATE_FILE]


async def test_unreadable_state_file_is_a_driver_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"bridge": true}')
    with pytest.raises(DriverError, match="cannot read fake network state"):
        FakeNetworkDriver(state_dir=tmp_path)


async def test_fail_next_fails_one_call() -> None:
    network = NetworkSpec("net", "id-1", "vlan", 101)
    driver = await ready(FakeNetworkDriver(), network)
    driver.fail_next("bind", "ovsdb timed out")
    with pytest.raises(DriverError, match="ovsdb timed out"):
        await driver.bind(INSTANCE, 0, MAC, network)
    assert await driver.list_ports() == []
    await driver.bind(INSTANCE, 0, MAC, network)
    with pytest.raises(ValueError, match="unknown operation"):
        driver.fail_next("plug", "x")


def test_registry_builds_the_fake(tmp_path: Path) -> None:
    assert isinstance(registry.network_driver("fake", tmp_path), FakeNetworkDriver)
