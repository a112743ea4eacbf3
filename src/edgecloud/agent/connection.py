"""The agent's one mTLS session with the controller: hello, desired state, reports, requests.

Reconnects forever with full-jitter exponential backoff; a refused certificate is fatal (the
node must be enrolled again), everything else is retried. A controller under load answers
``retry {retry_after}`` instead of a welcome (admission control): the agent waits that long. Desired-state snapshots are applied
one at a time (the newest wins) in the background, so requests such as console reads are
answered while a snapshot is being applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edgecloud import __version__
from edgecloud.agent.identity import AgentIdentity, split_address
from edgecloud.errors import EdgecloudError, EnrollmentError
from edgecloud.pki.identity import client_ssl_context
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame

log = logging.getLogger(__name__)
FATAL_CODES = {"unknown_certificate"}
HANDSHAKE_TIMEOUT = 20.0


class CredentialsRefused(EnrollmentError):
    """The controller does not accept this node's certificate: enroll again."""


class RetryLater(EdgecloudError):
    """The controller is busy admitting other nodes: connect again after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"the controller is busy: retry in {delay:.1f} s")
        self.delay = delay


class Session:
    """One connected session; ``run`` returns when the connection ends."""

    def __init__(
        self, agent: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.agent, self.reader, self.writer = agent, reader, writer
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._latest: dict[str, Any] | None = None
        self._applying: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await write_frame(self.writer, message)

    async def run(self, interval: float) -> None:
        beats = self._spawn(self._heartbeat(interval))
        try:
            while True:
                message = await read_frame(self.reader)
                kind = messages.check(message, messages.CONTROLLER_TYPES)
                if kind == "desired":
                    self._latest = message
                    if self._applying is None or self._applying.done():
                        self._applying = self._spawn(self._apply_latest())
                elif kind == "req":
                    self._spawn(self._answer(message))
                elif kind == "error":
                    raise _refusal(message)
        finally:
            beats.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _heartbeat(self, interval: float) -> None:
        seq = 0
        while True:
            await asyncio.sleep(interval)
            seq += 1
            await self.send(messages.make("hb", seq=seq, ts=time.time()))

    async def _apply_latest(self) -> None:
        while self._latest is not None:
            message, self._latest = self._latest, None
            version = int(message["version"])
            try:
                errors = await self.agent.apply(message["spec"])
            except (EdgecloudError, OSError) as exc:
                errors = [str(exc)]
            if errors:
                await self.send(messages.make("nack", version=version, error="; ".join(errors)))
            else:
                await self.send(messages.make("ack", version=version))
            await self.agent.report(force=True)

    async def _answer(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            result = await self.agent.handle_request(
                str(message.get("op")), message.get("args") or {}
            )
            reply = messages.make("res", id=request_id, ok=True, result=result)
        except (EdgecloudError, OSError) as exc:
            reply = messages.make("res", id=request_id, ok=False, error=str(exc))
        await self.send(reply)


def _refusal(message: dict[str, Any]) -> EdgecloudError:
    text = f"the controller refused this node: {message.get('message')}"
    if message.get("code") in FATAL_CODES:
        return CredentialsRefused(text)
    return EdgecloudError(text)


async def connect(
    identity: AgentIdentity,
    local_addr: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the mTLS connection (from ``local_addr`` when given; ``context`` reused when
    given); a refused certificate raises CredentialsRefused."""
    host, port = split_address(identity.controller)
    if context is None:
        context = client_ssl_context(identity.ca, identity.cert, identity.key)
    source = None if local_addr is None else (local_addr, 0)
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host, local_addr=source
            ),
            HANDSHAKE_TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise CredentialsRefused(
            f"the controller at {identity.controller} is not signed by this node's site CA: {exc.verify_message}"
        ) from exc


async def hello(
    session: Session,
    identity: AgentIdentity,
    applied_version: int,
    facts: dict[str, Any],
    observed: dict[str, Any],
) -> dict[str, Any]:
    """Say hello and return the welcome; a connection closed here means our certificate was refused."""
    await session.send(
        messages.make(
            "hello",
            host=identity.host,
            agent_version=__version__,
            applied_version=applied_version,
            facts=facts,
            observed=observed,
        )
    )
    try:
        welcome = await asyncio.wait_for(read_frame(session.reader), HANDSHAKE_TIMEOUT)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise CredentialsRefused(
            f"the controller at {identity.controller} closed the connection at once: it does not accept "
            "this node's certificate (not signed by the site CA, or expired); enroll again"
        ) from exc
    kind = messages.check(welcome, messages.CONTROLLER_TYPES)
    if kind == "error":
        raise _refusal(welcome)
    if kind == "retry":
        raise RetryLater(float(welcome.get("retry_after", 1.0)))
    return welcome


class Backoff:
    """Full-jitter exponential backoff: sleep uniform(0, min(cap, base * 2**attempt))."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base, self.cap, self.attempt, self._sleep = base, cap, 0, sleep

    async def wait(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        await self._sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2)
