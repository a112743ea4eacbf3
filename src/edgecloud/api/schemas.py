"""Request and response bodies of the REST API (/v1), as pydantic models.

These are the public contract; the client SDK (edgecloud.client) speaks the same JSON
without importing this module. Field names are what clients send and see; validation here
gives 422 errors that name the field (see api/errors.py).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_name),
    Field(description="1-63 letters, digits, '.', '_' or '-'", examples=["lan"]),
]
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
VnicModel = Literal["virtio", "e1000", "rtl8139", "sriov-vf", "pci-passthrough"]
HostState = Literal["enabled", "disabled", "locked"]


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a typo is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# hosts ---------------------------------------------------------------------------------------
class HostCreate(Strict):
    name: Name


class HostUpdate(Strict):
    state: HostState


class HostOut(Out):
    id: str
    name: str
    state: str
    availability: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    hypervisor: str
    desired_version: int
    applied_version: int
    last_error: str | None
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


class HostEnrollment(BaseModel):
    host: HostOut
    join_token: str
    expires_at: dt.datetime


# networks ------------------------------------------------------------------------------------
class NetworkCreate(Strict):
    name: Name
    kind: Literal["flat", "vlan"] = "vlan"
    segmentation_id: int | None = Field(default=None, ge=1, le=4094)
    cidr: str | None = None


class NetworkOut(Out):
    id: str
    name: str
    kind: str
    segmentation_id: int
    cidr: str | None
    created_at: dt.datetime


# flavors -------------------------------------------------------------------------------------
class FlavorCreate(Strict):
    name: Name
    vcpus: int = Field(ge=1, le=256)
    memory_mib: int = Field(ge=16, le=4 * 1024 * 1024)
    disk_gib: int = Field(default=0, ge=0, le=65536)


class FlavorOut(Out):
    id: str
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    created_at: dt.datetime


# images --------------------------------------------------------------------------------------
class ImageCreate(Strict):
    """Either a disk image, or a kernel (+ optional initrd) for direct kernel boot."""

    name: Name
    disk_path: str | None = None
    disk_format: Literal["qcow2", "raw"] = "qcow2"
    kernel_path: str | None = None
    initrd_path: str | None = None
    cmdline: str = ""


class ImageOut(Out):
    id: str
    name: str
    disk_path: str | None
    disk_format: str
    kernel_path: str | None
    initrd_path: str | None
    cmdline: str
    created_at: dt.datetime


# VNF instances -------------------------------------------------------------------------------
class VnicRequest(Strict):
    """One vNIC, at its position in the list: the order is the contract."""

    network: Name
    model: VnicModel = "virtio"
    mac: str | None = None
    tag: str | None = Field(default=None, max_length=63)
    pci_slot: int | None = Field(default=None, ge=3, le=31)
    hostdev_address: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
    )

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not MAC_RE.match(value):
            raise ValueError("must look like 52:54:00:12:34:56")
        if int(value[:2], 16) & 1:
            raise ValueError("must be a unicast MAC (first octet even)")
        return value


class VnfCreate(Strict):
    name: Name
    image: Name
    flavor: Name
    nics: list[VnicRequest] = Field(default_factory=list, max_length=28)
    anti_affinity_group: Name | None = None
    desired_state: Literal["running", "stopped"] = "running"
    metadata: dict[Annotated[str, Field(max_length=255)], Annotated[str, Field(max_length=255)]] = (
        Field(
            default_factory=dict,
            max_length=128,
            description="user key/values given to the guest in meta_data.json 'meta' (as Nova's)",
        )
    )


class VnicAttach(VnicRequest):
    """A vNIC hot-added at ``position`` (default: after the last); others keep their slots."""

    position: int | None = Field(default=None, ge=0, le=27)


class VnfAction(Strict):
    action: Literal["start", "stop", "reboot"]


class VnicOut(Out):
    index: int
    network: str
    model: str
    mac: str
    tag: str | None
    pci_slot: int
    pci_address: str
    hostdev_address: str | None
    guest_name: str | None
    guest_mac: str | None
    guest_pci: str | None


class VnfOut(Out):
    id: str
    name: str
    image: str
    flavor: str
    host: str | None
    anti_affinity_group: str | None
    metadata: dict[str, str]
    desired_state: str
    status: str
    power_state: str | None
    boot_id: str | None
    fault: str | None
    fault_at: dt.datetime | None
    binding_verified: bool
    binding: Literal["verified", "not_verified", "unverifiable"] = Field(
        description="verified: the guest of this boot reported every vNIC at its declared MAC "
        "and PCI address; unverifiable: it reports neither on its console nor through a QEMU "
        "guest agent (no mismatch alarm); not_verified: no complete report yet, or a mismatch"
    )
    nics: list[VnicOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class ConsoleOut(BaseModel):
    name: str
    host: str
    output: str


# fault management ----------------------------------------------------------------------------
class AlarmOut(Out):
    id: str
    alarm_id: str
    title: str
    severity: str
    entity: str
    reason: str
    state: str
    raised_at: dt.datetime
    cleared_at: dt.datetime | None
    proposed_action: str


class EventOut(Out):
    id: int
    at: dt.datetime
    kind: str
    alarm_id: str | None
    severity: str
    entity: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: {"error": {"code", "message", "field"}}."""

    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


# stacks --------------------------------------------------------------------------------------
class StackCreate(Strict):
    name: Name
    template: str = Field(min_length=1, max_length=1_000_000, description="HOT template (YAML)")
    parameters: dict[str, Any] = Field(default_factory=dict)


class StackUpdate(Strict):
    template: str = Field(min_length=1, max_length=1_000_000)
    parameters: dict[str, Any] = Field(default_factory=dict)


class StackResourceOut(BaseModel):
    name: str
    type: str
    physical_id: str | None
    state: str


class StackOut(BaseModel):
    id: str
    name: str
    status: str
    status_reason: str | None
    parameters: dict[str, Any]
    resources: list[StackResourceOut]
    outputs: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


# service chains ------------------------------------------------------------------------------
PortName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$", description="a vSwitch port name")
]


class ChainServiceSpec(Strict):
    """A service: its own stack, from a template with an Edgecloud::Chain::Service resource."""

    name: Name
    template: str = Field(min_length=1, max_length=1_000_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    health_timeout: float | None = Field(default=None, ge=1, le=3600)


class ChainCreate(Strict):
    name: Name
    customer: str = Field(min_length=1, max_length=255)
    host: Name
    ingress_port: PortName
    egress_port: PortName
    services: list[ChainServiceSpec] = Field(default_factory=list, max_length=16)


class ChainInsert(ChainServiceSpec):
    before: Name | None = None
    after: Name | None = None
    at: Literal["first", "last"] | None = None


class ChainOrder(Strict):
    services: list[Name] = Field(min_length=1)
