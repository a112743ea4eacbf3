"""The schema of every message an agent sends: types and bounded lengths, checked on arrival.

protocol/messages.py checks a message's version and type; ``validate`` then checks its fields
against the pydantic model of its type (strict: no coercion, so what was checked is what the
gateway uses; unknown extra fields are allowed, so an N+1 agent can talk to an N controller).
Every string, list, map and integer is bounded here: nothing an agent sends can make a store
write fail or grow without limit (an integer above a BigInteger once failed a whole batch of
other hosts' acks). A message that does not fit is refused with a ProtocolError naming the
field (the gateway refuses that message for its host alone: gateway/validating.py).

Neighbours: messages.py (version and type), gateway/ (calls ``validate``), agent/ (sends these).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edgecloud.errors import ProtocolError

M = TypeVar("M", bound=BaseModel)
MAX_INT = 2**62  # below BigInteger's limit
MAX_INSTANCES = 4096  # per node report
MAX_VNICS = 64
MAX_DETAILS = 128
MAX_PCI_DEVICES = 512

Name = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Short = Annotated[str, StringConstraints(max_length=255)]
Text = Annotated[str, StringConstraints(max_length=65536)]
Pem = Annotated[str, StringConstraints(min_length=1, max_length=16384)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Detail = Annotated[str, StringConstraints(max_length=1024)]
Scalar = Detail | int | float | bool | None


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    v: int
    t: Short


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class GuestVnic(_Part):
    index: Annotated[int, Field(ge=0, le=1023)]
    name: Short | None = None
    mac: Short | None = None
    pci: Short | None = None


class MigrationReport(_Part):
    id: Short | None = None
    prepared: bool = False
    placement: dict[Short, Any] | None = None


class InstanceReport(_Part):
    """What a node observes of one instance: the typed observed state (the agent builds it,
    agent/applying.py ``observe``; the controller reads it, services/reports.py)."""

    power: Short | None = None
    boot_id: Short | None = None
    error: Text | None = None
    guest_vnics: Annotated[list[GuestVnic], Field(max_length=MAX_VNICS)] | None = None
    guest_check: Short | None = None
    migration: MigrationReport | None = None


class Observed(_Message):
    instances: Annotated[dict[Short, InstanceReport], Field(max_length=MAX_INSTANCES)] = {}


class ObservedPart(_Part):
    """A node's observed state: every instance it runs or prepares, by id (the ``observed``
    message and a hello's ``observed`` carry it)."""

    instances: Annotated[dict[Short, InstanceReport], Field(max_length=MAX_INSTANCES)] = {}


class Facts(_Part):
    vcpus: Count = 0
    memory_mib: Count = 0
    disk_gib: Count = 0
    hypervisor: Short = ""
    details: Annotated[dict[Short, Scalar], Field(max_length=MAX_DETAILS)] = {}
    pci_devices: Annotated[list[dict[Short, Short]], Field(max_length=MAX_PCI_DEVICES)] = []
    address: Short | None = None


class Hello(_Message):
    host: Name | None = None
    release: Short | None = None  # the agent's release (0.1.0 said ``agent_version``)
    agent_version: Short | None = None
    protocols: Annotated[list[Annotated[int, Field(ge=1, le=MAX_INT)]], Field(max_length=64)] = []
    applied_version: Count = 0
    facts: Facts = Facts()
    observed: ObservedPart | None = None
    steers: bool = False  # takes ``steer`` messages (steering.py)
    chain_steers: bool = False  # takes ``steer_chain`` messages (steering.py)


class Ack(_Message):
    version: Count


MAX_ERROR = 16384  # agents cut longer nack errors (agent/connection.py)


class Nack(_Message):
    version: Count
    error: Text = "unknown error"


class Heartbeat(_Message):
    seq: Count = 0
    ts: float | None = None


class AlarmReport(_Message):
    action: Literal["raise", "clear"]
    alarm_id: Short
    reason: Text = ""


class Result(_Message):
    id: Count
    ok: bool
    result: Any = None
    error: Text | None = None


class FetchImage(_Message):
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    offset: Count = 0


class Renew(_Message):
    csr: Pem


class GetCa(_Message):
    pass


class Enroll(_Message):
    host: Name
    secret: Short
    csr: Pem
    address: Short | None = None


SCHEMAS: dict[str, type[_Message]] = {
    "hello": Hello,
    "ack": Ack,
    "nack": Nack,
    "observed": Observed,
    "hb": Heartbeat,
    "alarm": AlarmReport,
    "res": Result,
    "fetch_image": FetchImage,
    "renew": Renew,
    "get_ca": GetCa,
    "enroll": Enroll,
}


def validate(message: dict[str, Any], kind: str) -> BaseModel:
    """``message`` (of type ``kind``, already checked) read as its schema's model."""
    return parsed(SCHEMAS[kind], message, f"{kind} message")


def wire(part: BaseModel) -> dict[str, Any]:
    """What an agent sends of ``part`` (e.g. its ``ObservedPart``): fields without a value
    are left out, which every release reads as before (a missing key is None to them)."""
    return part.model_dump(mode="json", exclude_none=True)


def parsed(model: type[M], data: Any, what: str, whole: str = "message") -> M:
    """``data`` read as ``model``; else a ProtocolError ``<what>: <field>: <why>`` naming the
    first field that does not fit (``whole`` when it is the data itself)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or whole
        raise ProtocolError(
            f"{what}: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply") from None
