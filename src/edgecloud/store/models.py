"""SQLAlchemy ORM models: the whole of the controller's persistent state.

Neighbours: store/database.py (engine, sessions, migrations), one repository module per
resource in store/ (hosts.py, vnfs.py, ...), and Alembic migrations in store/migrations/
which own the schema (never ``create_all``): upgrades depend on it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from edgecloud.memory_copy import DEFAULT_MAX_DOWNTIME_MS

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A new object id (uuid4, hex with dashes)."""
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that reads back timezone-aware UTC from every store: SQLite keeps no zone
    and hands back naive values (which are UTC), PostgreSQL hands back aware ones. The API's
    date-times are RFC 3339 (with an offset) because of it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> dt.datetime | None:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.UTC)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UtcDateTime()}


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled|disabled|locked
    availability: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending|online|offline
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor: Mapped[str] = mapped_column(String(32), default="")
    facts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # the node's PCI allowlist, as its agent reports it: [{"address", "kind"}]
    pci_devices: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # a lock's evacuation (services/maintenance.py): {operation, status, total, moved, ...}
    maintenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    # the node's address on the site's internal network (migration traffic), from its agent
    address: Mapped[str | None] = mapped_column(String(255))
    # its agent's release and the protocol version its session speaks (said at hello)
    release: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[int | None] = mapped_column(Integer)
    desired_version: Mapped[int] = mapped_column(BigInteger, default=1)
    applied_version: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_seen_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JoinToken(Base):
    __tablename__ = "join_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    host_name: Mapped[str] = mapped_column(String(63), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="admin")  # admin|operator|reader
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # services/auth.py: None: every customer; else only that customer's stacks, chains, VNFs
    customer: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    rotated_at: Mapped[dt.datetime | None]


class AuditRecord(Base):
    """One mutating API call or one node enrollment (services/audit.py): who, what, target,
    result, when, from where. Bounded by count and age (pruned on write); ``seq`` numbers
    the records of each class (``anonymous``: no valid token) so each is bounded apart."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_class_seq", "anonymous", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(63), index=True)  # token name, or "-" for none
    action: Mapped[str] = mapped_column(String(255))  # "POST /v1/chains/{name}/services"
    target: Mapped[str] = mapped_column(String(255), index=True)  # "/v1/chains/c1/services"
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status answered
    client: Mapped[str] = mapped_column(String(255))  # the caller's address
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Network(Base):
    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="vlan")
    segmentation_id: Mapped[int] = mapped_column(Integer, unique=True)
    cidr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Flavor(Base):
    __tablename__ = "flavors"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Image(Base):
    """An image in the site's image store: its bytes are the blob ``sha256`` (images/blobs.py).

    ``disk_format``: qcow2 or raw (a disk the VNF boots from, through its own overlay), kernel
    (direct boot, with ``ramdisk`` and ``cmdline``) or ramdisk. ``legacy``: registered by a
    host path before the image store (migration 0005); not usable by new VNFs.
    """

    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    disk_format: Mapped[str] = mapped_column(String(16), default="qcow2")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|legacy
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    ramdisk_id: Mapped[str | None] = mapped_column(ForeignKey("images.id"))
    cmdline: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    ramdisk: Mapped[Image | None] = relationship(remote_side=[id], lazy="joined", join_depth=2)


class Instance(Base):
    """A VNF instance: what should run (desired_state) and what was seen (status)."""

    __tablename__ = "instances"
    __table_args__ = (  # the scheduler's per-placement aggregates (services/scheduling.py)
        Index("ix_instances_host_flavor", "host_id", "flavor_id"),
        Index("ix_instances_group_host", "anti_affinity_group", "host_id"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"))
    flavor_id: Mapped[str] = mapped_column(ForeignKey("flavors.id"))
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    anti_affinity_group: Mapped[str | None] = mapped_column(String(63))
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # user metadata (as Nova's)
    desired_state: Mapped[str] = mapped_column(
        String(16), default="running"
    )  # running|stopped|deleted
    reboots: Mapped[int] = mapped_column(Integer, default=0)  # bumped by the reboot action
    hostname: Mapped[str | None] = mapped_column(String(255))  # None: from the name
    # when its host fails: recover (on another host) | restart (in place, when the host
    # returns) | none (services/recovery.py)
    recovery_policy: Mapped[str] = mapped_column(
        String(8), default="recover", server_default="recover"
    )
    key_name: Mapped[str | None] = mapped_column(String(63))  # as given at create time
    public_key: Mapped[str | None] = mapped_column(Text)  # copied from the key pair (as Nova)
    user_data: Mapped[str | None] = mapped_column(Text)  # base64, at most 64 KiB decoded
    status: Mapped[str] = mapped_column(String(16), default="scheduling")
    power_state: Mapped[str | None] = mapped_column(String(16))
    boot_id: Mapped[str | None] = mapped_column(String(64))
    # "unverifiable": the node's guest of this boot neither reported its vNICs on the console
    # nor answered through a guest agent in time (services/reports.py); None otherwise
    guest_check: Mapped[str | None] = mapped_column(String(16))
    fault: Mapped[str | None] = mapped_column(Text)
    fault_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    customer: Mapped[str | None] = mapped_column(String(255), index=True)  # None: the site's

    image: Mapped[Image] = relationship(lazy="joined")
    flavor: Mapped[Flavor] = relationship(lazy="joined")
    host: Mapped[Host | None] = relationship(lazy="joined")
    vnics: Mapped[list[Vnic]] = relationship(
        lazy="selectin", order_by="Vnic.index", cascade="all, delete-orphan"
    )


class Vnic(Base):
    """One vNIC of an instance at its declared position ``index``."""

    __tablename__ = "vnics"
    __table_args__ = (
        UniqueConstraint("instance_id", "index"),
        UniqueConstraint("mac"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"))
    model: Mapped[str] = mapped_column(String(32), default="virtio")
    mac: Mapped[str] = mapped_column(String(17))
    tag: Mapped[str | None] = mapped_column(String(63))
    pci_slot: Mapped[int] = mapped_column(Integer)
    hostdev_address: Mapped[str | None] = mapped_column(String(32))
    guest_name: Mapped[str | None] = mapped_column(String(32))
    guest_mac: Mapped[str | None] = mapped_column(String(17))
    guest_pci: Mapped[str | None] = mapped_column(String(32))

    network: Mapped[Network] = relationship(lazy="joined")
    fixed_ips: Mapped[list[FixedIp]] = relationship(
        lazy="selectin", order_by="FixedIp.position", cascade="all, delete-orphan"
    )


class Subnet(Base):
    """An IPv4 or IPv6 subnet of a network (as Neutron's); rules in services/addressing.py."""

    __tablename__ = "subnets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(45))
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(16))
    dhcp_address: Mapped[str | None] = mapped_column(String(45))  # the DHCP server's own
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    network: Mapped[Network] = relationship(lazy="joined")


class FixedIp(Base):
    """One address of a vNIC in one subnet; unique per subnet, gone with its vNIC."""

    __tablename__ = "fixed_ips"
    __table_args__ = (UniqueConstraint("subnet_id", "ip_address"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vnic_id: Mapped[str] = mapped_column(ForeignKey("vnics.id", ondelete="CASCADE"), index=True)
    subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id"))
    ip_address: Mapped[str] = mapped_column(String(45))
    position: Mapped[int] = mapped_column(Integer, default=0)  # order on the vNIC

    subnet: Mapped[Subnet] = relationship(lazy="joined")


class KeyPair(Base):
    """An SSH public key (as Nova's key pairs); the private key is never stored."""

    __tablename__ = "keypairs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    key_algorithm: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Stack(Base):
    """A set of resources created from one HOT template (stacks.py in services)."""

    __tablename__ = "stacks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    template: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), default="CREATE_IN_PROGRESS")
    status_reason: Mapped[str | None] = mapped_column(Text)
    orphaned_networks: Mapped[list[str]] = mapped_column(JSON, default=list)  # to drop when unused
    files: Mapped[dict[str, str] | None] = mapped_column(
        JSON, default=dict
    )  # nested, get_file, env
    environment_files: Mapped[list[str] | None] = mapped_column(JSON, default=list)  # keys of files
    customer: Mapped[str | None] = mapped_column(String(255), index=True)  # None: the site's
    # who may change it: "central" (deployed by central: controller/central_applying.py);
    # None: the site's own (its API)
    managed_by: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    resources: Mapped[list[StackResource]] = relationship(
        lazy="selectin", order_by="StackResource.position", cascade="all, delete-orphan"
    )


class StackResource(Base):
    """One resource of a stack and the edgecloud object it became (physical_id)."""

    __tablename__ = "stack_resources"
    __table_args__ = (UniqueConstraint("stack_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer, default=0)  # creation order
    physical_id: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    attributes: Mapped[dict[str, object] | None] = mapped_column(JSON, default=dict)  # computed


class Chain(Base):
    """A customer's service chain: ingress -> services in order -> egress, on one host."""

    __tablename__ = "chains"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    customer: Mapped[str] = mapped_column(String(255))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    ingress_port: Mapped[str] = mapped_column(String(15))
    egress_port: Mapped[str] = mapped_column(String(15))
    status: Mapped[str] = mapped_column(
        String(16), default="building"
    )  # building|active|changing|deleting
    operation: Mapped[dict[str, object] | None] = mapped_column(JSON)  # the change under way
    last_result: Mapped[dict[str, object] | None] = mapped_column(JSON)  # the last change's outcome
    last_error: Mapped[str | None] = mapped_column(Text)
    path_version: Mapped[int] = mapped_column(BigInteger, default=0)  # host version of the path
    # {host id: desired version} of every host whose flows the chain's last change touched
    path_versions: Mapped[dict[str, int] | None] = mapped_column(JSON)
    managed_by: Mapped[str | None] = mapped_column(String(16))  # "central": as Stack.managed_by
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    host: Mapped[Host] = relationship(lazy="joined")
    services: Mapped[list[ChainService]] = relationship(
        lazy="selectin", order_by="ChainService.position", cascade="all, delete-orphan"
    )
    hop_tags: Mapped[list[ChainHopTag]] = relationship(
        lazy="selectin", viewonly=True, order_by="ChainHopTag.tag"
    )  # written by services/chains.py only; the rows go with the chain (ON DELETE CASCADE)


class ChainService(Base):
    """One service of a chain: its stack, its VNF, and which vNICs face customer and network."""

    __tablename__ = "chain_services"
    __table_args__ = (UniqueConstraint("chain_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    chain_id: Mapped[str] = mapped_column(ForeignKey("chains.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|active|retiring
    stack_id: Mapped[str | None] = mapped_column(String(36))
    instance_id: Mapped[str | None] = mapped_column(String(36))
    customer_vnic: Mapped[int] = mapped_column(Integer, default=0)
    network_vnic: Mapped[int] = mapped_column(Integer, default=1)


class ChainHopTag(Base):
    """The VLAN tag a hop direction of a chain carries on the uplink trunk (chains/planning.py):
    unique per site, kept while the hop exists, released (chain_id None) when the change that
    removed it is done; the least recently released is reused last."""

    __tablename__ = "chain_hop_tags"
    __table_args__ = (UniqueConstraint("chain_id", "hop"),)
    tag: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    chain_id: Mapped[str | None] = mapped_column(ForeignKey("chains.id", ondelete="SET NULL"))
    hop: Mapped[str] = mapped_column(String(255))  # planning.hop_id of the direction
    released_at: Mapped[dt.datetime | None]


class Alarm(Base):
    """An alarm instance: raised against an entity, cleared when the condition ends."""

    __tablename__ = "alarms"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    alarm_id: Mapped[str] = mapped_column(String(16), index=True)  # from fm/catalogue.yaml
    severity: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str] = mapped_column(String(255), index=True)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active|cleared
    raised_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[dt.datetime | None]


class Event(Base):
    """The event log: every alarm raise/clear and notable state change."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))  # alarm-raised|alarm-cleared|log
    alarm_id: Mapped[str | None] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    entity: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored timestamp as aware UTC (SQLite hands back naive values, which are UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Migration(Base):
    """One move of an instance from a source host to a destination host (reconcile/migrations.py).

    status: queued -> preparing -> migrating -> done | failed (``error`` says why); ``stats``
    holds what the source's hypervisor measured (total_ms, downtime_ms, bytes)."""

    __tablename__ = "migrations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(String(36), index=True)
    instance_name: Mapped[str] = mapped_column(String(63))
    source_host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    destination_host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8), default="live")  # live|cold|recovery
    memory_copy: Mapped[str] = mapped_column(String(10), default="auto")  # live: COPY_MODES
    max_downtime_ms: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_DOWNTIME_MS)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    stats: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # what the destination reported: {"placement": {...}, "power": "paused"|"running"|...}
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None]

    source_host: Mapped[Host] = relationship(foreign_keys=[source_host_id], lazy="joined")
    destination_host: Mapped[Host] = relationship(foreign_keys=[destination_host_id], lazy="joined")


class Leadership(Base):
    """The one row (id 1) naming the site's leading controller and its fencing epoch, which
    grows by one each time a controller becomes leader (store/leadership.py)."""

    __tablename__ = "leadership"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    holder: Mapped[str] = mapped_column(String(255), default="")
    since: Mapped[dt.datetime | None]


class ControllerProcess(Base):
    """One controller process of the site: where it serves the API and the agent gateway, and
    when it last said it is alive (controller/membership.py refreshes ``seen_at``)."""

    __tablename__ = "controllers"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # its leadership holder name
    api_url: Mapped[str] = mapped_column(String(255))
    gateway: Mapped[str] = mapped_column(String(255))  # "host:port" agents dial
    # its release and the protocol versions it speaks (None: a release before 0.2.0)
    release: Mapped[str | None] = mapped_column(String(64))
    protocol_oldest: Mapped[int | None] = mapped_column(Integer)
    protocol: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NodeCall(Base):
    """A request to a node's agent that the controller which took it could not send itself (the
    agent is connected to another controller of the site): the one holding the session claims
    it, asks the agent and writes the answer here (controller/relaying.py)."""

    __tablename__ = "node_calls"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    host_id: Mapped[str] = mapped_column(String(36))
    op: Mapped[str] = mapped_column(String(63))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timeout: Mapped[float] = mapped_column(Float)  # seconds the asker waits
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    ok: Mapped[bool | None]
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)


class SiteCa(Base):
    """The one row (id 1) holding the site CA for every controller of the site: its
    certificate and its key as encrypted PKCS#8 PEM, opened with the site secret
    (controller/shared_ca.py)."""

    __tablename__ = "site_ca"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cert_pem: Mapped[str] = mapped_column(Text)
    key_encrypted: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # a CA rotation shared by the controllers (controller/site_ca_rotation.py): the old CA
    # during the overlap, a generation bumped by every change, the site's earlier CAs
    previous_cert_pem: Mapped[str | None] = mapped_column(Text)
    previous_key_encrypted: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    retired: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class ImageBlob(Base):
    """The store's copy of an image blob on PostgreSQL: a large object, so a controller that
    did not take the upload can serve the image (store/image_copies.py)."""

    __tablename__ = "image_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    oid: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)


class SoftwarePackage(Base):
    """A release or patch of edgecloud uploaded to the site (services/software.py): its bytes
    are the blob ``sha256`` of the image store (shared with images), its manifest is signed by
    the site's software-signing key (pki/software.py) and nodes check it before using a byte.
    One package per release."""

    __tablename__ = "software_packages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    release: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # release | patch
    applies_to: Mapped[str | None] = mapped_column(String(64))  # a patch's train ("0.2")
    reboot_required: Mapped[bool] = mapped_column(Boolean, default=False)
    filename: Mapped[str] = mapped_column(String(255))  # the wheel's name, as uploaded
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)  # exactly what was signed
    signature: Mapped[str] = mapped_column(Text)  # base64 DER ECDSA over the manifest
    signer: Mapped[str] = mapped_column(Text)  # PEM of the signing certificate
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Upgrade(Base):
    """An orchestrated upgrade of the site to ``to_release`` (services/upgrade_runs.py): its
    controllers first (each restarts itself into the release: controller/self_upgrade.py),
    then its hosts in batches; ``state``: controllers | hosts | activated (every part runs
    the release; ``complete`` or ``abort``) | completed | failed (stopped: ``error`` says
    why; abort, or start again to resume) | aborting | aborted. One at a time."""

    __tablename__ = "upgrades"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    to_release: Mapped[str] = mapped_column(String(64))
    from_release: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    max_parallel: Mapped[int] = mapped_column(Integer, default=1)
    stop_on_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    reboot: Mapped[bool] = mapped_column(Boolean, default=False)  # its package reboots hosts
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    steps: Mapped[list[UpgradeStep]] = relationship(
        back_populates="upgrade",
        order_by="(UpgradeStep.batch, UpgradeStep.name)",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class UpgradeStep(Base):
    """One controller or host of an upgrade: ``target`` is a host's id, or a controller's
    lasting name (``host:tag``, controller/site.py ``controller_name``: kept across restarts);
    ``batch``: its turn (controllers: one each, the leader last; hosts: upgrades/batching.py);
    ``state``: pending | staged | emptying (a host locked and emptied by live migration, for a
    release that reboots hosts) | restarting | done | failed | reverting | reverted;
    ``locked``: the upgrade locked the host (and unlocks it once it runs the release)."""

    __tablename__ = "upgrade_steps"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    upgrade_id: Mapped[str] = mapped_column(ForeignKey("upgrades.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # controller | host
    target: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    batch: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    upgrade: Mapped[Upgrade] = relationship(back_populates="steps")
