"""The agent's one mTLS session with the controller: hello, desired state, reports, requests.

Reconnects forever with full-jitter exponential backoff; a refused certificate is fatal (the
node must be enrolled again), everything else is retried. Every wait has a limit: the TCP
connect and TLS handshake together (``HANDSHAKE_TIMEOUT``), the welcome, and unacknowledged
data on an established session (``TCP_USER_TIMEOUT``, so a controller that vanished without a
FIN is noticed). A controller under load answers ``retry {retry_after}`` instead of a welcome
(admission control): the agent waits that long. A connection closed right after hello is how
TLS 1.3 reports a refused client certificate, but also what a controller that stops or
crashes at that moment looks like, so it is fatal only after ``CLOSES_BEFORE_REFUSED``
consecutive times (runner.py counts). Desired-state snapshots are applied one at a time (the
newest wins) in the background, so requests such as console reads are answered while a
snapshot is being applied; each snapshot's chain steering, and that of a ``steer`` or
``steer_chain`` message (a chain path change sent ahead of its snapshot), is steered at once in
a task of its own. A reconnect
offers the last TLS session (``ResumingContext``), so after a storm neither side checks
certificates or signs again (about 1 ms less on each side per connection with OpenSSL 3.0;
the controller still checks the certificate's serial).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edgecloud import __version__
from edgecloud.agent.identity import (
    AgentIdentity,
    current_addresses,
    learn_controllers,
)
from edgecloud.errors import EdgecloudError, EnrollmentError, ProtocolError
from edgecloud.pki.identity import client_ssl_context
from edgecloud.pki.joining import split_address
from edgecloud.protocol import desired, messages, schemas, steering
from edgecloud.protocol.desired import DesiredState
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.protocol.welcome import Welcome

log = logging.getLogger(__name__)
FATAL_CODES = {"unknown_certificate"}
HANDSHAKE_TIMEOUT = 20.0
TCP_USER_TIMEOUT = 60.0  # unacknowledged data for this long ends the session
CLOSES_BEFORE_REFUSED = 3
MIN_DIAL = 5.0  # seconds each address gets at least when several are dialled in turn


class CredentialsRefused(EnrollmentError):
    """The controller does not accept this node's certificate: enroll again."""


class ClosedAtHello(EdgecloudError):
    """The controller closed the connection before its welcome: a refused certificate (TLS
    1.3 reports it so), or a controller that stopped at that moment."""


class RetryLater(EdgecloudError):
    """The controller is busy admitting other nodes: connect again after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"the controller is busy: retry in {delay:.1f} s")
        self.delay = delay


class ResumingContext(ssl.SSLContext):
    """The agent's client context: offers the last TLS session it was given (asyncio has no
    way to pass one). A controller that no longer knows the session (restarted) just does a
    full handshake."""

    last_session: ssl.SSLSession | None = None
    last_address: str | None = None  # the controller that answered last (dialled first)

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming, outgoing, server_side, server_hostname, session or self.last_session
        )


def agent_context(identity: AgentIdentity) -> ResumingContext:
    """``client_ssl_context`` with the site CA and the node's certificate, resuming."""
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the controller is known by its CA, not its hostname
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=identity.ca)
    context.load_cert_chain(certfile=identity.cert, keyfile=identity.key)
    return context


def remember_session(writer: asyncio.StreamWriter, context: ssl.SSLContext) -> None:
    """Keep the session of an established connection for the next connect (after the first
    message from the controller: TLS 1.3 sends its session tickets after the handshake)."""
    ssl_object = writer.get_extra_info("ssl_object")
    if isinstance(context, ResumingContext) and ssl_object is not None and ssl_object.session:
        context.last_session = ssl_object.session


class Session:
    """One connected session; ``run`` returns when the connection ends."""

    def __init__(
        self, agent: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.agent, self.reader, self.writer = agent, reader, writer
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        # the last snapshot received and not yet applied: (version, snapshot or why not)
        self._latest: tuple[int, DesiredState | ProtocolError] | None = None
        self._applying: asyncio.Task[None] | None = None
        self._renewal: asyncio.Future[dict[str, Any]] | None = None
        self.protocol = messages.OLDEST_VERSION  # the welcome says what it is (``hello``)

    async def renew(self, csr_pem: bytes, timeout: float) -> dict[str, Any]:
        """Ask the controller to sign a new certificate (renewing.py); its ``renewed`` reply."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._renewal = future
        try:
            await self.send(messages.make("renew", csr=csr_pem.decode()))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._renewal = None

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` framed at the session's protocol version."""
        async with self._lock:
            await write_frame(self.writer, messages.framed(message, self.protocol))

    async def run(self, interval: float) -> None:
        beats = self._spawn(self._heartbeat(interval))
        try:
            while True:
                message = await read_frame(self.reader)
                kind = messages.check(message, messages.CONTROLLER_TYPES)
                if kind == "desired":
                    self._latest = _version, state = _snapshot(message)  # parsed once, here
                    if isinstance(state, DesiredState):
                        # a chain path switch at once: not queued behind an apply or a report
                        # still under way (its own lock; older versions are skipped)
                        self._spawn(self.agent.steer(state.version, state.steering))
                    if self._applying is None or self._applying.done():
                        self._applying = self._spawn(self._apply_latest())
                elif kind == "steer":  # a chain path change ahead of its snapshot
                    self._steer(message)
                elif kind == "steer_chain":  # one chain's change ahead of its snapshot
                    self._steer_chain(message)
                elif kind == "req":
                    self._spawn(self._answer(message))
                elif kind == "renewed":
                    if self._renewal is not None and not self._renewal.done():
                        self._renewal.set_result(message)
                elif kind == "controllers":
                    keep_controllers(self.agent.identity, message.get("controllers"))
                elif kind == "error":
                    raise _refusal(message)
        finally:
            beats.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _steer(self, message: dict[str, Any]) -> None:
        """Steer the flows of a ``steer`` message now (protocol/steering.py). An invalid one
        is ignored: the snapshot of its version follows and carries the same flows."""
        try:
            version, flows = steering.read(message)
        except EdgecloudError as exc:
            log.warning("ignored a steering message: %s", exc)
            return
        self._spawn(self.agent.steer(version, flows))

    def _steer_chain(self, message: dict[str, Any]) -> None:
        """Steer a ``steer_chain`` message's change now (protocol/steering.py); an invalid
        one is ignored like a ``steer``."""
        try:
            version, before, after = steering.read_chain(message)
        except EdgecloudError as exc:
            log.warning("ignored a chain steering message: %s", exc)
            return
        self._spawn(self.agent.steer_chain(version, before, after))

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
            (version, state), self._latest = self._latest, None
            if isinstance(state, ProtocolError):  # nacked: the field it names does not fit
                log.warning("refused the desired state of version %d: %s", version, state)
                errors = [str(state)]
            else:
                try:
                    errors = await self.agent.apply(state)
                except (EdgecloudError, OSError) as exc:
                    errors = [str(exc)]
            if errors:
                error = "; ".join(errors)[: schemas.MAX_ERROR]  # bounded on the wire
                await self.send(messages.make("nack", version=version, error=error))
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


def _snapshot(message: dict[str, Any]) -> tuple[int, DesiredState | ProtocolError]:
    """A ``desired`` message's version and its snapshot read (protocol/desired.py), or the
    ProtocolError that says which field does not fit (what the agent nacks). The version is
    the message's, else the snapshot's, else 0 (a nack must name one)."""
    version = message.get("version")
    try:
        state: DesiredState | ProtocolError = desired.read(message.get("spec"))
    except ProtocolError as exc:
        state = exc
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        version = state.version if isinstance(state, DesiredState) else 0
    return version, state


def _refusal(message: dict[str, Any]) -> EdgecloudError:
    text = f"the controller refused this node: {message.get('message')}"
    if message.get("code") in FATAL_CODES:
        return CredentialsRefused(text)
    return EdgecloudError(text)


def dial_order(addresses: tuple[str, ...], last: str | None, home: str | None = None) -> list[str]:
    """The addresses in the order to dial: from the one that answered last, round the list;
    but a controller at ``home`` (this node's own address: a controller on this node) first.
    On a two-node redundant site each agent then holds its session on its own node's
    controller, which outlives the loss of the OTHER node: a session on the lost node's
    controller could not be replaced until the database has failed over (about 10 s), and
    the agent fences its VNFs long before (docs/architecture.md, "On a redundant site")."""
    order = list(dict.fromkeys(addresses))
    if last in order:
        at = order.index(last)
        order = order[at:] + order[:at]
    if home is not None:
        local = [a for a in order if split_address(a)[0] == home]
        order = local + [a for a in order if a not in local]
    return order


def dial_timeout(count: int) -> float:
    """How long each of ``count`` addresses gets to connect and finish the TLS handshake."""
    return max(MIN_DIAL, HANDSHAKE_TIMEOUT / max(1, count))


async def connect(
    identity: AgentIdentity,
    local_addr: str | None = None,
    context: ssl.SSLContext | None = None,
    home: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the mTLS connection to the first controller that answers (from ``local_addr``
    when given; ``context`` reused when given; a controller at ``home``, this node's own
    address, first); a refused certificate raises CredentialsRefused; none answering raises
    the last OSError/TimeoutError."""
    if context is None:
        context = client_ssl_context(identity.ca, identity.cert, identity.key)
    last = context.last_address if isinstance(context, ResumingContext) else None
    order = dial_order(current_addresses(identity), last, home)
    failure: BaseException | None = None
    for address in order:
        try:
            reader, writer = await _dial(address, context, local_addr, dial_timeout(len(order)))
        except (OSError, TimeoutError) as exc:
            if len(order) > 1:
                log.info("controller at %s does not answer (%s); trying the next", address, exc)
            failure = exc
            continue
        if isinstance(context, ResumingContext):
            context.last_address = address
        return reader, writer
    assert failure is not None
    raise failure


async def _dial(
    address: str, context: ssl.SSLContext, local_addr: str | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = split_address(address)
    source = None if local_addr is None else (local_addr, 0)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host, local_addr=source
            ),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        raise CredentialsRefused(
            f"the controller at {address} is not signed by this node's site CA: {exc.verify_message}"
        ) from exc
    _limit_unacknowledged(writer.get_extra_info("socket"))
    return reader, writer


def _limit_unacknowledged(sock: socket.socket | None) -> None:
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(TCP_USER_TIMEOUT * 1000)
            )


async def hello(
    session: Session,
    identity: AgentIdentity,
    applied_version: int,
    facts: dict[str, Any],
    observed: dict[str, Any],
    release: str = __version__,
) -> Welcome:
    """Say hello (as ``release``: this code's) and return the welcome; ClosedAtHello when the
    connection closes first."""
    await session.send(
        messages.make(
            "hello",  # framed at the oldest version we speak: every controller since reads it
            host=identity.host,
            release=release,
            protocols=sorted(messages.SUPPORTED_VERSIONS),  # the controller picks one
            applied_version=applied_version,
            facts=facts,
            observed=observed,
            # what a version-1 session (a controller of 0.1.0) sends only when asked:
            follows=True,  # tell me when the site's controllers change
            steers=True,  # send chain steering ahead of snapshots (protocol/steering.py)
            chain_steers=True,  # and a chain's change as steer_chain (no store read)
        )
    )
    try:
        welcome = await asyncio.wait_for(read_frame(session.reader), HANDSHAKE_TIMEOUT)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ClosedAtHello(
            f"the controller at {identity.controller} closed the connection at once: it does not accept "
            "this node's certificate (not signed by the site CA, or expired); enroll again"
        ) from exc
    kind = messages.check(welcome, messages.CONTROLLER_TYPES)
    if kind == "error":
        raise _refusal(welcome)
    if kind == "retry":
        raise RetryLater(float(welcome.get("retry_after", 1.0)))
    welcomed = Welcome.read(welcome)
    session.protocol = welcomed.protocol
    keep_controllers(identity, welcomed.controllers)
    return welcomed


def keep_controllers(identity: AgentIdentity, controllers: object) -> None:
    """Remember the site's controllers a welcome or ``controllers`` message named."""
    if not isinstance(controllers, list):
        return
    try:
        if learn_controllers(identity, controllers):
            log.info("the site's controllers are now %s", ", ".join(map(str, controllers)))
    except OSError as exc:
        log.warning("could not keep the site's controller addresses: %s", exc)


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
