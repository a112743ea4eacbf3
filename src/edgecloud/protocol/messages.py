"""Messages on the agent channel, and their protocol version.

Every message is a JSON object ``{"v": VERSION, "t": TYPE, ...}``. A peer refuses a message
whose version it does not speak (with an ``error`` message naming both).

Versions (issue 12: a controller at release N serves agents at N and N-1). A release speaks
``OLDEST_VERSION`` .. ``PROTOCOL_VERSION``. What a session speaks is negotiated at hello:

- the agent frames its hello (and anything before a session: get_ca, enroll, fetch_image) at
  the oldest version it speaks, which every controller since then accepts, and offers
  ``protocols`` (every version it speaks) and its ``release``;
- the controller picks the newest version both speak (``negotiate``), answers a welcome
  framed at it that says ``protocol`` (and its own ``release``), frames every later message
  of the session at it (gateway/sessions.py) and stores the host's release and protocol;
- a hello without ``protocols`` (an agent of release 0.1.0, protocol 1) speaks its frame's
  version; a welcome without ``protocol`` (a controller of release 0.1.0) means version 1.

What each version adds:
  1  release 0.1.0: everything below; a session's optional messages (``steer``,
     ``steer_chain``, ``controllers``) go only to agents whose hello asked for them
     (``steers``, ``chain_steers``, ``follows``).
  2  release 0.2.0: negotiation (``protocols``, ``release`` in hello; ``protocol``,
     ``release`` in welcome); a version-2 session takes all three optional messages
     without asking (``speaks``).

Agent -> controller          Controller -> agent
  get_ca      (no cert)        ca        {cert}
  enroll      (no cert)        enrolled  {cert}
  hello       (mTLS)           welcome   {in_sync, heartbeat_interval, desired_version, renew
                                          [, controllers] (every controller's gateway)
                                          [, fence_after]}
  ack / nack  {version[,error]}  desired {version, spec}
    (a nacked version is acked later once the agent's periodic resync applied it, from 0.2.0)
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

from edgecloud import __version__
from edgecloud.errors import ProtocolError

PROTOCOL_VERSION = 2  # the newest version this release speaks
OLDEST_VERSION = 1  # the oldest it still speaks: release 0.1.0's
SUPPORTED_VERSIONS = frozenset(range(OLDEST_VERSION, PROTOCOL_VERSION + 1))
# the optional session messages, and the hello flag that asks for each in a version-1 session
OPTIONAL = {"steer": "steers", "steer_chain": "chain_steers", "controllers": "follows"}
OPTIONAL_FROM = 2  # from this version a session takes every optional message unasked

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
    """A message of ``type_``, framed at the oldest version this release speaks (what any
    peer of release N-1 or later reads); a session re-frames it at what it negotiated."""
    return {"v": OLDEST_VERSION, "t": type_, **fields}


def framed(message: dict[str, Any], version: int) -> dict[str, Any]:
    """``message`` framed at ``version`` (a session's negotiated protocol)."""
    return message if message.get("v") == version else {**message, "v": version}


def negotiate(hello: dict[str, Any]) -> int:
    """The newest version this release and the hello's agent both speak; ProtocolError
    naming both sides' versions when there is none (an agent too old or too new)."""
    offered = hello.get("protocols")
    if not isinstance(offered, list) or not offered:
        offered = [hello.get("v")]
    common = SUPPORTED_VERSIONS & {p for p in offered if type(p) is int}
    if not common:
        raise ProtocolError(
            f"no protocol version in common: the agent speaks {_versions(offered)}, this "
            f"controller (release {__version__}) speaks {sorted(SUPPORTED_VERSIONS)}"
        )
    return max(common)


def welcomed(welcome: dict[str, Any]) -> int:
    """The version a welcome says the session speaks (1 from a controller of 0.1.0)."""
    version = welcome.get("protocol", 1)
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            f"the controller chose protocol version {str(version)[:16]!r}, which this agent "
            f"does not speak ({sorted(SUPPORTED_VERSIONS)})"
        )
    return version


def speaks(version: int, optional: str, hello: dict[str, Any]) -> bool:
    """Whether a session at ``version``, opened by ``hello``, takes the optional message
    ``optional`` (see OPTIONAL)."""
    return version >= OPTIONAL_FROM or hello.get(OPTIONAL[optional]) is True


def _versions(offered: list[Any]) -> str:
    """``[9, 10]``: what a peer offered, each bounded (it may be anything on the wire)."""
    shown = ", ".join(str(p)[:8] for p in offered[:8])
    return f"[{shown}{', ...' if len(offered) > 8 else ''}]"


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
