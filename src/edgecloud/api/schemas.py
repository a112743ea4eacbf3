"""Request and response bodies of the REST API (/v1), as pydantic models.

These are the public contract; the client SDK (edgecloud.client) speaks the same JSON
without importing this module. Field names are what clients send and see; validation here
gives 422 errors that name the field (see api/errors.py).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from edgecloud.memory_copy import DEFAULT_MAX_DOWNTIME_MS, MAX_DOWNTIME_RANGE, CopyMode
from edgecloud.upgrades import releases

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)
_RFC3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc3339(value: Any) -> Any:
    """Only RFC 3339 text is a date-time here (pydantic alone also takes "0.5" as seconds
    since 1970, which the OpenAPI's ``format: date-time`` does not allow)."""
    if isinstance(value, str) and not _RFC3339_DATE.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, e.g. 2026-11-30T19:00:00Z"
        )
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A date-time a client sends: RFC 3339 text with a time zone, nothing else."""


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):  # fullmatch: "$" alone would let a trailing newline in
        raise ValueError(
            "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_name),
    Field(
        description="1-63 letters, digits, '.', '_' or '-'",
        examples=["lan"],
        # stated in the OpenAPI; checked by _name, whose message says it in words
        json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63},
    ),
]
USER_DATA_BASE64 = 4 * ((65536 + 2) // 3)  # 64 KiB of bytes, base64 encoded
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
UNICAST_MAC_PATTERN = r"^[0-9A-Fa-f][02468ACEace](:[0-9A-Fa-f]{2}){5}$"  # first octet even
VnicModel = Literal["virtio", "e1000", "rtl8139", "sriov-vf", "pci-passthrough"]
HostState = Literal["enabled", "disabled"]  # locked: POST /v1/hosts/NAME/lock


class Strict(BaseModel):
    """Request bodies refuse unknown fields (a typo is an error, not silently ignored) and
    values of another JSON type (``false`` is not the integer 0, ``"1"`` not the number 1):
    the server accepts what the OpenAPI says, no more."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# hosts ---------------------------------------------------------------------------------------
class HostCreate(Strict):
    name: Name


class HostUpdate(Strict):
    state: HostState


class PciDeviceOut(BaseModel):
    address: str = Field(examples=["0000:03:00.1"])
    kind: Literal["sriov-vf", "pci-passthrough"]


class MaintenanceOut(BaseModel):
    """A host lock's evacuation: its VNFs moved away by live migration, one at a time."""

    operation: Literal["lock"]
    status: Literal["evacuating", "done", "failed", "cancelled"]
    total: int = Field(description="VNFs on the host when it was locked")
    moved: list[str] = Field(description="VNFs moved away so far")
    current: dict[str, Any] | None = Field(description="the move under way: vnf, migration")
    error: str | None = Field(description="why the evacuation stopped (status failed)")
    started: str
    finished: str | None


class HostOut(Out):
    id: str
    name: str
    state: str
    availability: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    hypervisor: str
    address: str | None = Field(
        default=None, description="the node's address on the site's internal network (migrations)"
    )
    pci_devices: list[PciDeviceOut] = Field(
        default_factory=list, description="host PCI devices VNFs may be given (its allowlist)"
    )
    release: str | None = Field(
        default=None, description="its agent's release, as its last hello said (None: not yet)"
    )
    protocol: int | None = Field(
        default=None,
        description="the agent protocol version its session speaks, negotiated at its hello",
    )
    maintenance: MaintenanceOut | None = Field(
        default=None, description="the last lock's evacuation, while and after it runs"
    )
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
    segmentation_id: int | None = Field(
        default=None,
        ge=1,
        le=2999,
        description="VLAN id (default: chosen by the site); 3000-4094 are the tags of chain "
        "hops between nodes (chains/planning.py HOP_TAGS)",
    )
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
ImageFormat = Literal["qcow2", "raw", "kernel", "ramdisk"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]


class ImageOut(BaseModel):
    """An image of the site's image store."""

    id: str
    name: str
    disk_format: ImageFormat
    status: Literal["active", "legacy"]
    sha256: str | None
    size: int | None = Field(description="bytes stored")
    virtual_size: int | None = Field(description="bytes the guest sees (disk images)")
    ramdisk: str | None = Field(description="kernel images: the ramdisk image booted with it")
    cmdline: str
    created_at: dt.datetime


class SoftwareOut(BaseModel):
    """A software package: a release or patch of edgecloud, with its signed manifest."""

    release: str = Field(description="MAJOR.MINOR.PATCH, read from the wheel")
    kind: Literal["release", "patch"] = Field(description="patch: PATCH > 0, fixes of a train")
    applies_to: str | None = Field(description="a patch: the train it fixes, e.g. 0.2")
    reboot_required: bool = Field(description="its hosts reboot to take it (emptied first)")
    filename: str
    size: int
    sha256: str
    manifest: dict[str, Any] = Field(description="what was signed (pki/software.py)")
    signature: str = Field(description="base64 DER ECDSA P-256 over the manifest's JSON")
    signer: str = Field(description="PEM of the site's software-signing certificate")
    created_at: dt.datetime


# subnets -------------------------------------------------------------------------------------
class AllocationPool(Strict):
    start: str = Field(description="first address of the pool", examples=["10.0.0.10"])
    end: str = Field(description="last address of the pool (inclusive)", examples=["10.0.0.99"])


class HostRoute(Strict):
    destination: str = Field(description="a CIDR", examples=["192.168.0.0/16"])
    nexthop: str = Field(description="an address inside the subnet", examples=["10.0.0.254"])


class SubnetCreate(Strict):
    """Enforced by the server (422 naming the field): cidr is a network of ip_version without
    host bits and overlaps no other subnet of the network; gateway_ip is inside it (absent: the
    first usable address; null: no gateway); pools are inside the usable range, do not overlap
    and do not hold the gateway (absent: the whole range less the gateway); host route next hops
    are inside the subnet. DHCP (on by default) takes the first free pool address for its
    server."""

    name: Name
    network: Name
    cidr: str = Field(max_length=64, examples=["10.0.0.0/24"])
    ip_version: Literal[4, 6] = 4
    gateway_ip: str | None = Field(default="auto", max_length=45)
    allocation_pools: list[AllocationPool] | None = Field(default=None, max_length=16)
    dns_nameservers: list[Annotated[str, Field(max_length=45)]] = Field(
        default_factory=list, max_length=8
    )
    host_routes: list[HostRoute] = Field(default_factory=list, max_length=32)
    enable_dhcp: bool = True
    ipv6_address_mode: Literal["dhcpv6-stateful"] | None = None


class SubnetOut(BaseModel):
    id: str
    name: str
    network: str
    ip_version: int
    cidr: str
    gateway_ip: str | None
    allocation_pools: list[dict[str, str]]
    dns_nameservers: list[str]
    host_routes: list[dict[str, str]]
    enable_dhcp: bool
    ipv6_address_mode: str | None
    dhcp_address: str | None
    created_at: dt.datetime


# key pairs -----------------------------------------------------------------------------------
class KeyPairImport(Strict):
    name: Name
    public_key: str = Field(
        min_length=1,
        max_length=16384,
        description="one line of OpenSSH format: ssh-ed25519, ecdsa-sha2-* or ssh-rsa (>= 2048 bits)",
    )


class KeyPairOut(Out):
    id: str
    name: str
    type: str
    key_algorithm: str
    public_key: str
    fingerprint: str
    created_at: dt.datetime


# VNF instances -------------------------------------------------------------------------------
class FixedIpRequest(Strict):
    """An address for a vNIC: given, or allocated from ``subnet`` (by name) when absent."""

    ip_address: str | None = Field(default=None, max_length=45)
    subnet: Name | None = None


class VnicRequest(Strict):
    """One vNIC, at its position in the list: the order is the contract."""

    network: Name
    model: VnicModel = "virtio"
    mac: str | None = Field(
        default=None,
        description="a unicast MAC (default: assigned)",
        examples=["52:54:00:12:34:56"],
        json_schema_extra={"pattern": UNICAST_MAC_PATTERN},  # checked by _mac, in words
    )
    tag: str | None = Field(default=None, max_length=63)
    pci_slot: int | None = Field(default=None, ge=3, le=31)
    hostdev_address: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
    )
    fixed_ips: list[FixedIpRequest] | None = Field(
        default=None,
        max_length=16,
        description="absent or empty: one address from each subnet of the network that has "
        "an allocation pool; an address used in its subnet already is refused with 409",
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
    key_name: Name | None = Field(
        default=None, description="a key pair; its public key is copied into the VNF"
    )
    user_data: str | None = Field(
        default=None,
        max_length=USER_DATA_BASE64,
        description="base64 (as Nova's); at most 65536 bytes (64 KiB) once decoded",
    )
    hostname: str | None = Field(
        default=None, max_length=253, description="default: made from the name"
    )
    recovery_policy: Literal["recover", "restart", "none"] = Field(
        default="recover",
        description="when its host fails: rebuilt on another host (recover), started again "
        "when the host returns (restart), or left stopped (none)",
    )

    @field_validator("user_data")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                raise ValueError("must be base64") from None
        return value


class VnicAttach(VnicRequest):
    """A vNIC hot-added at ``position`` (default: after the last); others keep their slots."""

    position: int | None = Field(default=None, ge=0, le=27)


class VnfAction(Strict):
    action: Literal["start", "stop", "reboot"]


class FixedIpOut(BaseModel):
    ip_address: str
    subnet: str
    cidr: str


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
    fixed_ips: list[FixedIpOut] = Field(default_factory=list)


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
    hostname: str = ""
    recovery_policy: str = "recover"
    key_name: str | None = None
    binding: Literal["verified", "not_verified", "unverifiable"] = Field(
        description="verified: the guest of this boot reported every vNIC at its declared MAC "
        "and PCI address; unverifiable: it reports neither on its console nor through a QEMU "
        "guest agent (no mismatch alarm); not_verified: no complete report yet, or a mismatch"
    )
    nics: list[VnicOut]
    created_at: dt.datetime
    updated_at: dt.datetime
    customer: str | None = Field(default=None, description="Its owner; null: the site's.")


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
StackFiles = Annotated[
    dict[str, Annotated[str, Field(max_length=1_000_000)]],
    Field(
        default_factory=dict,
        max_length=100,
        description="Files the template and environments refer to (nested templates, "
        "get_file, environment files), by name relative to the template's folder, as Heat's "
        "`files`",
    ),
]
EnvironmentFiles = Annotated[
    list[str],
    Field(
        default_factory=list,
        max_length=20,
        description="Names in `files` of Heat environment files, applied in order",
    ),
]


class StackCreate(Strict):
    name: Name
    template: str = Field(min_length=1, max_length=1_000_000, description="HOT template (YAML)")
    parameters: dict[str, Any] = Field(default_factory=dict)
    files: StackFiles
    environment_files: EnvironmentFiles


class StackUpdate(Strict):
    template: str = Field(min_length=1, max_length=1_000_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    files: StackFiles
    environment_files: EnvironmentFiles


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
    customer: str | None = Field(default=None, description="Its owner; null: the site's.")
    managed_by: Literal["central"] | None = Field(
        default=None,
        description="central: deployed by central, which alone changes or deletes it; "
        "null: the site's own.",
    )


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


# migrations --------------------------------------------------------------------------------
class MigrationRequest(Strict):
    """Move a running VNF to another host: live unless ``cold`` (stopped on the source,
    started on the destination from a fresh overlay of its image: disk changes are lost)."""

    host: str | None = Field(
        default=None,
        max_length=63,
        description="the destination host; absent: the scheduler chooses one",
    )
    cold: bool = Field(
        default=False,
        description="stop the VNF and start it on the destination (needed for VNFs with host "
        "PCI devices, which cannot move live)",
    )
    memory_copy: CopyMode = Field(
        default="auto",
        description="live: how the guest's memory is copied. pre-copy: while the guest runs, "
        "paused only for the last round; paused: paused for the whole copy (its memory moves "
        "intact); auto: pre-copy under KVM and under QEMU's TCG emulator from 9.0 on, paused "
        "under an older TCG (whose dirty-page tracking can lose guest writes). Not with cold.",
    )
    max_downtime_ms: int | None = Field(
        default=None,
        ge=MAX_DOWNTIME_RANGE[0],
        le=MAX_DOWNTIME_RANGE[1],
        description=f"live: the longest the guest may be paused at the end of the copy, in ms "
        f"(QEMU copies more rounds until the rest fits); absent: {DEFAULT_MAX_DOWNTIME_MS}. "
        "Not with cold.",
    )


class MigrationOut(Out):
    id: str
    vnf: str
    source_host: str
    destination_host: str
    kind: Literal["live", "cold", "recovery"]
    memory_copy: CopyMode = Field(
        description="as asked; stats.memory_copy says how it was done (auto resolved by the node)"
    )
    max_downtime_ms: int = Field(description="live: the downtime limit the move was given")
    status: Literal["queued", "preparing", "migrating", "done", "failed"]
    error: str | None
    stats: dict[str, Any] = Field(
        description="when done: total_ms, downtime_ms (the guest paused, QEMU's figure), bytes, "
        "memory_copy (live: pre-copy or paused)"
    )
    created_at: dt.datetime
    finished_at: dt.datetime | None


# tokens and audit (services/auth.py, services/audit.py) ---------------------------------------
Role = Literal["admin", "operator", "reader"]
MAX_TOKEN_LIFETIME = 10 * 365 * 86400


class TokenCreate(Strict):
    name: Name
    role: Role
    customer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Scope: only this customer's stacks, chains and VNFs (not for admin).",
    )
    expires_in: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_LIFETIME, description="Seconds; absent: never."
    )


class TokenRotate(Strict):
    expires_in: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOKEN_LIFETIME,
        description="A new lifetime from now, in seconds; absent: the expiry stays.",
    )


class TokenOut(BaseModel):
    name: str
    role: Role
    customer: str | None
    state: Literal["active", "expired", "revoked"]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    rotated_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenSecretOut(TokenOut):
    secret: str = Field(description="The bearer secret; shown this once, never stored.")


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str = Field(description="The token's name; '-' when none was valid.")
    action: str = Field(examples=["POST /v1/chains/{name}/services"])
    target: str = Field(examples=["/v1/chains/c1/services"])
    status: int
    client: str = Field(description="The caller's address.")


class ControllerOut(BaseModel):
    id: str = Field(
        description="The controller: its lasting name (host:tag, kept across restarts), then this start's tag."
    )
    api_url: str
    gateway: str = Field(description="host:port agents dial.")
    up: bool = Field(description="Its row was refreshed within the last 5 s.")
    leads: bool
    this: bool = Field(description="It is the controller that answered this request.")
    release: str | None = Field(
        default=None, description="Its release (None: a release before 0.2.0, which is 0.1.0)."
    )
    protocols: list[int] | None = Field(
        default=None,
        description="The oldest and newest agent protocol versions it speaks (None: [1, 1]).",
    )
    seen_at: dt.datetime
    started_at: dt.datetime


class LeaderOut(BaseModel):
    id: str
    epoch: int = Field(description="The fencing epoch; grows by one with each new leader.")
    since: dt.datetime | None
    api_url: str | None
    gateway: str | None
    up: bool


class ControllersOut(BaseModel):
    leader: LeaderOut | None = Field(description="None until a controller has led.")
    controllers: list[ControllerOut]


class UpgradeCheckItem(BaseModel):
    name: str
    result: Literal["ok", "warning", "failure"]
    detail: str = Field(description="What was found, naming what is wrong and what to do.")


class UpgradePlanOut(BaseModel):
    """The order the upgrade would take (upgrades/batching.py)."""

    controllers: list[str] = Field(description="One at a time, in this order; the leader last.")
    batches: list[list[str]] = Field(
        description="Host names, batch by batch: at most max_parallel each, never two members "
        "of one anti-affinity group or every host of a chain spread over several."
    )


class UpgradeStart(Strict):
    """Start an upgrade (or resume a failed one to the same release)."""

    to: str = Field(
        description="The release to upgrade to, e.g. 0.3.0",
        json_schema_extra={"pattern": releases.PATTERN},  # checked in words by _release
    )
    max_parallel: int = Field(default=1, ge=1, le=1000, description="Hosts upgraded at once")
    stop_on_alarm: bool = Field(
        default=False, description="Stop when a critical or major alarm is raised meanwhile"
    )

    @field_validator("to")
    @classmethod
    def _release(cls, value: str) -> str:
        return str(releases.parse(value))  # ValueError saying the form


class UpgradeStepOut(BaseModel):
    kind: Literal["controller", "host"]
    name: str
    batch: int = Field(description="Its turn: controllers one by one (leader last), then hosts")
    state: Literal[
        "pending", "staged", "emptying", "restarting", "done", "failed", "reverting", "reverted"
    ] = Field(description="emptying: locked, its VNFs moving live to other hosts (reboot)")
    error: str | None
    updated_at: dt.datetime


class UpgradeOut(BaseModel):
    """An orchestrated upgrade and where each controller and host is in it."""

    id: str
    to_release: str
    from_release: str
    state: Literal[
        "controllers", "hosts", "activated", "completed", "failed", "aborting", "aborted"
    ]
    max_parallel: int
    stop_on_alarm: bool
    reboot: bool = Field(description="Its package reboots hosts: each is emptied first")
    error: str | None = Field(description="Why it stopped (state failed)")
    done: int = Field(description="Steps done (or reverted, while aborting)")
    total: int
    steps: list[UpgradeStepOut]
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class UpgradeCheckOut(BaseModel):
    """Whether the site can upgrade, and why not (upgrades/readiness.py)."""

    current: str = Field(description="The site's release (its oldest controller's).")
    to: str = Field(description="The release asked about.")
    result: Literal["ok", "warning", "failure"] = Field(
        description="The worst check: failure means the upgrade must not start."
    )
    checks: list[UpgradeCheckItem]
    plan: UpgradePlanOut
