"""The agent gateway: accepts agents on one TLS port, keeps their sessions, pushes desired state.

Per connection: admission (admission.py: bounded TLS handshakes in flight, bounded initial
syncs, a fast close or a jittered 'retry' beyond the bounds), TLS handshake (our code, so a
refused certificate is logged with its reason), then either the unauthenticated enrollment
path (no client certificate) or an mTLS session: ``hello`` -> ``welcome`` (+ ``desired`` when
the agent's applied version is not current) -> messages until the connection ends. A session
that resumes with nothing changed costs one store read. Liveness: any frame refreshes the
session (in memory, O(1)); a monitor closes silent sessions and marks hosts offline after a
grace period, or, when many hosts go silent together, raises one alarm and waits
(liveness.py). With protections off (the simulator's baseline) none of this is bounded, every
reconnect gets a full resync, and every silent host is declared offline on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any

from edgecloud.errors import EdgecloudError, ProtocolError
from edgecloud.gateway import enrolling
from edgecloud.gateway.admission import Admission, GatewayStats, Protection
from edgecloud.gateway.liveness import judge
from edgecloud.gateway.sessions import AgentSession
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import peer_common_name
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.reconcile.queueing import KeyedQueue, QueueFull
from edgecloud.services import availability, desired, reports
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, utcnow

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 15.0
MISSED_BEATS = 3  # a host is lost after this many heartbeat intervals of silence
MAX_SYNC_KEYS = 200_000  # hosts waiting for a desired-state push (bounded queue)
STATS_PERIOD = 1.0


class Gateway:
    def __init__(
        self,
        ctx: ServiceContext,
        ca: CertificateAuthority,
        tls: ssl.SSLContext,
        protection: Protection | None = None,
        stats_file: Path | None = None,
    ) -> None:
        self.ctx, self.ca, self.tls = ctx, ca, tls
        self.protection = protection or Protection()
        self.stats = GatewayStats()
        self.admission = Admission(self.protection, self.stats)
        self.stats_file = stats_file
        self.sessions: dict[str, AgentSession] = {}
        self.interval = ctx.settings.heartbeat_interval
        self._sync: KeyedQueue[str] = KeyedQueue(
            self._sync_host, name="host-sync", concurrency=32, max_keys=MAX_SYNC_KEYS
        )
        self._gone_since: dict[str, float] = {}
        self._known: dict[str, str] = {}  # host -> digest of facts, recorded online in the store
        self._observed: dict[str, str] = {}  # host -> digest of the last observed report
        self._touched: dict[str, dt.datetime] = {}  # resumed hosts: last hello, written in batches
        self.mass_loss = False
        self._server: asyncio.Server | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port actually bound (``port`` 0 picks a free one)."""
        now = time.monotonic()
        for host_id in await availability.online_host_ids(self.ctx):
            self._gone_since[host_id] = now  # online before we started: prove it again
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096)
        self._monitor = asyncio.create_task(self._watch(), name="gateway-monitor")
        self._stats_task = asyncio.create_task(self._tick(), name="gateway-tick")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in (self._monitor, self._stats_task):
            if task is not None:
                task.cancel()
        for session in list(self.sessions.values()):
            session.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(
            *self._handlers,
            *(t for t in [self._monitor, self._stats_task] if t),
            return_exceptions=True,
        )
        await self._sync.close()
        if self._server is not None:
            await self._server.wait_closed()

    # what the rest of the controller asks -------------------------------------------------
    def host_changed(self, host_id: str) -> None:
        """The host's desired state may have changed: push it if its agent is connected."""
        if host_id in self.sessions:
            self._enqueue_sync(host_id)

    def _enqueue_sync(self, host_id: str) -> None:
        try:
            self._sync.enqueue(host_id)
        except QueueFull:
            # bounded: the host is pushed when its agent next reconnects or changes again
            log.warning("desired-state queue full: host %s not pushed now", host_id)

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
        # nothing may be read before TLS starts (the ClientHello would be lost in the reader's
        # buffer while the connection waits for admission); start_tls resumes reading
        if isinstance(writer.transport, asyncio.ReadTransport):
            writer.transport.pause_reading()
        self.stats.accepted += 1
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        try:
            async with self.admission.handshake() as admitted:
                if not admitted:
                    return  # closed before TLS: the agent backs off with jitter
                if not await self._handshake(writer, peer):
                    return
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

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str) -> bool:
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.stats.handshakes_failed += 1
            log.warning(
                "refused agent connection from %s: TLS handshake failed: %s", peer, _reason(exc)
            )
            return False
        return True

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        name = peer_common_name(writer.get_extra_info("ssl_object"))
        if name is None:
            first = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
            await write_frame(writer, await enrolling.answer(self.ctx, self.ca, first, peer))
            return
        serial = int(writer.get_extra_info("peercert")["serialNumber"], 16)
        hello = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
        async with self.admission.sync() as retry_after:
            if retry_after is not None:
                await write_frame(writer, messages.make("retry", retry_after=retry_after))
                return
            started = await availability.session_start(self.ctx, name, serial)
            if started is None:
                await self._unknown(writer, name, peer)
                return
            if messages.check(hello, messages.AGENT_TYPES) != "hello":
                raise ProtocolError("the first message of a session must be hello")
            session = self._open(started[0], name, writer)
            await self._welcome(session, hello, started[1], started[2])
        await self._session(session, reader)

    async def _unknown(self, writer: asyncio.StreamWriter, name: str, peer: str) -> None:
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

    def _open(self, host_id: str, name: str, writer: asyncio.StreamWriter) -> AgentSession:
        old = self.sessions.get(host_id)
        if old is not None:
            old.close()
        session = AgentSession(host_id, name, writer)
        self.sessions[host_id] = session
        self._gone_since.pop(host_id, None)
        self.stats.sessions_started += 1
        return session

    async def _session(self, session: AgentSession, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                session.last_seen = time.monotonic()
                self.stats.frames_in += 1
                await self._dispatch(session, message)
        finally:
            self._closed(session)

    def _closed(self, session: AgentSession) -> None:
        session.close()
        if self.sessions.get(session.host_id) is session:
            del self.sessions[session.host_id]
            self._gone_since[session.host_id] = time.monotonic()
            log.info("host %s disconnected", session.host_name)

    async def _welcome(
        self, session: AgentSession, hello: dict[str, Any], current: int, availability_now: str
    ) -> None:
        try:
            await self._greet(session, hello, current, availability_now)
        except BaseException:
            self._closed(session)
            raise

    async def _greet(
        self, session: AgentSession, hello: dict[str, Any], current: int, availability_now: str
    ) -> None:
        protect = self.protection.enabled
        facts = hello.get("facts", {})
        digest = _digest(facts)
        known = availability_now == "online" and self._known.get(session.host_id) == digest
        if protect and known:
            self._touched[session.host_id] = utcnow()  # last_seen_at, in the next batch
        else:
            await availability.host_online(self.ctx, session.host_id, facts)
            self._known[session.host_id] = digest
        applied = int(hello.get("applied_version", 0))
        session.applied_version = applied
        # resume by version: nothing is pushed when the agent already applied the current one;
        # without protections every reconnect gets a full resync (the baseline)
        in_sync = applied == current and protect
        session.sent_version = applied if in_sync else -1
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
        observed = hello.get("observed")
        if observed:
            seen = _digest(observed)
            if not (protect and in_sync and self._observed.get(session.host_id) == seen):
                await reports.record_observed(self.ctx, session.host_id, observed)
                self._observed[session.host_id] = seen
        if in_sync:
            self.stats.resumed_in_sync += 1
        else:
            self._enqueue_sync(session.host_id)

    async def _dispatch(self, session: AgentSession, message: dict[str, Any]) -> None:
        kind = messages.check(message, messages.AGENT_TYPES)
        if kind == "hb":
            self._beat(message)
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
            self._observed[session.host_id] = _digest(message)
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
        self.stats.full_syncs += 1
        await session.send(messages.make("desired", version=spec["version"], spec=spec))

    # liveness ----------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval / 2, 5.0))
            try:
                await self._check_liveness()
            except Exception:
                log.exception("host liveness check failed; retrying")

    def _beat(self, message: dict[str, Any]) -> None:
        """O(1): count it and measure its lag (agents stamp their wall clock; same machine
        in the simulator, only indicative across machines)."""
        stats = self.stats
        stats.heartbeats += 1
        sent = message.get("ts")
        if isinstance(sent, int | float):
            lag = time.time() - sent
            stats.hb_lag_max = max(stats.hb_lag_max, lag)
            stats.hb_lag_max_recent = max(stats.hb_lag_max_recent, lag)
            if lag > self.interval:
                stats.hb_late += 1

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
        total = len(self.sessions) + len(self._gone_since)
        verdict = judge(now, self._gone_since, total, limit, self.protection)
        await self._mass_loss(verdict.mass_loss, len(self._gone_since), total)
        if verdict.offline:
            for host_id in verdict.offline:
                del self._gone_since[host_id]
                self._known.pop(host_id, None)
            names = await availability.hosts_offline(
                self.ctx, verdict.offline, f"no connection from the host's agent for {limit:.0f} s"
            )
            self.stats.hosts_marked_offline += len(names)
            if names:
                log.warning("hosts offline: %d (%s)", len(names), ", ".join(names[:20]))

    async def _mass_loss(self, active: bool, missing: int, total: int) -> None:
        if active and not self.mass_loss:
            log.warning("multi-host loss: %d of %d hosts missing; holding off", missing, total)
            self.stats.mass_loss_events += 1
            await availability.mass_loss(self.ctx, missing, total, self.protection.mass_loss_grace)
        elif self.mass_loss and not active:
            log.warning("multi-host loss over: %d of %d hosts missing", missing, total)
            await availability.mass_loss_over(self.ctx, f"{missing} of {total} hosts missing")
        self.mass_loss = active

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD)
            try:
                if self._touched:
                    touched, self._touched = self._touched, {}
                    await availability.seen(self.ctx, touched)
                if self.stats_file is not None:
                    self._write_stats(self.stats_file)
            except Exception:
                log.exception("gateway housekeeping failed; retrying")

    def _write_stats(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        data = self.stats.as_dict()
        data.update(
            time=time.time(),
            sessions=len(self.sessions),
            missing=len(self._gone_since),
            handshake_waiting=self.admission.waiting,
            sync_waiting=self.admission.sync_waiting,
            sync_pending=self._sync.pending,
            mass_loss=self.mass_loss,
            in_sync=sum(1 for x in self.sessions.values() if x.applied_version == x.sent_version),
        )
        self.stats.hb_lag_max_recent = 0.0
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data))
            tmp.replace(path)


def _digest(value: Any) -> str:
    return hashlib.blake2b(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), digest_size=12
    ).hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
