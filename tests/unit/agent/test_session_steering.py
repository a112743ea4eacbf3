"""agent/connection.py: a snapshot's chain steering is applied as the snapshot arrives, not
after the apply (or the report) of an earlier snapshot still under way; the full apply and
its ack follow as before. A ``steer`` or ``steer_chain`` message (a chain path change ahead of
its snapshot) is steered at once and never acked; an invalid one is ignored."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from typing import Any

from edgecloud.agent.connection import Session
from edgecloud.protocol import messages, steering
from edgecloud.protocol.desired import DesiredState
from edgecloud.protocol.framing import read_frame, write_frame


class SlowAgent:
    """Applies a snapshot only when let; steers at once."""

    def __init__(self) -> None:
        self.steered: list[int] = []
        self.flows: list[dict[str, Any]] = []
        self.applied: list[int] = []
        self.go = asyncio.Event()

    async def steer(self, version: int, flows: Mapping[str, Any] | None) -> None:
        self.steered.append(version)
        self.flows.append(dict(flows or {}))

    async def steer_chain(
        self, version: int, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        self.steered.append(version)
        self.flows.append({"before": before, "after": after})

    async def apply(self, state: DesiredState) -> list[str]:
        await self.go.wait()
        self.applied.append(state.version)
        return []

    async def report(self, force: bool = False) -> None:
        return None


async def _until(check: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def desired(version: int) -> dict[str, Any]:
    spec = {"version": version, "steering": {}, "instances": [], "networks": []}
    return messages.make("desired", version=version, spec=spec)


async def test_a_snapshot_that_does_not_fit_is_nacked_naming_the_field() -> None:
    """Parsed once on receipt (protocol/desired.py): a malformed snapshot is neither steered
    nor applied, but nacked with the field that does not fit; the session goes on, and a
    good snapshot after it is applied and acked."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)
    agent = SlowAgent()
    agent.go.set()
    session = Session(agent, reader, writer)
    running = asyncio.create_task(session.run(interval=3600))
    try:
        bad = desired(1)
        bad["spec"]["instances"] = [{"id": "i-1", "name": "v1", "vcpus": "two"}]
        await write_frame(peer_writer, bad)
        nack = await read_frame(peer_reader)
        assert (nack["t"], nack["version"]) == ("nack", 1)
        assert nack["error"].startswith("desired state: instances.0.")
        assert "KeyError" not in nack["error"] and "Traceback" not in nack["error"]
        worse = messages.make("desired", spec=None)  # not even a version: nacked as 0
        await write_frame(peer_writer, worse)
        nack = await read_frame(peer_reader)
        assert (nack["t"], nack["version"]) == ("nack", 0)
        assert nack["error"].startswith("desired state: spec: ")
        await write_frame(peer_writer, desired(2))
        ack = await read_frame(peer_reader)
        assert (ack["t"], ack["version"]) == ("ack", 2)
        assert agent.steered == [2] and agent.applied == [2] and not running.done()
    finally:
        peer_writer.close()
        await asyncio.gather(running, return_exceptions=True)
        writer.close()
        await peer_writer.wait_closed()
        await writer.wait_closed()


async def test_a_switch_is_steered_while_an_earlier_snapshot_is_still_applied() -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)
    agent = SlowAgent()
    session = Session(agent, reader, writer)
    running = asyncio.create_task(session.run(interval=3600))
    try:
        await write_frame(peer_writer, desired(1))
        await _until(lambda: agent.steered == [1], "version 1 steered")
        await write_frame(peer_writer, desired(2))  # while version 1 is still being applied
        await _until(lambda: agent.steered == [1, 2], "version 2 steered")
        assert agent.applied == []
        agent.go.set()
        acks = [await read_frame(peer_reader), await read_frame(peer_reader)]
        assert [(m["t"], m["version"]) for m in acks] == [("ack", 1), ("ack", 2)]
        assert agent.applied == [1, 2]
    finally:
        peer_writer.close()
        await asyncio.gather(running, return_exceptions=True)
        writer.close()
        await peer_writer.wait_closed()
        await writer.wait_closed()


async def test_a_steer_message_is_steered_at_once_and_never_acked() -> None:
    """A chain path change ahead of its snapshot: steered while the earlier snapshot is still
    being applied; only the snapshot that follows is acked. An invalid one is ignored (the
    session stays up: its snapshot follows)."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)
    agent = SlowAgent()
    session = Session(agent, reader, writer)
    running = asyncio.create_task(session.run(interval=3600))
    try:
        await write_frame(peer_writer, desired(1))
        await _until(lambda: agent.steered == [1], "version 1 steered")
        await write_frame(peer_writer, messages.make("steer", version=0, steering={}))  # invalid
        await write_frame(peer_writer, steering.make(2, {"cust0": "vnic:i-1:0"}))
        await _until(lambda: agent.steered == [1, 2], "the steer message steered")
        assert agent.flows == [{}, {"cust0": "vnic:i-1:0"}]
        await write_frame(peer_writer, desired(2))
        await _until(lambda: agent.steered == [1, 2, 2], "its snapshot steered too")
        bad = messages.make("steer_chain", version=3, before={}, after={"cust0": 7})  # invalid
        await write_frame(peer_writer, bad)
        await write_frame(peer_writer, steering.make_chain(3, {"cust0": "vnic:i-1:0"}, {}))
        await _until(lambda: agent.steered == [1, 2, 2, 3], "the chain change steered")
        assert agent.flows[-1] == {"before": {"cust0": "vnic:i-1:0"}, "after": {}}
        await write_frame(peer_writer, desired(3))
        await _until(lambda: len(agent.steered) == 5, "its snapshot steered too")
        agent.go.set()
        acks = [await read_frame(peer_reader), await read_frame(peer_reader)]
        # snapshots 2 and 3 came while 1 was applied: the newest is applied; steers never acked
        assert [(m["t"], m["version"]) for m in acks] == [("ack", 1), ("ack", 3)]
        assert not running.done()
    finally:
        peer_writer.close()
        await asyncio.gather(running, return_exceptions=True)
        writer.close()
        await peer_writer.wait_closed()
        await writer.wait_closed()
