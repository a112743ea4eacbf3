"""Driver lookup by name: the one place that knows which drivers exist.

Real drivers are imported lazily so that a node without libvirt-python can still run the fake
driver.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.base import ComputeDriver
from edgecloud.drivers.network.base import NetworkDriver
from edgecloud.errors import InvalidInput

COMPUTE_DRIVERS = {
    "fake": "edgecloud.drivers.compute.fake:FakeComputeDriver",
    "libvirt": "edgecloud.drivers.compute.libvirt:LibvirtComputeDriver",
}
NETWORK_DRIVERS = {
    "fake": "edgecloud.drivers.network.fake:FakeNetworkDriver",
    "ovs": "edgecloud.drivers.network.ovs:OvsNetworkDriver",
}
# The network driver that goes with each compute driver when only --driver is given.
DEFAULT_NETWORK_FOR = {"fake": "fake", "libvirt": "ovs"}


def _load(table: dict[str, str], name: str, what: str) -> type:
    if name not in table:
        raise InvalidInput(f"unknown {what} driver {name!r} (choose from {', '.join(table)})")
    module_name, _, cls = table[name].partition(":")
    return getattr(importlib.import_module(module_name), cls)


def compute_driver(name: str, state_dir: Path, **options: Any) -> ComputeDriver:
    """Instantiate the named compute driver; its persistent files go under ``state_dir``;
    ``options`` are the driver's own (e.g. ``uri`` for libvirt)."""
    return _load(COMPUTE_DRIVERS, name, "compute")(state_dir=state_dir, **options)


def network_driver(name: str, state_dir: Path, **options: Any) -> NetworkDriver:
    """Instantiate the named network driver; its persistent files go under ``state_dir``;
    ``options`` are the driver's own (e.g. ``bridge`` and ``uplink`` for ovs)."""
    return _load(NETWORK_DRIVERS, name, "network")(state_dir=state_dir, **options)
