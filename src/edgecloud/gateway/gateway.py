"""The agent gateway: accepts agents on one TLS port, keeps their sessions, pushes desired state.

Per connection: TLS handshake (our code, so a refused certificate is logged with its reason),
then either the unauthenticated enrollment path (no client certificate) or an mTLS session:
``hello`` -> ``welcome`` (+ ``desired`` when the agent's applied version is not current) ->
messages until the connection ends. Liveness: any frame refreshes the session (in memory, O(1));
a monitor closes silent sessions and marks hosts offline after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from edgecloud.errors import EdgecloudError, ProtocolError
from edgecloud.gateway import enrolling
from edgecloud.gateway.sessions import AgentSession
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import peer_common_name
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import availability, desired, enrollment, reports
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Host

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 15.0
MISSED_BEATS = 3  # a host is lost after this many heartbeat intervals of silence


class Gateway:
    def __init__(self, ctx: ServiceContext, ca: CertificateAuthority, tls: ssl.SSLContext) -> None:
        self.ctx, self.ca, self.tls = ctx, ca, tls
        self.sessions: dict[str, AgentSession] = {}
        self.interval = ctx.settings.heartbeat_interval
        self._sync: KeyedQueue[str] = KeyedQueue(self._sync_host, name="host-sync")
        self._gone_since: dict[str, float] = {}
        self._server: asyncio.Server | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port actually bound (``port`` 0 picks a free one)."""
        now = time.monotonic()
        for host_id in await availability.online_host_ids(self.ctx):
            self._gone_since[host_id] = now  # online before we started: prove it again
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096)
        self._monitor = asyncio.create_task(self._watch(), name="gateway-monitor")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._monitor is not None:
            self._monitor.cancel()
        for session in list(self.sessions.values()):
            session.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(
            *self._handlers, *(t for t in [self._monitor] if t), return_exceptions=True
        )
        await self._sync.close()
        if self._server is not None:
            await self._server.wait_closed()

    # what the rest of the controller asks -------------------------------------------------
    def host_changed(self, host_id: str) -> None:
        """The host's desired state may have changed: push it if its agent is connected."""
        if host_id in self.sessions:
            self._sync.enqueue(host_id)

    async def call(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        session = self.sessions.get(host_id)
        if session is None:
            raise ProtocolError("the VNF's host is not connected")
        return await session.request(op, args, timeout)

    # connections -------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        try:
            await self._serve(reader, writer, peer)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except EdgecloudError as exc:
            log.warning("closing connection from %s: %s", peer, exc)
            with contextlib.suppress(Exception):
                await write_frame(writer, messages.error("protocol", str(exc)))
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.warning(
                "refused agent connection from %s: TLS handshake failed: %s", peer, _reason(exc)
            )
            return
        name = peer_common_name(writer.get_extra_info("ssl_object"))
        if name is None:
            first = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
            await write_frame(writer, await enrolling.answer(self.ctx, self.ca, first, peer))
            return
        serial = int(writer.get_extra_info("peercert")["serialNumber"], 16)
        host_id = await enrollment.certificate_current(self.ctx, name, serial)
        if host_id is None:
            log.warning(
                "refused host %r from %s: certificate is not the host's current one", name, peer
            )
            await write_frame(
                writer,
                messages.error(
                    "unknown_certificate",
                    f"certificate for host {name!r} is not current on this site "
                    "(host deleted or re-enrolled): enroll again with a new join token",
                ),
            )
            return
        hello = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
        if messages.check(hello, messages.AGENT_TYPES) != "hello":
            raise ProtocolError("the first message of a session must be hello")
        await self._session(host_id, name, hello, reader, writer)

    async def _session(
        self,
        host_id: str,
        name: str,
        hello: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        old = self.sessions.get(host_id)
        if old is not None:
            old.close()
        session = AgentSession(host_id, name, writer)
        self.sessions[host_id] = session
        self._gone_since.pop(host_id, None)
        try:
            await self._welcome(session, hello)
            while True:
                message = await read_frame(reader)
                session.last_seen = time.monotonic()
                await self._dispatch(session, message)
        finally:
            session.close()
            if self.sessions.get(host_id) is session:
                del self.sessions[host_id]
                self._gone_since[host_id] = time.monotonic()
                log.info("host %s disconnected", name)

    async def _welcome(self, session: AgentSession, hello: dict[str, Any]) -> None:
        await availability.host_online(self.ctx, session.host_id, hello.get("facts", {}))
        async with transaction(self.ctx.sessions) as s:
            host = await s.get(Host, session.host_id)
            current = host.desired_version if host else 0
        applied = int(hello.get("applied_version", 0))
        session.applied_version = session.sent_version = applied
        in_sync = applied == current
        await session.send(
            messages.make(
                "welcome",
                in_sync=in_sync,
                desired_version=current,
                heartbeat_interval=self.interval,
            )
        )
        log.info(
            "host %s connected (applied version %d, desired %d)",
            session.host_name,
            applied,
            current,
        )
        if hello.get("observed"):
            await reports.record_observed(self.ctx, session.host_id, hello["observed"])
        if not in_sync:
            self._sync.enqueue(session.host_id)

    async def _dispatch(self, session: AgentSession, message: dict[str, Any]) -> None:
        kind = messages.check(message, messages.AGENT_TYPES)
        if kind == "hb":
            return
        if kind == "res":
            session.resolve(message)
        elif kind in ("ack", "nack"):
            version = int(message.get("version", 0))
            error = None if kind == "ack" else str(message.get("error", "unknown error"))
            if error is None:
                session.applied_version = max(session.applied_version, version)
            await reports.record_applied(self.ctx, session.host_id, version, error)
        elif kind == "observed":
            await reports.record_observed(self.ctx, session.host_id, message)
        elif kind == "alarm":
            await reports.record_host_alarm(
                self.ctx,
                session.host_id,
                str(message.get("action")),
                str(message.get("alarm_id")),
                str(message.get("reason", "")),
            )
        else:
            raise ProtocolError(f"unexpected {kind!r} in an established session")

    # desired state -----------------------------------------------------------------------
    async def _sync_host(self, host_id: str) -> None:
        session = self.sessions.get(host_id)
        if session is None:
            return
        async with transaction(self.ctx.sessions) as s:
            host = await s.get(Host, host_id)
            if host is None or host.desired_version == session.sent_version:
                return
            spec = await desired.snapshot(s, host)
        session.sent_version = spec["version"]
        await session.send(messages.make("desired", version=spec["version"], spec=spec))

    # liveness ----------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval / 2, 5.0))
            try:
                await self._check_liveness()
            except Exception:
                log.exception("host liveness check failed; retrying")

    async def _check_liveness(self) -> None:
        now, limit = time.monotonic(), self.interval * MISSED_BEATS
        for session in list(self.sessions.values()):
            if now - session.last_seen > limit:
                log.warning(
                    "host %s silent for %.0f s: closing its session",
                    session.host_name,
                    now - session.last_seen,
                )
                session.close()
        lost = [h for h, since in self._gone_since.items() if now - since > limit]
        if lost:
            for host_id in lost:
                del self._gone_since[host_id]
            names = await availability.hosts_offline(
                self.ctx, lost, f"no connection from the host's agent for {limit:.0f} s"
            )
            if names:
                log.warning("hosts offline: %s", ", ".join(names))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
