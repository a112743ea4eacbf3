"""Messages on the agent channel, and their protocol version.

Every message is a JSON object ``{"v": PROTOCOL_VERSION, "t": TYPE, ...}``. A peer refuses a
message whose major version it does not speak (with an ``error`` message naming both).

Agent -> controller          Controller -> agent
  get_ca      (no cert)        ca        {cert}
  enroll      (no cert)        enrolled  {cert}
  hello       (mTLS)           welcome   {in_sync, heartbeat_interval, desired_version, renew
                                          [, controllers] (every controller's gateway)
                                          [, fence_after]}
  ack / nack  {version[,error]}  desired {version, spec}
                               steer   {version, steering}  (a chain path change, ahead of
                                 its ``desired``; only to agents whose hello said ``steers``:
                                 steering.py)
                               steer_chain {version, before, after}  (one chain's flows
                                 before -> after, ahead of its ``desired``; only to agents
                                 whose hello said ``chain_steers``: steering.py)
  observed    {instances, vnics} req     {id, op, args}   (multiplexed requests)
  hb          {seq}            error     {code, message}
                               hb        {seq}  (echo, to agents that fence: agent/fencing.py)
  alarm       {action, alarm_id, reason}
  res         {id, ok, result | error}
  fetch_image {sha256, offset} image   {sha256, size, offset} + the raw bytes from offset
                                         (alone on its own mTLS connection; or retry / error)
  renew       {csr}            renewed   {cert, ca} | {error}  (certificate renewal, mTLS)
                               controllers {controllers}  (the site's controllers changed; sent
                                 only to agents whose hello said ``follows``)
"""

from __future__ import annotations

from typing import Any

from edgecloud.errors import ProtocolError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

AGENT_TYPES = frozenset(
    {
        "get_ca",
        "enroll",
        "hello",
        "ack",
        "nack",
        "observed",
        "hb",
        "alarm",
        "res",
        "fetch_image",
        "renew",
    }
)
CONTROLLER_TYPES = frozenset(
    {
        "ca",
        "enrolled",
        "welcome",
        "desired",
        "steer",
        "steer_chain",
        "req",
        "error",
        "retry",
        "image",
        "renewed",
        "controllers",
        "hb",
    }
)


def make(type_: str, **fields: Any) -> dict[str, Any]:
    """A message of ``type_`` with the current protocol version."""
    return {"v": PROTOCOL_VERSION, "t": type_, **fields}


def check(message: dict[str, Any], allowed: frozenset[str]) -> str:
    """Validate version and type of a received message; returns its type."""
    version = message.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            f"unsupported protocol version {str(version)[:64]!r} (this side speaks "
            f"{sorted(SUPPORTED_VERSIONS)})"
        )
    type_ = message.get("t")
    if not isinstance(type_, str) or type_ not in allowed:
        raise ProtocolError(f"unexpected message type {str(type_)[:64]!r}")
    return str(type_)


def error(code: str, message: str) -> dict[str, Any]:
    """An error message: the peer logs it and closes (or backs off, per code)."""
    return make("error", code=code, message=message)
