"""The compute driver contract: what the agent asks of a node's hypervisor.

A compute driver manages *domains* (VMs) on one node. The agent (agent/applying.py) is its only
caller; drivers know nothing of the controller. Every method is a coroutine and must never block
the event loop (a driver wrapping a blocking library runs calls in a worker thread).

Contract (checked by tests/drivers/compute_conformance.py for every driver):
- ``define`` is idempotent: defining the same spec twice is a no-op; a changed spec is
  redefined (takes effect at next start).
- ``start`` on a running domain and ``stop``/``destroy`` on a stopped one are no-ops.
- ``delete`` removes the domain and everything the driver created for it; deleting an unknown
  domain is a no-op.
- ``list_domains`` returns only domains this driver created (name prefix ``DOMAIN_PREFIX``),
  including ones created by an earlier agent process: that is how a restarted agent *adopts*
  running VMs instead of restarting them.
- ``DomainInfo.boot_id`` changes on every (re)start and only then, so callers can prove a
  domain was not restarted.
- vNICs are given in declared order; ``VnicSpec.pci_slot`` is the guest PCI slot the driver
  must use for that vNIC, so the guest sees the declared order.
- Failures raise ``edgecloud.errors.DriverError`` with a sentence saying what failed.
- With the ``guest_agent`` capability, ``guest_interfaces`` reads the running guest's own
  network interfaces through its guest agent (no network needed), sorted by PCI address (the
  order the guest's kernel finds them); it returns None, within about ``timeout`` seconds and
  without raising, while the guest has no agent answering (still booting, or none at all).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgecloud.memory_copy import DEFAULT_MAX_DOWNTIME_MS

DOMAIN_PREFIX = "ec-"
VNIC_MODELS = ("virtio", "e1000", "rtl8139", "sriov-vf", "pci-passthrough")


class PowerState(enum.StrEnum):
    """What the hypervisor says a domain is doing."""

    RUNNING = "running"
    STOPPED = "stopped"
    CRASHED = "crashed"
    PAUSED = "paused"


@dataclass(frozen=True)
class VifBinding:
    """How a vNIC plugs into the node's vSwitch, as produced by a network driver."""

    kind: str  # "ovs" (a tap the network driver plugged; libvirt only opens it), "fake", "hostdev"
    bridge: str = ""
    port_name: str = ""  # host-side device name (tap) the vSwitch port gets
    vlan: int | None = None
    interface_id: str = ""  # iface-id in OVS external_ids (as Neutron)
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IpSpec:
    """One fixed IP of a vNIC and its subnet's settings, for the guest (network_data.json)."""

    address: str
    cidr: str  # the subnet, e.g. "10.0.0.0/24"
    gateway: str | None = None
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop)
    network_id: str = ""
    subnet_id: str = ""


@dataclass(frozen=True)
class VnicSpec:
    """One vNIC of a domain, at its declared position ``index`` (0-based)."""

    index: int
    network: str
    model: str
    mac: str
    pci_slot: int
    tag: str | None = None
    binding: VifBinding | None = None
    hostdev_address: str | None = None  # "0000:03:00.1" for sriov-vf / pci-passthrough
    fixed_ips: tuple[IpSpec, ...] = ()  # configured in the guest from the config drive


@dataclass(frozen=True)
class BootSource:
    """What the domain boots: a disk image, or a kernel + initrd (direct kernel boot).

    ``disk_path`` is the node's cached base image, which must stay unchanged: a driver boots
    the domain from its own copy-on-write overlay of it (grown to ``DomainSpec.disk_gib``)
    and deletes that overlay with the domain.
    """

    disk_path: str | None = None
    kernel_path: str | None = None
    initrd_path: str | None = None
    cmdline: str = ""
    disk_format: str = "qcow2"


@dataclass(frozen=True)
class DomainSpec:
    """Everything a driver needs to define one domain."""

    name: str  # starts with DOMAIN_PREFIX
    instance_id: str
    vcpus: int
    memory_mib: int
    boot: BootSource
    vnics: tuple[VnicSpec, ...] = ()
    disk_gib: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)  # config-drive content (meta_data.json)
    hostname: str = ""  # "" means the name
    public_keys: dict[str, str] = field(default_factory=dict)  # key pair name -> OpenSSH key
    user_data: bytes | None = None  # the config drive's user_data file, as given


@dataclass(frozen=True)
class DomainInfo:
    """What the driver observes of one domain."""

    name: str
    instance_id: str
    state: PowerState
    boot_id: str  # changes at every start, and only then
    vnic_macs: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuestInterface:
    """One network interface as the guest itself sees it (read through its guest agent)."""

    name: str  # the guest's name for it: "ens3", "eth0", ...
    mac: str  # lower case
    pci: str | None  # the guest PCI address "0000:00:03.0"; None when not a PCI device


@dataclass(frozen=True)
class HostFacts:
    """Capacity and identity of the node, reported at connect time."""

    vcpus: int
    memory_mib: int
    disk_gib: int
    hypervisor: str  # "fake", "qemu-tcg", "kvm"
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeCapabilities:
    """Static feature flags of a compute driver."""

    hot_plug_vnic: bool = False
    console_log: bool = True
    config_drive: bool = False
    hostdev: bool = False
    persistent: bool = True  # domains survive an agent restart
    guest_agent: bool = False  # guest_interfaces() reads a guest's NICs through its agent
    live_migration: bool = False  # prepare_incoming() and migrate_out() move a running domain


@dataclass(frozen=True)
class IncomingPlacement:
    """Where a destination node put a migrating domain's files and vNIC ports
    (``prepare_incoming``); the source's hypervisor rewrites the domain for it (JSON-ready)."""

    disk_path: str | None = None  # the destination's empty overlay on its cached base image
    config_drive: str | None = None
    console_path: str | None = None
    kernel_path: str | None = None
    initrd_path: str | None = None
    ports: dict[str, dict[str, str]] = field(default_factory=dict)  # MAC -> {bridge, port_name}

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> IncomingPlacement:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class MigrationPeer:
    """The destination of an outgoing live migration, as the source's driver needs it."""

    host: str
    address: str  # the destination node's internal address (its hypervisor listens there)
    pki_dir: str  # this node's client TLS files for the destination's hypervisor
    placement: IncomingPlacement = IncomingPlacement()
    max_downtime_ms: int = DEFAULT_MAX_DOWNTIME_MS
    memory_copy: str = "auto"  # one of memory_copy.COPY_MODES


@dataclass(frozen=True)
class MigrationStats:
    """What the hypervisor measured of a finished live migration."""

    total_ms: float  # from the call to the guest running on the destination
    downtime_ms: float | None  # the guest paused (QEMU's figure), None when not reported
    bytes: int  # memory and disk data sent
    memory_copy: str | None = None  # how memory was copied: pre-copy or paused; None: unknown

    def as_json(self) -> dict[str, float | int | str | None]:
        return dataclasses.asdict(self)


class ComputeDriver(abc.ABC):
    """A node's hypervisor, as the agent sees it."""

    name: ClassVar[str]
    capabilities: ClassVar[ComputeCapabilities]

    @abc.abstractmethod
    async def fingerprint(self) -> HostFacts:
        """Capacity and hypervisor kind of this node."""

    @abc.abstractmethod
    async def define(self, spec: DomainSpec) -> None:
        """Create or update the domain definition (idempotent; does not start it)."""

    @abc.abstractmethod
    async def start(self, name: str) -> None:
        """Power the domain on (no-op if running)."""

    @abc.abstractmethod
    async def stop(self, name: str, timeout: float = 10.0) -> None:
        """Shut the domain down gracefully, forcing it off after ``timeout`` seconds."""

    @abc.abstractmethod
    async def destroy(self, name: str) -> None:
        """Power the domain off at once (no-op if stopped)."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Power off, undefine and remove what the driver created (no-op if unknown)."""

    @abc.abstractmethod
    async def list_domains(self) -> list[DomainInfo]:
        """Every domain this driver owns on the node, running or not."""

    @abc.abstractmethod
    async def console_log(self, name: str, max_bytes: int = 65536) -> str:
        """The tail of the domain's serial console output."""

    async def attach_vnic(self, name: str, vnic: VnicSpec) -> None:
        """Hot-plug a vNIC at its declared PCI slot (needs ``hot_plug_vnic``)."""
        raise NotImplementedError(f"{self.name} driver cannot hot-plug vNICs")

    async def detach_vnic(self, name: str, mac: str) -> None:
        """Hot-unplug the vNIC with this MAC (needs ``hot_plug_vnic``)."""
        raise NotImplementedError(f"{self.name} driver cannot hot-unplug vNICs")

    async def guest_interfaces(
        self, name: str, timeout: float = 5.0
    ) -> tuple[GuestInterface, ...] | None:
        """The running guest's NICs by PCI address, read through its guest agent; None when
        no agent answers within ``timeout`` seconds (needs ``guest_agent``)."""
        raise NotImplementedError(f"{self.name} driver cannot talk to guest agents")

    async def prepare_incoming(self, spec: DomainSpec) -> IncomingPlacement:
        """Make everything a domain migrating in needs (its disk overlay, config drive) without
        defining or starting it; idempotent (needs ``live_migration``)."""
        raise NotImplementedError(f"{self.name} driver cannot migrate domains")

    async def migrate_out(self, name: str, peer: MigrationPeer) -> MigrationStats:
        """Move the running domain live to ``peer``'s hypervisor; when it returns the domain
        runs there (persistent) and is gone here; on failure it still runs here, unchanged,
        and DriverError says why (needs ``live_migration``)."""
        raise NotImplementedError(f"{self.name} driver cannot migrate domains")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; domains keep running."""
