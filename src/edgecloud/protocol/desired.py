"""The per-node desired-state snapshot as typed, frozen classes, and its wire form.

The controller builds a ``DesiredState`` (services/desired.py ``build``), the gateway turns it
into the wire dict once per sync (``to_wire``) and sends it as the ``spec`` of a ``desired``
message; the agent parses it once on receipt (``read``: a ProtocolError naming the field when
it does not fit, which the agent nacks) and keeps it on disk in wire form (agent/applying.py).

The wire form is that of protocol versions 1 and 2, unchanged (``WIRE_VERSION``; the golden
file tests/unit/services/desired_golden.json holds it byte for byte): ``{"steering",
"version", "host", "networks": [...], "instances": [...]}``, keys in the order the fields are
declared below. ``steering`` is this host's flows of every chain with a port on it (form: ``{match:
output | [outputs]}``, protocol/steering.py and chains/planning.py); ``migration`` is sent
only for an instance being migrated, and a migration's ``destination`` (outgoing) or
``source`` (incoming) only for its role. Compatibility both ways:

- reading: unknown fields are ignored (an N+1 controller may add some); a field a previous
  controller release did not send has a default (what the agent assumed when it read the
  dict with ``.get``); types are strict (no coercion: what was checked is what is used);
- writing: ``to_wire`` emits every field, so an N-1 agent reads what it always read. A new
  field must be optional for N-1 agents, with a default here that means "as before".

The controller is trusted (mutual TLS), so, unlike the agent's messages (schemas.py), the
lengths here are not bounded: the types are what keeps a buggy spec from reaching a driver.

Neighbours: services/desired.py (builds), gateway/gateway.py ``_sync_host`` (sends),
agent/connection.py (reads), agent/applying.py and agent/fencing.py (use).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from edgecloud.protocol import schemas
from edgecloud.protocol.steering import Outputs

WIRE_VERSION = 1  # the form of protocol 1 (release 0.1.0), also spoken by protocol 2

T = TypeVar("T")


def _tuple(value: Any) -> Any:
    """A JSON array as a tuple (strict mode takes only tuples for tuple fields)."""
    return tuple(value) if isinstance(value, list) else value


Seq = Annotated[tuple[T, ...], BeforeValidator(_tuple)]


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Route(_Part):
    destination: str
    nexthop: str


class Reservation(_Part):
    """A static DHCP lease: what the node's dnsmasq hands this MAC."""

    mac: str
    ip_address: str
    hostname: str = ""


class DhcpSubnet(_Part):
    """A DHCP-enabled subnet of a network with addresses of this host's vNICs."""

    subnet_id: str
    cidr: str
    ip_version: int = 4
    server_address: str | None = None  # None: no DHCP server address (not served)
    gateway_ip: str | None = None
    dns_nameservers: Seq[str] = ()
    host_routes: Seq[Route] = ()
    reservations: Seq[Reservation] = ()


class Network(_Part):
    name: str
    id: str
    kind: str
    segmentation_id: int
    dhcp: Seq[DhcpSubnet] = ()


class Ramdisk(_Part):
    sha256: str | None = None  # None: a legacy image the node cannot fetch
    size: int | None = None


class Image(_Part):
    """What the node fetches (blobs by sha256, over its mTLS port) and how it boots it."""

    name: str
    format: str
    sha256: str | None = None  # None: a legacy image the node cannot fetch
    size: int | None = None
    virtual_size: int | None = None
    cmdline: str | None = ""
    ramdisk: Ramdisk | None = None


class FixedIp(_Part):
    """One address of a vNIC with what the guest needs to configure it (config drive)."""

    ip_address: str
    subnet_id: str = ""
    network_id: str = ""
    cidr: str
    ip_version: int = 4
    gateway_ip: str | None = None
    dns_nameservers: Seq[str] = ()
    host_routes: Seq[Route] = ()


class Vnic(_Part):
    index: int
    network: str  # the network's name (``Network.name``)
    model: str
    mac: str
    tag: str | None = None  # the device role tag published to the guest
    pci_slot: int
    hostdev_address: str | None = None  # a host PCI device (sriov-vf, pci-passthrough)
    fixed_ips: Seq[FixedIp] = ()


class Destination(_Part):
    host: str
    address: str | None = None


class Migration(_Part):
    """What the snapshot says of an instance being migrated (services/migrations.py): the
    agent neither starts nor destroys its domain; the destination only prepares it."""

    id: str
    kind: str  # live | cold | recovery
    role: Literal["outgoing", "incoming"]
    destination: Destination | None = None  # outgoing only
    source: str | None = None  # incoming only: the source host's name


class Instance(_Part):
    id: str
    name: str
    domain: str  # the hypervisor's name for it
    desired_state: str  # running | stopped
    reboots: int = 0
    vcpus: int
    memory_mib: int
    disk_gib: int
    image: Image
    vnics: Seq[Vnic] = ()
    metadata: dict[str, Any] = {}  # OpenStack meta_data.json content, for the guest as is
    hostname: str = ""
    public_keys: dict[str, str] = {}
    user_data: str | None = None  # base64
    recovery: str | None = None  # "recover": fenced when cut off (agent/fencing.py)
    migration: Migration | None = None

    @property
    def incoming(self) -> bool:
        return self.migration is not None and self.migration.role == "incoming"

    @property
    def outgoing(self) -> bool:
        return self.migration is not None and self.migration.role == "outgoing"


class DesiredState(_Part):
    """One host's desired state at ``version`` (its ``desired_version``)."""

    WIRE_VERSION: ClassVar[int] = WIRE_VERSION
    steering: dict[str, Outputs] | None = None  # None: from a controller before chains
    version: int
    host: str = ""
    networks: Seq[Network] = ()
    instances: Seq[Instance] = ()

    def by_id(self) -> dict[str, Instance]:
        return {i.id: i for i in self.instances}


EMPTY = DesiredState(version=0)


def read(spec: Any) -> DesiredState:
    """The snapshot of a wire dict; a ProtocolError naming the first field that does not fit."""
    return schemas.parsed(DesiredState, spec, "desired state", whole="spec")


def to_wire(state: DesiredState) -> dict[str, Any]:
    """The wire dict of ``state`` (JSON types), as every release reads it."""
    wire = state.model_dump(mode="json")
    if wire["steering"] is None:
        del wire["steering"]
    for instance in wire["instances"]:
        migration = instance["migration"]
        if migration is None:
            del instance["migration"]
            continue
        for key in ("destination", "source"):
            if migration[key] is None:
                del migration[key]
    return wire
