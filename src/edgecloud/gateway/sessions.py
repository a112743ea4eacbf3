"""One connected agent: sending, multiplexed requests, and what it last acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from edgecloud.errors import DriverError, ProtocolError
from edgecloud.protocol import messages
from edgecloud.protocol.framing import write_frame


class AgentSession:
    """The controller's end of one agent's channel."""

    def __init__(
        self, host_id: str, host_name: str, writer: asyncio.StreamWriter, cert_serial: int = 0
    ) -> None:
        self.host_id, self.host_name = host_id, host_name
        self.cert_serial = cert_serial  # of the certificate the host holds now (renewals move it)
        self.renewed_at = float("-inf")  # monotonic time of the last renewal on this session
        self.flagged = False  # an invalid message was refused on this session (validating.py)
        self.echo = False  # answer its heartbeats (its agent fences itself: agent/fencing.py)
        self.fenced = False  # its agent fenced its VNFs during this session (alarm 200.040)
        self.writer = writer
        self.last_seen = time.monotonic()
        self.sent_version = 0
        self.applied_version = 0
        self.protocol = messages.OLDEST_VERSION  # negotiated at hello (protocol/messages.py)
        self.release: str | None = None  # the agent's release, as its hello said
        self.follows = False  # the agent takes ``controllers`` messages (protocol/messages.py
        self.steers = False  # ``speaks``: a version-2 session, or its hello asked)
        self.chain_steers = False  # the agent takes ``steer_chain`` messages
        self._send_lock = asyncio.Lock()
        self.alarm_turn = asyncio.Lock()  # its alarms are written one at a time, in order
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.closed = asyncio.Event()

    def speak(self, hello: dict[str, Any], protocol: int) -> None:
        """Take what the agent's hello said: the protocol version negotiated from it
        (protocol/messages.py ``negotiate``), its release, which optional messages it takes."""
        self.protocol = protocol
        release = hello.get("release", hello.get("agent_version"))  # 0.1.0 said agent_version
        self.release = release if isinstance(release, str) else None
        self.follows = messages.speaks(self.protocol, "controllers", hello)
        self.steers = messages.speaks(self.protocol, "steer", hello)
        self.chain_steers = messages.speaks(self.protocol, "steer_chain", hello)

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` framed at the session's protocol version."""
        async with self._send_lock:
            await write_frame(self.writer, messages.framed(message, self.protocol))

    async def request(self, op: str, args: dict[str, Any], timeout: float) -> Any:
        """Ask the agent to do ``op`` and wait for its answer (multiplexed by id)."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(messages.make("req", id=request_id, op=op, args=args))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise DriverError(
                f"host {self.host_name} did not answer {op!r} within {timeout:g} s"
            ) from exc
        finally:
            self._pending.pop(request_id, None)

    def resolve(self, message: dict[str, Any]) -> None:
        """An answer ('res') arrived from the agent."""
        future = self._pending.get(int(message.get("id", -1)))
        if future is None or future.done():
            return
        if message.get("ok"):
            future.set_result(message.get("result"))
        else:
            future.set_exception(
                DriverError(str(message.get("error", "request failed on the node")))
            )

    def close(self) -> None:
        """Fail every request in flight and close the connection."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProtocolError(f"host {self.host_name} disconnected"))
        self.closed.set()
        self.writer.close()

    def abort(self) -> None:
        """Close at once, without TLS's goodbye: a silent peer may never read it (a cut-off
        link holds a graceful close open until the TLS shutdown times out, 30 s)."""
        self.close()
        self.writer.transport.abort()
