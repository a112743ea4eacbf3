"""The network driver contract: what the agent asks of a node's vSwitch.

A network driver owns the node's integration bridge, the networks on it (flat or VLAN now,
room for VXLAN between hosts) and one port per vNIC. ``bind`` returns the ``VifBinding`` the
compute driver needs to plug a vNIC; the port's identity (instance, vNIC index, MAC) lives
in the port's external_ids, as Neutron does, so ``list_ports`` can rebuild everything after an
agent restart.

Contract (checked by tests/drivers/network_conformance.py for every driver):
- ``setup``, ``ensure_network`` and ``bind`` are idempotent.
- ``release_instance`` removes every port of the instance; unknown ones are a no-op.
- ``delete_network`` on an unknown network is a no-op; it also stops the network's DHCP.
- ``ensure_dhcp`` (drivers with ``capabilities.dhcp``) is idempotent, serves exactly the given
  reservations (MAC -> address, no dynamic range), starts a server again that died, and with no
  subnets stops serving the network; ``dhcp_served`` says what is served.
- Failures raise ``edgecloud.errors.DriverError``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from edgecloud.drivers.compute.base import VifBinding

NETWORK_KINDS = ("flat", "vlan", "vxlan")


@dataclass(frozen=True)
class NetworkSpec:
    """A network as the node needs to know it."""

    name: str
    network_id: str
    kind: str = "vlan"  # one of NETWORK_KINDS
    segmentation_id: int | None = None  # VLAN id / VNI; local VLAN for flat networks


@dataclass(frozen=True)
class DhcpReservation:
    """One static DHCP answer: this MAC gets this address."""

    mac: str
    ip_address: str


@dataclass(frozen=True)
class DhcpSubnet:
    """A subnet the node serves DHCP on, with the server's own address and the reservations
    of the vNICs on this node."""

    subnet_id: str
    cidr: str
    server_address: str
    gateway: str | None = None
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop)
    reservations: tuple[DhcpReservation, ...] = ()


@dataclass(frozen=True)
class PortInfo:
    """What the driver observes of one vNIC port."""

    port_name: str
    instance_id: str
    vnic_index: int
    mac: str
    network: str


@dataclass(frozen=True)
class NetworkCapabilities:
    """Static feature flags of a network driver."""

    kinds: tuple[str, ...] = ("flat", "vlan")
    openflow_bundles: bool = False
    dhcp: bool = False  # ensure_dhcp / dhcp_served


class NetworkDriver(abc.ABC):
    """A node's vSwitch, as the agent sees it."""

    name: ClassVar[str]
    capabilities: ClassVar[NetworkCapabilities]

    @abc.abstractmethod
    async def setup(self) -> None:
        """Create the integration bridge and base flows (idempotent)."""

    @abc.abstractmethod
    async def ensure_network(self, spec: NetworkSpec) -> None:
        """Make the network exist on this node (idempotent)."""

    @abc.abstractmethod
    async def networks(self) -> dict[str, NetworkSpec]:
        """The networks this node has, by name (to drop those no longer desired)."""

    @abc.abstractmethod
    async def delete_network(self, name: str) -> None:
        """Remove the network from this node (no-op if unknown)."""

    @abc.abstractmethod
    async def bind(
        self, instance_id: str, vnic_index: int, mac: str, network: NetworkSpec
    ) -> VifBinding:
        """Prepare the port for a vNIC and return how the compute driver plugs it."""

    @abc.abstractmethod
    async def release_instance(self, instance_id: str) -> None:
        """Remove every port of this instance."""

    @abc.abstractmethod
    async def list_ports(self) -> list[PortInfo]:
        """Every vNIC port this driver owns on the node."""

    @abc.abstractmethod
    async def release_vnic(self, instance_id: str, vnic_index: int) -> None:
        """Remove one vNIC's port (after a hot-unplug); unknown ones are a no-op."""

    def vnic_port(self, instance_id: str, vnic_index: int) -> str:
        """The name of the vSwitch port of an instance's vNIC."""
        raise NotImplementedError(f"{self.name} driver has no vNIC port names")

    async def apply_steering(self, flows: Mapping[str, Any], fresh: bool = True) -> int:
        """Make the bridge's chain steering exactly ``flows`` in ONE atomic commit of only the
        flows that change; returns how many flows changed. ``flows`` is the snapshot's
        steering (services/desired.py): match -> output or list of outputs, ports as
        ``chains.planning.Port`` keys, ``vlan:<tag>`` for the uplink trunk (match: arriving
        tagged, popped; output: pushed, out the uplink). Outputs whose ports do not exist yet
        (or the uplink, when the node has none) are left out, and flows left with none (put
        in on a later call). ``fresh`` False may diff against what the driver
        itself last committed instead of reading the switch (a path switch: fast; it falls back
        to reading the switch when that commit is refused); periodic resyncs read the switch,
        which also repairs a restarted vSwitch. Needs ``capabilities.openflow_bundles``."""
        raise NotImplementedError(f"{self.name} driver cannot steer chains")

    async def ensure_dhcp(self, network: NetworkSpec, subnets: tuple[DhcpSubnet, ...]) -> None:
        """Serve DHCP for ``subnets`` of the (ensured) network; none: stop serving it."""
        raise NotImplementedError(f"{self.name} driver cannot serve DHCP")

    async def dhcp_served(self) -> dict[str, tuple[DhcpSubnet, ...]]:
        """What this node serves DHCP for, by network name (only networks with a server)."""
        raise NotImplementedError(f"{self.name} driver cannot serve DHCP")

    async def port_plugged(self, binding: VifBinding) -> None:  # noqa: B027 - optional hook
        """Called once the compute driver started the domain (or it arrived by migration) and
        the vNIC's port exists: the place to label the port (tag, external_ids) when the
        hypervisor created it, and to end ``hold_port``."""

    async def hold_port(self, binding: VifBinding) -> None:  # noqa: B027 - optional hook
        """The vNIC's guest has not arrived yet (an incoming live migration): keep at most a
        few packets for it, so that it does not resume into a queue of stale ones (which it
        would forward as duplicates while fresh packets are dropped behind them). Until
        ``port_plugged``."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; ports and flows stay."""
