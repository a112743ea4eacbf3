"""SQLAlchemy ORM models: the whole of the controller's persistent state.

Neighbours: store/database.py (engine, sessions, migrations), one repository module per
resource in store/ (hosts.py, vnfs.py, ...), and Alembic migrations in store/migrations/
which own the schema (never ``create_all``): upgrades depend on it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


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
    cert_serial: Mapped[str | None] = mapped_column(String(64))
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
    role: Mapped[str] = mapped_column(String(16), default="admin")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


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
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    disk_path: Mapped[str | None] = mapped_column(Text)
    disk_format: Mapped[str] = mapped_column(String(16), default="qcow2")
    kernel_path: Mapped[str | None] = mapped_column(Text)
    initrd_path: Mapped[str | None] = mapped_column(Text)
    cmdline: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """A VNF instance: what should run (desired_state) and what was seen (status)."""

    __tablename__ = "instances"
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
    status: Mapped[str] = mapped_column(String(16), default="scheduling")
    power_state: Mapped[str | None] = mapped_column(String(16))
    boot_id: Mapped[str | None] = mapped_column(String(64))
    fault: Mapped[str | None] = mapped_column(Text)
    fault_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

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
