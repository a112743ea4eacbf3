"""The steering-only messages (controller -> agent): chain flows, ahead of the host's snapshot.

``steer {version, steering}``: the ``steering`` section of the host's desired-state snapshot
(services/desired.py documents the form: ``{match: output | [outputs]}``) and the host's
desired version it was read at. A chain path change goes to each host whose flows change
before the full snapshot of that version is built, so the node's ingress switches without
waiting for the whole host (instances, networks, DHCP) to be read, serialized and parsed
(docs/benchmarks.md, "Service chain changes under traffic"): as ``steer_chain`` (below) when
the agent takes it and the gateway has the change in hand, else as this whole table.

It is a hint, never the truth: the snapshot of the same or a later version follows, carries
the same flows, and is what the agent acks and keeps. A node that misses a ``steer`` converges
from that snapshot; one that gets it twice commits nothing the second time (the bundle holds
only what differs); one that gets it after a newer snapshot skips it (agent/applying.py
``steer`` keeps the highest version it steered). Only agents whose hello said ``steers`` get
it (an N-1 agent would refuse the unknown type and close its session).

``steer_chain {version, before, after}``: ONE chain's flows on the host before and after a
change (the same form), at the host's desired version after it. The phase that made the
change computed both anyway (services/chain_paths.py), so it goes with no store read at all.
The agent applies it over the table it last committed: this chain's ``before`` keys out,
``after`` in (chains never share a match key: their ports and hop tags are their own), and
only when that table holds ``before`` exactly, so a change never lands on a table it was not
computed from (else it waits for the snapshot). Also a hint: the snapshot follows, a
``steer_chain`` not newer than a whole table the agent steered is skipped. Only agents whose
hello said ``chain_steers`` get it (one that said only ``steers`` gets the host's whole table
as ``steer``, read by the gateway after the commit).

Both ends check them against ``Steer`` and ``SteerChain``: the gateway builds them with
``make`` and ``make_chain`` (a flow table that does not fit is a bug there, raised before
anything is sent), the agent reads them with ``read`` and ``read_chain`` (a ProtocolError: the
agent ignores the message and waits for the snapshot).
Neighbours: messages.py (version and type), gateway/steering.py (sends), agent/connection.py
(receives).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgecloud.protocol import messages, schemas
from edgecloud.protocol.schemas import Count

MAX_FLOWS = 16384  # flows of one host's steering (one per hop end and direction)
MAX_OUTPUTS = 64  # outputs of one match (a port on several hosts: a few)

Key = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Outputs = Key | Annotated[list[Key], Field(min_length=1, max_length=MAX_OUTPUTS)]


M = TypeVar("M", bound=BaseModel)
Table = Annotated[dict[Key, Outputs], Field(max_length=MAX_FLOWS)]


class Steer(BaseModel):
    """``steer``: a host's chain steering at one desired version."""

    model_config = ConfigDict(strict=True, extra="allow")  # N+1 fields pass
    v: int
    t: Literal["steer"]
    version: Annotated[Count, Field(ge=1)]
    steering: Table


class SteerChain(BaseModel):
    """``steer_chain``: one chain's flows on a host before and after a change."""

    model_config = ConfigDict(strict=True, extra="allow")  # N+1 fields pass
    v: int
    t: Literal["steer_chain"]
    version: Annotated[Count, Field(ge=1)]
    before: Table
    after: Table


KINDS: dict[type[BaseModel], str] = {Steer: "steer", SteerChain: "steer_chain"}


def make(version: int, steering: dict[str, Any]) -> dict[str, Any]:
    """The wire message; ProtocolError when it does not fit the schema."""
    message = messages.make("steer", version=version, steering=steering)
    _check(message, Steer)
    return message


def read(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(version, steering) of a received ``steer`` (its version and type already checked by
    messages.check); ProtocolError naming the field when it does not fit."""
    steer = _check(message, Steer)
    return steer.version, message["steering"]


def make_chain(version: int, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The ``steer_chain`` wire message; ProtocolError when it does not fit the schema."""
    message = messages.make("steer_chain", version=version, before=before, after=after)
    _check(message, SteerChain)
    return message


def read_chain(message: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(version, before, after) of a received ``steer_chain``; ProtocolError naming the
    field when it does not fit."""
    change = _check(message, SteerChain)
    return change.version, message["before"], message["after"]


def _check(message: dict[str, Any], model: type[M]) -> M:
    return schemas.parsed(model, message, f"{KINDS[model]} message")
