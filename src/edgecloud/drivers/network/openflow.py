"""OpenFlow 1.4 bundles over one persistent connection to an Open vSwitch bridge.

Role: the chain switch's hot path. ``ovs-ofctl --bundle add-flows`` costs one process per
commit (30-110 ms on a loaded 2-core node, docs/benchmarks.md); ``BundleConnection`` keeps
one connection open to the bridge's management socket (``<OVS rundir>/<bridge>.mgmt``, the
socket ovs-ofctl itself talks to) and commits a bundle in three round trips: the port
descriptions (names to numbers), bundle open + the flow mods + a barrier, then the commit
(2-4 ms in all on the 2-core test machine). Neighbours: drivers/network/ovs.py writes the flows
(ovs-ofctl syntax, one line each as ``add-flows --bundle`` reads them) and calls ``commit``;
when this module says ``OpenFlowUnavailable`` (no socket, vswitchd restarting, the bridge not
speaking OpenFlow 1.4) or ``FlowSyntaxError`` (a flow outside the subset below), ovs.py runs
ovs-ofctl instead, so nothing depends on this module to work.

Only the flow syntax edgecloud's drivers write is encoded (anything else: ``FlowSyntaxError``):

    add [cookie=N,][table=N,][priority=N,][in_port=PORT,][dl_vlan=N,]actions=A[,A...]
    delete_strict [table=N,][priority=N,][in_port=PORT,][dl_vlan=N]
    delete [cookie=N/MASK,][table=N,][in_port=PORT,][dl_vlan=N]

    A: output:PORT | strip_vlan | pop_vlan | push_vlan:0x8100 | push_vlan:0x88a8
       | mod_vlan_vid:N | NORMAL | drop  (``drop`` alone)

PORT is a port name (resolved with a port-description request in the same transaction) or
a number. The encoding is what ovs-ofctl sends for the same text (tests/unit/drivers/
test_openflow_encoding.py compares both through ``ovs-ofctl ofp-print``): OXM matches,
``mod_vlan_vid`` as a set_field on vlan_vid, ``strip_vlan`` as pop_vlan, table 255 for deletes
without a table. Semantics are ovs-ofctl's too: the bundle is atomic and ordered; when the
switch rejects any message, the bundle is discarded and nothing changes (``FlowRejected``,
naming the flow and the OpenFlow error). The connection is re-made on the next commit after
it drops (a vswitchd restart); a bundle left open by a dropped connection is discarded by
the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecloud.errors import DriverError

OFP_VERSION = 0x05  # OpenFlow 1.4: the lowest version with bundles
DEFAULT_RUNDIR = "/var/run/openvswitch"

# message types (OpenFlow 1.4)
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY = 0, 1, 2, 3
FLOW_MOD, MULTIPART_REQUEST, MULTIPART_REPLY = 14, 18, 19
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
BUNDLE_CONTROL, BUNDLE_ADD_MESSAGE = 33, 34
# bundle control types and flags
OPEN_REQUEST, OPEN_REPLY, COMMIT_REQUEST, COMMIT_REPLY = 0, 1, 4, 5
DISCARD_REQUEST, DISCARD_REPLY = 6, 7
ATOMIC, ORDERED = 1, 2
# flow mod commands
ADD, DELETE, DELETE_STRICT = 0, 3, 4
MULTIPART_PORT_DESC, MULTIPART_REPLY_MORE = 13, 1
# reserved numbers
NO_BUFFER, PORT_ANY, GROUP_ANY, TABLE_ALL = 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFF
PORT_NORMAL, PORT_MAX = 0xFFFFFFFA, 0xFFFFFF00
VID_PRESENT = 0x1000
# OXM (class OPENFLOW_BASIC) fields
OXM_BASIC, OXM_IN_PORT, OXM_VLAN_VID = 0x8000, 0, 6
# actions and instructions
ACTION_OUTPUT, ACTION_PUSH_VLAN, ACTION_POP_VLAN, ACTION_SET_FIELD = 0, 17, 18, 25
INSTRUCTION_APPLY_ACTIONS = 4

_HEADER = struct.Struct("!BBHI")  # version, type, length, xid
_ERROR_TYPES = {
    0: "OFPET_HELLO_FAILED",
    1: "OFPET_BAD_REQUEST",
    2: "OFPET_BAD_ACTION",
    3: "OFPET_BAD_INSTRUCTION",
    4: "OFPET_BAD_MATCH",
    5: "OFPET_FLOW_MOD_FAILED",
    17: "OFPET_BUNDLE_FAILED",
}
_ERROR_CODES = {  # the ones a steering bundle can meet; others are shown as numbers
    (2, 4): "OFPBAC_BAD_OUT_PORT",
    (2, 5): "OFPBAC_BAD_ARGUMENT",
    (4, 4): "OFPBMC_BAD_FIELD",
    (4, 5): "OFPBMC_BAD_VALUE",
    (4, 9): "OFPBMC_BAD_PREREQ",
    (5, 1): "OFPFMFC_TABLE_FULL",
    (5, 2): "OFPFMFC_BAD_TABLE_ID",
    (5, 3): "OFPFMFC_OVERLAP",
    (17, 15): "OFPBFC_MSG_FAILED",
    (17, 16): "OFPBFC_TIMEOUT",
    (17, 17): "OFPBFC_BUNDLE_IN_PROGRESS",
}


class OpenFlowUnavailable(DriverError):
    """No usable connection (no socket, refused, dropped before the commit was sent): the
    switch holds what it held; the caller may commit the same lines another way."""


class FlowSyntaxError(DriverError):
    """A flow outside the subset this module encodes (the caller uses ovs-ofctl)."""


class FlowRejected(DriverError):
    """The switch refused a message of the bundle: nothing was committed."""


def socket_path(bridge: str) -> Path:
    """The management socket of ``bridge`` (``OVS_RUNDIR`` as ovs-ofctl reads it)."""
    return Path(os.environ.get("OVS_RUNDIR", DEFAULT_RUNDIR)) / f"{bridge}.mgmt"


# -- the flow subset ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowMod:
    """One parsed line; ports still as written (names or numbers)."""

    command: int
    cookie: int = 0
    cookie_mask: int = 0
    table: int | None = None
    priority: int = 0x8000
    in_port: str | None = None
    vlan: int | None = None
    actions: tuple[tuple[str, str], ...] = ()  # (name, argument)
    text: str = ""

    def ports(self) -> set[str]:
        named = [self.in_port] + [arg for name, arg in self.actions if name == "output"]
        return {p for p in named if p is not None and not p.isdigit()}


_COMMANDS = {"add": ADD, "delete": DELETE, "delete_strict": DELETE_STRICT}


def parse_line(line: str) -> FlowMod:
    """``add ...`` / ``delete ...`` / ``delete_strict ...`` (see the module docstring)."""
    command, _, flow = line.strip().partition(" ")
    if command not in _COMMANDS or not flow:
        raise FlowSyntaxError(f"not an add, delete or delete_strict line: {line!r}")
    match, actions_text = flow, None
    if "actions=" in flow:
        match, _, actions_text = flow.partition("actions=")
        match = match.rstrip(",")
    if (actions_text is None) == (command == "add"):
        raise FlowSyntaxError(f"actions belong to add lines only: {line!r}")
    fields: dict[str, object] = {"command": _COMMANDS[command], "text": line.strip()}
    for item in filter(None, match.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise FlowSyntaxError(f"unsupported match {item!r} in {line!r}")
        fields.update(_match_field(key, value, command, line))
    if actions_text is not None:
        fields["actions"] = _actions(actions_text, line)
    return FlowMod(**fields)  # type: ignore[arg-type]


def _match_field(key: str, value: str, command: str, line: str) -> dict[str, object]:
    if key == "cookie":
        cookie, _, mask = value.partition("/")
        if (command == "delete") != bool(mask):
            raise FlowSyntaxError(f"cookie masks only on delete lines: {line!r}")
        masked = {"cookie_mask": _number(mask, 64, line)} if mask else {}
        return {"cookie": _number(cookie, 64, line), **masked}
    if key == "table":
        return {"table": _number(value, 8, line, limit=254)}
    if key == "priority":
        return {"priority": _number(value, 16, line)}
    if key == "in_port":
        return {"in_port": _port(value, line)}
    if key == "dl_vlan":
        return {"vlan": _number(value, 12, line, limit=4095)}
    raise FlowSyntaxError(f"unsupported match field {key!r} in {line!r}")


def _actions(text: str, line: str) -> tuple[tuple[str, str], ...]:
    items = [a.strip() for a in text.split(",")]
    if items == ["drop"]:
        return ()
    actions = []
    for item in items:
        name, _, arg = item.partition(":")
        if item == "NORMAL":
            actions.append(("output", str(PORT_NORMAL)))
        elif name == "output" and arg:
            actions.append(("output", _port(arg, line)))
        elif item in ("strip_vlan", "pop_vlan"):
            actions.append(("pop_vlan", ""))
        elif name == "push_vlan" and arg.lower() in ("0x8100", "0x88a8"):
            actions.append(("push_vlan", str(int(arg, 16))))
        elif name == "mod_vlan_vid" and arg:
            actions.append(("mod_vlan_vid", str(_number(arg, 12, line, limit=4095))))
        else:
            raise FlowSyntaxError(f"unsupported action {item!r} in {line!r}")
    return tuple(actions)


def _number(text: str, bits: int, line: str, limit: int | None = None) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise FlowSyntaxError(f"{text!r} is not a number in {line!r}") from None
    if text == "-1" and bits == 64:
        return (1 << 64) - 1
    if not 0 <= value <= (limit if limit is not None else (1 << bits) - 1):
        raise FlowSyntaxError(f"{text!r} is out of range in {line!r}")
    return value


def _port(text: str, line: str) -> str:
    if text.isdigit():
        if not 0 < int(text) < PORT_MAX and int(text) != PORT_NORMAL:
            raise FlowSyntaxError(f"port {text} is out of range in {line!r}")
        return text
    if not text or len(text) > 15 or any(c in text for c in ",:= \"'"):
        raise FlowSyntaxError(f"unsupported port {text!r} in {line!r}")
    return text


# -- encoding --------------------------------------------------------------------------------


def message(kind: int, xid: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(OFP_VERSION, kind, _HEADER.size + len(body), xid) + body


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def _oxm(field_id: int, value: bytes) -> bytes:
    return struct.pack("!HBB", OXM_BASIC, field_id << 1, len(value)) + value


def _number_of(port: str, numbers: Mapping[str, int]) -> int:
    if port.isdigit():
        return int(port)
    if port not in numbers:
        raise DriverError(f"there is no port {port!r} on the bridge")
    return numbers[port]


def encode_flow_mod(flow: FlowMod, xid: int, numbers: Mapping[str, int]) -> bytes:
    """The OFPT_FLOW_MOD of ``flow``; ``numbers``: port name -> OpenFlow port number."""
    oxms = b""
    if flow.in_port is not None:
        oxms += _oxm(OXM_IN_PORT, struct.pack("!I", _number_of(flow.in_port, numbers)))
    if flow.vlan is not None:
        oxms += _oxm(OXM_VLAN_VID, struct.pack("!H", VID_PRESENT | flow.vlan))
    match = _pad8(struct.pack("!HH", 1, 4 + len(oxms)) + oxms)  # type OXM
    actions = b"".join(_action(name, arg, numbers) for name, arg in flow.actions)
    instructions = (
        struct.pack("!HH4x", INSTRUCTION_APPLY_ACTIONS, 8 + len(actions)) + actions
        if actions
        else b""
    )
    default_table = 0 if flow.command == ADD else TABLE_ALL
    body = struct.pack(
        "!QQBBHHHIIIHH",
        flow.cookie,
        flow.cookie_mask,
        default_table if flow.table is None else flow.table,
        flow.command,
        0,  # idle timeout
        0,  # hard timeout
        flow.priority,
        NO_BUFFER,
        PORT_ANY,
        GROUP_ANY,
        0,  # flags
        0,  # importance
    )
    return message(FLOW_MOD, xid, body + match + instructions)


def _action(name: str, arg: str, numbers: Mapping[str, int]) -> bytes:
    if name == "output":
        return struct.pack("!HHIH6x", ACTION_OUTPUT, 16, _number_of(arg, numbers), 0)
    if name == "pop_vlan":
        return struct.pack("!HH4x", ACTION_POP_VLAN, 8)
    if name == "push_vlan":
        return struct.pack("!HHH2x", ACTION_PUSH_VLAN, 8, int(arg))
    assert name == "mod_vlan_vid"
    oxm = _oxm(OXM_VLAN_VID, struct.pack("!H", VID_PRESENT | int(arg)))
    padded = _pad8(b"\0" * 4 + oxm)
    return struct.pack("!HH", ACTION_SET_FIELD, len(padded)) + padded[4:]


def bundle_control(xid: int, bundle_id: int, kind: int) -> bytes:
    return message(BUNDLE_CONTROL, xid, struct.pack("!IHH", bundle_id, kind, ATOMIC | ORDERED))


def bundle_add(xid: int, bundle_id: int, inner: bytes) -> bytes:
    """Wraps ``inner`` (whose xid must be ``xid``: OFPBFC_MSG_BAD_XID otherwise)."""
    return message(
        BUNDLE_ADD_MESSAGE, xid, struct.pack("!IHH", bundle_id, 0, ATOMIC | ORDERED) + inner
    )


def describe_error(msg: bytes) -> str:
    """An OFPT_ERROR as OpenFlow names its type and code."""
    kind, code = struct.unpack_from("!HH", msg, _HEADER.size)
    if kind == 0xFFFF:  # experimenter (Nicira) errors
        return f"OpenFlow experimenter error {struct.unpack_from('!HI', msg, 10)}"
    return _ERROR_CODES.get((kind, code)) or f"{_ERROR_TYPES.get(kind, f'type {kind}')} code {code}"


def port_numbers(replies: Sequence[bytes]) -> dict[str, int]:
    """{name: number} from the OFPMP_PORT_DESC replies (ofp_port of OpenFlow 1.4)."""
    numbers: dict[str, int] = {}
    for reply in replies:
        offset = _HEADER.size + 8
        while offset + 40 <= len(reply):
            number, length = struct.unpack_from("!IH", reply, offset)
            name = reply[offset + 16 : offset + 32].split(b"\0", 1)[0].decode(errors="replace")
            numbers[name] = number
            offset += max(length, 40)
    return numbers


# -- the connection ------------------------------------------------------------------------


@dataclass
class _Protocol(asyncio.Protocol):
    """Splits the byte stream into messages: answers echo requests, hands each reply (or
    error) to whoever awaits its xid, keeps the errors of messages no one awaits."""

    transport: asyncio.Transport | None = None
    waiting: dict[int, asyncio.Future[list[bytes]]] = field(default_factory=dict)
    parts: dict[int, list[bytes]] = field(default_factory=dict)  # multipart replies so far
    errors: dict[int, bytes] = field(default_factory=dict)  # xid -> OFPT_ERROR
    buffer: bytearray = field(default_factory=bytearray)
    lost: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            length = _HEADER.unpack_from(self.buffer)[2]
            if length < _HEADER.size:
                assert self.transport is not None
                self.transport.close()  # not OpenFlow
                return
            if len(self.buffer) < length:
                return
            msg = bytes(self.buffer[:length])
            del self.buffer[:length]
            self._dispatch(msg)

    def _dispatch(self, msg: bytes) -> None:
        _, kind, _, xid = _HEADER.unpack_from(msg)
        if kind == ECHO_REQUEST and self.transport is not None:
            self.transport.write(message(ECHO_REPLY, xid, msg[_HEADER.size :]))
            return
        if kind == MULTIPART_REPLY and struct.unpack_from("!H", msg, 10)[0] & MULTIPART_REPLY_MORE:
            self.parts.setdefault(xid, []).append(msg)
            return
        waiter = self.waiting.pop(xid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result([*self.parts.pop(xid, []), msg])
        elif kind == ERROR:
            self.errors[xid] = msg

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the switch closed the OpenFlow connection"))
        self.waiting.clear()


class BundleConnection:
    """One OpenFlow 1.4 connection to a bridge, made on first use and again after it drops.

    ``commit`` is serialised (one bundle at a time on the connection); ``close`` ends it."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._protocol: _Protocol | None = None
        self._xids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.connects = 0  # connections made (a vswitchd restart makes one more)

    async def commit(self, lines: Sequence[str]) -> None:
        """Commit ``lines`` (``add``/``delete``/``delete_strict`` ...) as one atomic bundle.

        FlowSyntaxError before anything is sent; OpenFlowUnavailable when nothing could be
        committed for want of a connection; FlowRejected when the switch refused (nothing
        changed); DriverError when the answer to the commit itself never came."""
        flows = [parse_line(line) for line in lines]
        if not flows:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    protocol = await self._connected()
                    await self._transact(protocol, flows)
            except TimeoutError:
                self.close()
                raise DriverError(
                    f"the switch gave no answer in {self.timeout:g} s; connection reset"
                ) from None

    async def _connected(self) -> _Protocol:
        if self._protocol is not None and not self._protocol.lost:
            return self._protocol
        self.close()
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_unix_connection(_Protocol, str(self.path))
        except OSError as exc:
            raise OpenFlowUnavailable(f"cannot connect to {self.path} ({exc.strerror})") from None
        self._protocol = protocol
        hello_elements = struct.pack("!HHI", 1, 8, 1 << OFP_VERSION)  # version bitmap: 1.4
        xid = next(self._xids)
        try:
            assert protocol.transport is not None
            protocol.transport.write(message(HELLO, next(self._xids), hello_elements))
            reply = await self._request(protocol, message(ECHO_REQUEST, xid), xid)
        except OpenFlowUnavailable:
            self.close()
            raise
        if reply[-1][0] != OFP_VERSION or reply[-1][1] != ECHO_REPLY:
            self.close()
            raise OpenFlowUnavailable(f"{self.path} does not speak OpenFlow 1.4 bundles")
        self.connects += 1
        return protocol

    async def _request(self, protocol: _Protocol, data: bytes, xid: int) -> list[bytes]:
        """Send ``data`` and wait for the answer to ``xid`` (OpenFlowUnavailable if the
        connection drops first)."""
        waiter: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        protocol.waiting[xid] = waiter
        if protocol.lost or protocol.transport is None:
            protocol.waiting.pop(xid, None)
            raise OpenFlowUnavailable("the OpenFlow connection is closed")
        protocol.transport.write(data)
        try:
            return await waiter
        except ConnectionError as exc:
            raise OpenFlowUnavailable(str(exc)) from None
        finally:
            protocol.waiting.pop(xid, None)

    async def _transact(self, protocol: _Protocol, flows: Sequence[FlowMod]) -> None:
        numbers: dict[str, int] = {}
        if any(flow.ports() for flow in flows):
            xid = next(self._xids)
            request = message(MULTIPART_REQUEST, xid, struct.pack("!HH4x", MULTIPART_PORT_DESC, 0))
            replies = await self._request(protocol, request, xid)
            if replies[-1][1] == ERROR:
                raise OpenFlowUnavailable(f"no port list: {describe_error(replies[-1])}")
            numbers = port_numbers(replies)
        bundle = next(self._xids)
        adds = {next(self._xids): flow for flow in flows}
        data = [bundle_control(bundle, bundle, OPEN_REQUEST)]
        data += [bundle_add(x, bundle, encode_flow_mod(f, x, numbers)) for x, f in adds.items()]
        barrier = next(self._xids)
        protocol.errors.clear()
        await self._request(protocol, b"".join(data) + message(BARRIER_REQUEST, barrier), barrier)
        refused = [(x, protocol.errors[x]) for x in [bundle, *adds] if x in protocol.errors]
        if refused:
            with contextlib.suppress(OpenFlowUnavailable):
                if bundle not in protocol.errors:
                    xid = next(self._xids)
                    await self._request(protocol, bundle_control(xid, bundle, DISCARD_REQUEST), xid)
            raise _rejected(refused[0], adds)
        xid = next(self._xids)
        try:
            reply = (
                await self._request(protocol, bundle_control(xid, bundle, COMMIT_REQUEST), xid)
            )[-1]
        except OpenFlowUnavailable as exc:  # the commit may or may not have happened
            raise DriverError(f"the connection dropped during the commit ({exc})") from None
        if reply[1] == ERROR:
            failed = [(x, protocol.errors[x]) for x in adds if x in protocol.errors]
            raise _rejected(failed[0] if failed else (xid, reply), adds)

    def current(self) -> int | None:
        """The number of the connection open now (``connects`` when it was made); None when
        there is none. Unchanged between two calls: the switch kept running in between (a
        vswitchd restart, which loses every flow, ends the connection)."""
        if self._protocol is None or self._protocol.lost:
            return None
        return self.connects

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def _rejected(error: tuple[int, bytes], adds: Mapping[int, FlowMod]) -> FlowRejected:
    xid, msg = error
    flow = adds.get(xid)
    where = f" {flow.text!r}" if flow is not None else " the bundle"
    return FlowRejected(f"the switch rejected{where}: {describe_error(msg)}")
