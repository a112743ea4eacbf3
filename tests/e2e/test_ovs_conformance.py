"""E2E: the OVS network driver passes the shared network conformance suite on a real OVS.

Runs tests/drivers/network_conformance.py against drivers/network/ovs.py on a per-run bridge
(``ect<hex>``, never br-int), deleted in a finalizer even when a test fails. The conformance
suite releases its instances and deletes its networks itself; ports here have no device behind
them (as before libvirt starts a domain), which is all the contract needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgecloud.drivers import registry
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from tests.drivers.network_conformance import NetworkDriverConformance, NetworkFactory
from tests.e2e.ovs_support import delete_bridge, new_run_id, skip_without_ovs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs() -> None:
    skip_without_ovs()


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"ect{new_run_id()}"
    yield name
    delete_bridge(name)


@pytest.fixture
def driver(tmp_path: Path, bridge: str) -> OvsNetworkDriver:
    return OvsNetworkDriver(tmp_path, bridge=bridge)


@pytest.fixture
def make_network(bridge: str) -> NetworkFactory:
    return NetworkFactory(prefix=f"{bridge}-net-")


@pytest.fixture
def reopen_driver(tmp_path: Path, bridge: str) -> Callable[[], OvsNetworkDriver]:
    return lambda: OvsNetworkDriver(tmp_path, bridge=bridge)


class TestOvsNetworkConformance(NetworkDriverConformance):
    pass


def test_registry_builds_the_ovs_driver_on_br_int(tmp_path: Path) -> None:
    driver = registry.network_driver("ovs", tmp_path)
    assert isinstance(driver, OvsNetworkDriver) and driver.bridge == "br-int"
