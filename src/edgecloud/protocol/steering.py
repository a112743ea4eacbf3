"""The steering-only message (controller -> agent): a host's chain flows, ahead of its snapshot.

``steer {version, steering}``: the ``steering`` section of the host's desired-state snapshot
(services/desired.py documents the form: ``{match: output | [outputs]}``) and the host's
desired version it was read at. A chain path switch sends it to each host whose flows change,
before the full snapshot of that version is built, so the node's ingress switches without
waiting for the whole host (instances, networks, DHCP) to be read, serialized and parsed
(docs/benchmarks.md, "Service chain changes under traffic").

It is a hint, never the truth: the snapshot of the same or a later version follows, carries
the same flows, and is what the agent acks and keeps. A node that misses a ``steer`` converges
from that snapshot; one that gets it twice commits nothing the second time (the bundle holds
only what differs); one that gets it after a newer snapshot skips it (agent/applying.py
``steer`` keeps the highest version it steered). Only agents whose hello said ``steers`` get
it (an N-1 agent would refuse the unknown type and close its session).

Both ends check it against ``Steer``: the gateway builds it with ``make`` (a flow table that
does not fit is a bug there, raised before anything is sent), the agent reads it with ``read``
(a ProtocolError: the agent ignores the message and waits for the snapshot).
Neighbours: messages.py (version and type), gateway/steering.py (sends), agent/connection.py
(receives).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edgecloud.errors import ProtocolError
from edgecloud.protocol import messages
from edgecloud.protocol.schemas import Count

MAX_FLOWS = 16384  # flows of one host's steering (one per hop end and direction)
MAX_OUTPUTS = 64  # outputs of one match (a port on several hosts: a few)

Key = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Outputs = Key | Annotated[list[Key], Field(min_length=1, max_length=MAX_OUTPUTS)]


class Steer(BaseModel):
    """``steer``: a host's chain steering at one desired version."""

    model_config = ConfigDict(strict=True, extra="allow")  # N+1 fields pass
    v: int
    t: Literal["steer"]
    version: Annotated[Count, Field(ge=1)]
    steering: Annotated[dict[Key, Outputs], Field(max_length=MAX_FLOWS)]


def make(version: int, steering: dict[str, Any]) -> dict[str, Any]:
    """The wire message; ProtocolError when it does not fit the schema."""
    message = messages.make("steer", version=version, steering=steering)
    _check(message)
    return message


def read(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(version, steering) of a received ``steer`` (its version and type already checked by
    messages.check); ProtocolError naming the field when it does not fit."""
    steer = _check(message)
    return steer.version, message["steering"]


def _check(message: dict[str, Any]) -> Steer:
    try:
        return Steer.model_validate(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(
            f"steer message: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None
