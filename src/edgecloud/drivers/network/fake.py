"""The fake network driver: a pretend vSwitch kept in memory, for tests and the simulator.

Implements drivers/network/base.py and passes tests/drivers/network_conformance.py like the
OVS driver; drivers/registry.py pairs it with compute/fake.py for ``--driver fake``. Its
bindings look like the OVS driver's (a ``br-int`` port whose external_ids carry iface-id,
attached-mac, vm-uuid and the vNIC index) but have kind ``"fake"``. Given a ``state_dir`` it
rewrites ``fake-network.json`` there after every change, so a restarted agent finds its ports;
without one it never touches the disk. Test hook: ``fail_next``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgecloud.chains import planning
from edgecloud.drivers.compute.base import VifBinding
from edgecloud.drivers.network.base import (
    DhcpSubnet,
    NetworkCapabilities,
    NetworkDriver,
    NetworkSpec,
    PortInfo,
)
from edgecloud.errors import DriverError

STATE_FILE = "fake-network.json"
BRIDGE = "br-int"
OPERATIONS = frozenset(NetworkDriver.__abstractmethods__)
SEGMENT_RANGES = {"flat": (1, 4094), "vlan": (1, 4094), "vxlan": (1, 2**24 - 1)}


def port_name(instance_id: str, vnic_index: int) -> str:
    """The host-side device name of a vNIC's port (at most 15 characters, as Linux wants)."""
    return f"ecp{instance_id[:8]}{vnic_index}"[:15]


class FakeNetworkDriver(NetworkDriver):
    """A bridge flag, networks and ports in dicts, optionally persisted under ``state_dir``."""

    name = "fake"
    capabilities = NetworkCapabilities(
        kinds=("flat", "vlan", "vxlan"), openflow_bundles=True, dhcp=True
    )

    def __init__(self, state_dir: Path | None = None) -> None:
        self._bridge = False
        self._networks: dict[str, NetworkSpec] = {}
        # chain steering flows: match (port name or vlan:<tag> on the uplink) -> outputs
        self.steering: planning.HostFlows = {}
        self.bundles: list[planning.FlowChanges[planning.Outputs]] = []  # every commit, in order
        self.extra_ports: set[str] = set()  # non-vNIC ports (chain ingress/egress) for tests
        self._ports: dict[str, dict[int, PortInfo]] = {}  # instance_id -> vNIC index -> port
        self._owners: dict[str, tuple[str, int]] = {}  # port name -> (instance_id, vNIC index)
        self._failures: dict[str, str] = {}
        self.held: set[str] = set()  # ports of guests on their way here (hold_port)
        self.ever_held: set[str] = set()  # for tests: every port that was held
        self._dhcp: dict[str, tuple[DhcpSubnet, ...]] = {}  # network name -> served subnets
        self._path = None if state_dir is None else Path(state_dir) / STATE_FILE
        if self._path is not None and self._path.exists():
            self._load(self._path)

    def fail_next(self, operation: str, message: str) -> None:
        """Test hook: the next call of ``operation`` (a method name) raises DriverError."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r} (one of {sorted(OPERATIONS)})")
        self._failures[operation] = message

    async def setup(self) -> None:
        self._check("setup")
        if not self._bridge:
            self._bridge = True
            self._save()

    async def networks(self) -> dict[str, NetworkSpec]:
        return dict(self._networks)

    async def ensure_network(self, spec: NetworkSpec) -> None:
        self._check("ensure_network")
        self._need_bridge()
        _validate(spec, self.capabilities.kinds)
        if self._networks.get(spec.name) != spec:
            self._networks[spec.name] = spec
            self._save()

    async def delete_network(self, name: str) -> None:
        self._check("delete_network")
        self._dhcp.pop(name, None)
        if self._networks.pop(name, None) is not None:
            self._save()

    async def ensure_dhcp(self, network: NetworkSpec, subnets: tuple[DhcpSubnet, ...]) -> None:
        """Remember what would be served (in memory only: a restarted agent ensures again)."""
        if network.name not in self._networks:
            raise DriverError(f"network {network.name} is not set up on this node")
        if subnets:
            self._dhcp[network.name] = tuple(subnets)
        else:
            self._dhcp.pop(network.name, None)

    async def dhcp_served(self) -> dict[str, tuple[DhcpSubnet, ...]]:
        return dict(self._dhcp)

    async def bind(
        self, instance_id: str, vnic_index: int, mac: str, network: NetworkSpec
    ) -> VifBinding:
        self._check("bind")
        self._need_bridge()
        if network.name not in self._networks:
            raise DriverError(f"network {network.name} is not set up on this node")
        name = port_name(instance_id, vnic_index)
        port = PortInfo(name, instance_id, vnic_index, mac.lower(), network.name)
        owner = self._owners.get(port.port_name, (instance_id, vnic_index))
        if owner != (instance_id, vnic_index):
            raise DriverError(f"port {port.port_name} is taken by vNIC {owner[1]} of {owner[0]}")
        if self._ports.get(instance_id, {}).get(vnic_index) != port:
            self._add(port)
            self._save()
        return _binding(port, network.segmentation_id)

    async def hold_port(self, binding: VifBinding) -> None:
        self.held.add(binding.port_name)
        self.ever_held.add(binding.port_name)

    async def port_plugged(self, binding: VifBinding) -> None:
        self.held.discard(binding.port_name)

    async def release_instance(self, instance_id: str) -> None:
        self._check("release_instance")
        ports = self._ports.pop(instance_id, {})
        self.held -= {p.port_name for p in ports.values()}
        for port in ports.values():
            del self._owners[port.port_name]
        if ports:
            self._save()

    async def release_vnic(self, instance_id: str, vnic_index: int) -> None:
        self._check("release_vnic")
        port = self._ports.get(instance_id, {}).pop(vnic_index, None)
        if port is not None:
            del self._owners[port.port_name]
            self._save()

    def vnic_port(self, instance_id: str, vnic_index: int) -> str:
        return port_name(instance_id, vnic_index)

    async def apply_steering(self, flows: Mapping[str, Any], fresh: bool = True) -> int:
        """Chain steering kept in memory; each call with changes counts one bundle. The fake
        node always has an uplink (``vlan:<tag>`` keys and outputs are kept as they are)."""
        self._check("apply_steering")
        existing = {p.port_name for p in self._all_ports()} | self.extra_ports
        desired: planning.HostFlows = {}
        for key, outputs in planning.from_wire(flows).items():
            src = self._steering_port(key)
            outs = tuple(o for o in map(self._steering_port, outputs) if _exists(o, existing))
            if _exists(src, existing) and outs:
                desired[src] = outs
        change = planning.changes(self.steering, desired)
        if change:
            self.steering = planning.apply(self.steering, change)
            self.bundles.append(change)
        return len(change)

    def _steering_port(self, key: str) -> str:
        if planning.tag_of(key) is not None:
            return key
        port = planning.Port.parse(key)
        if port.name is not None:
            return port.name
        assert port.instance_id is not None and port.vnic_index is not None
        return port_name(port.instance_id, port.vnic_index)

    async def list_ports(self) -> list[PortInfo]:
        self._check("list_ports")
        return self._all_ports()

    def _check(self, operation: str) -> None:
        message = self._failures.pop(operation, None)
        if message is not None:
            raise DriverError(message)

    def _need_bridge(self) -> None:
        if not self._bridge:
            raise DriverError(f"bridge {BRIDGE} does not exist (setup was not called)")

    def _all_ports(self) -> list[PortInfo]:
        return [port for ports in self._ports.values() for port in ports.values()]

    def _add(self, port: PortInfo) -> None:
        self._ports.setdefault(port.instance_id, {})[port.vnic_index] = port
        self._owners[port.port_name] = (port.instance_id, port.vnic_index)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            self._bridge = bool(raw["bridge"])
            networks = [NetworkSpec(**n) for n in raw["networks"]]
            ports = [PortInfo(**p) for p in raw["ports"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DriverError(f"cannot read fake network state from {path}: {exc}") from exc
        self._networks = {n.name: n for n in networks}
        for port in ports:
            self._add(port)

    def _save(self) -> None:
        if self._path is not None:
            networks = [dataclasses.asdict(n) for n in self._networks.values()]
            ports = [dataclasses.asdict(p) for p in self._all_ports()]
            data = {"version": 1, "bridge": self._bridge, "networks": networks, "ports": ports}
            _write_atomically(self._path, json.dumps(data))


def _validate(spec: NetworkSpec, kinds: tuple[str, ...]) -> None:
    if spec.kind not in kinds:
        raise DriverError(f"network {spec.name}: kind {spec.kind!r} is not one of {kinds}")
    low, high = SEGMENT_RANGES[spec.kind]
    seg = spec.segmentation_id
    if (seg is None and spec.kind != "flat") or (seg is not None and not low <= seg <= high):
        raise DriverError(f"network {spec.name}: {spec.kind} needs a segment id in {low}..{high}")


def _binding(port: PortInfo, vlan: int | None) -> VifBinding:
    interface_id = f"{port.instance_id}-{port.vnic_index}"
    external_ids = {
        "iface-id": interface_id,
        "attached-mac": port.mac,
        "vm-uuid": port.instance_id,
        "edgecloud-vnic-index": str(port.vnic_index),
    }
    return VifBinding("fake", BRIDGE, port.port_name, vlan, interface_id, external_ids)


def _write_atomically(path: Path, text: str) -> None:
    """Write a temporary file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise DriverError(f"cannot save fake state to {path}: {exc}") from exc


def _exists(port: str, existing: set[str]) -> bool:
    return planning.tag_of(port) is not None or port in existing
