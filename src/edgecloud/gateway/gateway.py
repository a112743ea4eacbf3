"""The agent gateway: accepts agents on one TLS port, keeps their sessions, pushes desired state.

Per connection: admission (admission.py: a connection is accepted only when a TLS handshake
slot is free, so the kernel's accept queue is the wait line; bounded initial syncs with a
jittered 'retry' beyond), TLS handshake (our code, so a refused certificate is logged with its
reason), then either the unauthenticated enrollment path (no client certificate) or an mTLS
session: ``hello`` -> ``welcome`` (+ ``desired`` when the agent's applied version is not
current) -> messages until the connection ends. Store work of hellos and observed reports is
coalesced over many hosts (batching.py): a session that resumes with nothing changed costs a
share of one batched read; a new one, shares of batched writes. Liveness: any frame refreshes the
session (in memory, O(1)); a monitor closes silent sessions and marks hosts offline after a
grace period, or, when many hosts go silent together, raises one alarm and waits
(liveness.py). With protections off (the simulator's baseline) none of this is bounded, every
reconnect gets a full resync, and every silent host is declared offline on its own.
With several controllers on one store only the leader's gateway judges (``judging``), counting
hosts whose agents are connected to another controller as present (presence.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from edgecloud import __version__
from edgecloud.errors import EdgecloudError, NotConnected, ProtocolError
from edgecloud.fm.catalogue import HOST_FENCED
from edgecloud.gateway import enrolling, renewing
from edgecloud.gateway.admission import GatewayStats, Protection
from edgecloud.gateway.batching import Batcher
from edgecloud.gateway.image_serving import ImageServing, TransferLimits
from edgecloud.gateway.listener import TlsListener, common_name
from edgecloud.gateway.liveness import judge
from edgecloud.gateway.presence import Announcement, Announcer, Presence
from edgecloud.gateway.revoking import Revocation
from edgecloud.gateway.sessions import AgentSession
from edgecloud.gateway.steering import Steering
from edgecloud.gateway.validating import MessageGuard
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.protocol import desired as desired_wire
from edgecloud.protocol import messages, schemas
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.protocol.schemas import InstanceReport
from edgecloud.protocol.welcome import Welcome
from edgecloud.reconcile.queueing import KeyedQueue, QueueFull
from edgecloud.services import availability, desired, recovery, reports
from edgecloud.services.context import ChainSteer, ServiceContext
from edgecloud.store.database import transaction, unreachable
from edgecloud.store.models import Host, utcnow

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 15.0  # the first frame (hello, enrollment request) after TLS
MISSED_BEATS = 3  # default of SiteSettings.heartbeat_misses (silent intervals: host lost)
MAX_SYNC_KEYS = 200_000  # hosts waiting for a desired-state push (bounded queue)
STATS_PERIOD = 1.0
# a hello while the store is unreachable: dial again after this long (jittered), seconds; a
# database failover takes about 10 s (docs/architecture.md, Database redundancy)
STORE_RETRY = (0.5, 1.5)


Start = tuple[str, int, str]  # host id, desired version, availability


class Gateway:
    def __init__(
        self,
        ctx: ServiceContext,
        ca: CertificateAuthority,
        tls: ssl.SSLContext,
        protection: Protection | None = None,
        stats_file: Path | None = None,
        image_transfers: TransferLimits | None = None,
    ) -> None:
        self.ctx, self.ca, self.tls = ctx, ca, tls
        self.protection = protection or Protection()
        self.stats = GatewayStats()
        self.listener = TlsListener(lambda: self.tls, self._serve, self.protection, self.stats)
        self.admission, self.preauth = self.listener.admission, self.listener.preauth
        self.guard = MessageGuard(ctx)
        self.stats_file = stats_file
        self.sessions: dict[str, AgentSession] = {}
        # every live controller's gateway, this one first (controller/membership.py): the
        # welcome names them when there are several, so agents learn new ones
        self.controllers: tuple[str, ...] = ()
        self.image_serving = ImageServing(ctx, image_transfers)
        self.steering = Steering(ctx)  # chain steering pushed ahead of snapshots (steering.py)
        self.interval = ctx.settings.heartbeat_interval
        self.misses = ctx.settings.heartbeat_misses  # silent intervals before a host is lost
        self._sync: KeyedQueue[str] = KeyedQueue(
            self._sync_host, name="host-sync", concurrency=32, max_keys=MAX_SYNC_KEYS
        )
        self._gone_since: dict[str, float] = {}
        self._known: dict[str, str] = {}  # host -> digest of facts, recorded online in the store
        self._observed: dict[str, str] = {}  # host -> digest of the last observed report
        self._touched: dict[str, dt.datetime] = {}  # resumed hosts: last hello, written in batches
        self._starts: Batcher[tuple[str, int], None, Start | None] = Batcher(
            self._load_starts, "session-starts", delay=0.02
        )
        self._online: Batcher[str, availability.Greeting, None] = Batcher(
            self._write_online,
            "hosts-online",
            delay=0.1,
            isolate=True,
            on_poison=self.guard.poisoned,
        )
        self._reports: Batcher[str, dict[str, InstanceReport], None] = Batcher(
            self._write_observed,
            "observed-reports",
            delay=0.1,
            isolate=True,
            on_poison=self.guard.poisoned,
        )
        self._applied: Batcher[str, tuple[int, str | None], None] = Batcher(
            self._write_applied,
            "applied-versions",
            delay=0.1,
            isolate=True,
            on_poison=self.guard.poisoned,
        )
        # the gateway's store writers take turns (SQLite has one write lock; writers that wait
        # for it past busy_timeout fail, so they wait here instead)
        self._writing = asyncio.Lock()
        self.mass_loss = False
        self._caught: set[str] = set()  # missing during a mass event: they keep its grace
        # who writes the liveness verdicts (hosts offline, mass loss): this context, or nobody
        # while another controller leads the site (controller/leader_work.py sets it)
        self.judging: ServiceContext | None = ctx
        # several controllers: hosts connected to the others (presence.py), and how this one
        # tells them which hosts are connected here (None: a site with one controller)
        self.elsewhere = Presence()
        self.announcer = Announcer()
        self.announce: Callable[[Announcement], None] | None = None
        # whether this controller may answer its agents' heartbeats now, and how long after a
        # holder's last word it may still have answered them (controller/vouching.py; a site
        # with one controller: always, and no extra time)
        self.vouches: Callable[[], str | None] = lambda: "store"  # "store", "witness" or None
        self.vouch_grace = 0.0
        self._monitor: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self.revocation = Revocation(ctx, self.sessions)
        self._sweep: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port actually bound (``port`` 0 picks a free one)."""
        now = time.monotonic()
        for host_id in await availability.online_host_ids(self.ctx):
            self._gone_since[host_id] = now  # online before we started: prove it again
        bound = await self.listener.start(host, port)
        self._monitor = asyncio.create_task(self._watch(), name="gateway-monitor")
        self._stats_task = asyncio.create_task(self._tick(), name="gateway-tick")
        self._sweep = asyncio.create_task(self.revocation.sweep_forever(), name="gateway-revoke")
        return bound

    async def stop(self) -> None:
        tasks = [t for t in (self._monitor, self._stats_task, self._sweep) if t is not None]
        for task in tasks:
            task.cancel()
        for session in list(self.sessions.values()):
            session.close()
        await self.listener.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._sync.close()
        await self.steering.close()
        await self.revocation.close()
        for batcher in (self._starts, self._online, self._applied, self._reports):
            await batcher.close()

    # what the rest of the controller asks -------------------------------------------------
    def host_changed(self, host_id: str) -> None:
        """The host may have changed: push its desired state if its agent is connected, and
        close the session if its certificate was revoked (deleted, re-tokened: revoking.py)."""
        if host_id in self.sessions:
            self._enqueue_sync(host_id)
            self.revocation.suspect(host_id)

    def steering_changed(self, host_id: str, change: ChainSteer | None = None) -> None:
        """A chain path change altered the host's flows: send them now, ahead of the snapshot
        (``host_changed`` follows; ``change``: as committed, else the table is read;
        steering.py)."""
        session = self.sessions.get(host_id)
        if session is not None:
            self.steering.push(session, change)

    def presence_elsewhere(self, holder: str, held: str | None, released: str | None) -> None:
        """Another controller (``holder``) spoke: its heartbeat, a host's agent now connected
        there (``held``) or gone from there (``released``); presence.py."""
        now = time.monotonic()
        self.elsewhere.holding(holder, now)
        if held is not None and held not in self.sessions:  # else: its session is here now
            self.elsewhere.held(holder, held, now)
            self._gone_since.pop(held, None)
            self._caught.discard(held)
        if released is not None:
            self._missing(self.elsewhere.released(holder, released, now))

    def listed_elsewhere(self, holder: str) -> None:
        """Another controller's whole list of hosts has arrived (presence.py)."""
        self._missing(self.elsewhere.listed(holder, time.monotonic()))

    def _missing(self, gone: dict[str, float]) -> None:
        for host_id, since in gone.items():
            if host_id not in self.sessions:
                self._gone_since.setdefault(host_id, since)

    def new_term(self) -> None:
        """This process begins to lead the site (controller/leader_work.py): every host not
        connected here gets the liveness limit from now, as at the gateway's start. What it
        heard before may be stale: a term often begins after the store was unreachable (a
        database failover), when other controllers' announcements were lost and an agent
        may have reconnected to one of them; judging by the old times would declare such a
        host failed at once, and could move its VNFs while they still run (issue 11 (b))."""
        now = time.monotonic()
        self.elsewhere.restamp(now)
        for host_id, since in self._gone_since.items():
            self._gone_since[host_id] = max(since, now)

    def resync_all(self) -> None:
        """Check every connected host's desired version again (after change notices may have
        been lost: store/change_feed.py ``on_resume``), and tell the others every host held
        here at the next check."""
        self.announcer.resend_all()
        for host_id in list(self.sessions):
            self._enqueue_sync(host_id)

    def _enqueue_sync(self, host_id: str) -> None:
        try:
            self._sync.enqueue(host_id)
        except QueueFull:
            # bounded: the host is pushed when its agent next reconnects or changes again
            log.warning("desired-state queue full: host %s not pushed now", host_id)

    def request_renewals(self) -> None:
        """The signing CA changed (a rotation began): every connected node renews now."""
        for session in list(self.sessions.values()):
            self._background(renewing.ask(session))

    def _background(self, coro: Any) -> None:
        self.listener.background(coro)

    def set_controllers(self, found: tuple[str, ...]) -> None:
        """Every live controller's gateway, this one first (controller/membership.py, every
        second); when the list changes, agents that follow are told at once."""
        if found == self.controllers:
            return
        self.controllers = found
        if len(found) < 2:
            return
        message = messages.make("controllers", controllers=list(found))
        for session in list(self.sessions.values()):
            if session.follows:
                self._background(self._tell(session, message))

    @staticmethod
    async def _tell(session: AgentSession, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await session.send(message)

    async def call(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        session = self.sessions.get(host_id)
        if session is None:
            raise NotConnected("the host's agent is not connected")
        return await session.request(op, args, timeout)

    # connections (listener.py accepts them and does the TLS handshake) --------------------
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        self.stats.tls_resumed += bool(writer.get_extra_info("ssl_object").session_reused)
        cert = writer.get_extra_info("peercert") or {}  # decoded once by asyncio; empty: none
        name = common_name(cert)
        if name is None:  # anonymous: one small request, soon (preauth.py)
            limit, timeout = self.protection.preauth_frame, self.protection.preauth_timeout
            first = await asyncio.wait_for(read_frame(reader, limit), timeout)
            await write_frame(writer, await enrolling.answer(self.ctx, self.ca, first, peer))
            return
        serial = int(cert["serialNumber"], 16)
        hello = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
        if hello.get("t") == "fetch_image":  # a node fetching an image: its own connection
            schemas.validate(hello, messages.check(hello, messages.AGENT_TYPES))
            if await self._starts.submit((name, serial), None) is None:
                await self._unknown(writer, name, peer)
            else:
                await self.image_serving.serve(hello, writer, name)
            return
        async with self.admission.sync() as retry_after:
            if retry_after is not None:
                await write_frame(writer, messages.make("retry", retry_after=retry_after))
                return
            try:
                started = await self._starts.submit((name, serial), None)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                await self._store_away(writer, name)
                return
            if started is None:
                await self._unknown(writer, name, peer)
                return
            protocol = await self.guard.hello(started[0], name, hello)  # checked, negotiated
            session = self._open(started[0], name, writer, serial)
            session.speak(hello, protocol)
            await self._welcome(session, hello, started[1], started[2])
            if renewing.outdated(self.ca, writer):  # a CA rotation is in progress
                self._background(renewing.ask(session))
        await self._session(session, reader)

    async def _store_away(self, writer: asyncio.StreamWriter, name: str) -> None:
        """The store cannot be reached (a database failover, issue 11 (b)): no session can
        start, so say ``retry`` soon. Closing without a word would look to the agent like a
        refused certificate, which it takes as final after a few times (agent/connection.py
        ``CLOSES_BEFORE_REFUSED``) and stops; a ``retry`` is not contact for its fence
        (agent/fencing.py: only a welcome and what follows is)."""
        delay = random.uniform(*STORE_RETRY)
        log.warning("host %s: no session while the store is unreachable; retry in %.1f s",
                    name, delay)  # fmt: skip
        await write_frame(writer, messages.make("retry", retry_after=round(delay, 2)))

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

    def _open(
        self, host_id: str, name: str, writer: asyncio.StreamWriter, serial: int
    ) -> AgentSession:
        old = self.sessions.get(host_id)
        if old is not None:
            old.close()
        session = AgentSession(host_id, name, writer, serial)
        self.sessions[host_id] = session
        self._gone_since.pop(host_id, None)
        self._caught.discard(host_id)
        self.elsewhere.forget(host_id)
        self.stats.sessions_started += 1
        return session

    async def _session(self, session: AgentSession, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                session.last_seen = time.monotonic()
                self.stats.frames_in += 1
                await self._dispatch(session, message)
        except EdgecloudError as exc:  # say why before closing (the agent logs it)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.send(messages.error("protocol", str(exc))), 1.0)
            raise
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
        greeting = availability.Greeting(facts, session.release, session.protocol)
        digest = _digest([facts, session.release, session.protocol])
        known = availability_now == "online" and self._known.get(session.host_id) == digest
        if protect and known:
            self._touched[session.host_id] = utcnow()  # last_seen_at, in the next batch
        else:
            self._online.put(session.host_id, greeting)  # written with other hosts' hellos
            self._known[session.host_id] = digest
        applied = int(hello.get("applied_version", 0))
        session.applied_version = applied
        # resume by version: nothing is pushed when the agent already applied the current one;
        # without protections every reconnect gets a full resync (the baseline)
        in_sync = applied == current and protect
        session.sent_version = applied if in_sync else -1
        fencing = self._fence_after()
        session.echo = fencing is not None and bool(facts.get("fences"))
        welcome = Welcome(
            in_sync=in_sync,
            desired_version=current,
            heartbeat_interval=self.interval,
            protocol=session.protocol,  # negotiated (protocol/messages.py)
            release=__version__,
            renew=True,  # this controller signs renewals (an N-1 agent ignores it)
            controllers=list(self.controllers) if len(self.controllers) > 1 else None,
            fence_after=fencing,
        )
        await session.send(welcome.frame())
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
                part = schemas.parsed(schemas.ObservedPart, observed, "hello: observed")
                self._reports.put(session.host_id, part.instances)
                self._observed[session.host_id] = seen
        if in_sync:
            self.stats.resumed_in_sync += 1
        else:
            self._enqueue_sync(session.host_id)

    async def _echo(self, session: AgentSession, beat: dict[str, Any]) -> None:
        """Answer a heartbeat: its agent counts the controller's frames (agent/fencing.py).
        Not while this controller cannot say that no leader judges the host without hearing of
        it (controller/vouching.py). An agent that fenced meanwhile (it said so: alarm 200.040)
        gets no answer but the end of its session once the store answers this controller
        again: it says hello again, so its host is online again (the leader may have judged it
        failed) and it gets a fresh snapshot, which lifts its fence."""
        basis = self.vouches()
        if basis is None:
            return
        if session.fenced and basis == "store":
            log.warning(
                "host %s fenced its VNFs while this controller could not vouch for it: "
                "closing its session (it says hello again)",
                session.host_name,
            )
            session.abort()
            return
        self.stats.echoes += 1
        await session.send(messages.make("hb", seq=beat.get("seq", 0)))

    def answer_all(self) -> None:
        """This controller may vouch again (controller/vouching.py): answer every agent that
        fences now, not at its next heartbeat (an interval away, and its fence may be near)."""
        beat = messages.make("hb", seq=0)
        for session in list(self.sessions.values()):
            if session.echo and not session.fenced:
                self._background(self._tell(session, beat))

    async def _dispatch(self, session: AgentSession, message: dict[str, Any]) -> None:
        kind = messages.check(message, messages.AGENT_TYPES)
        admitted = await self.guard.admit(session, message, kind)
        if admitted is None:
            return  # refused for this host alone (validating.py)
        if kind == "hb":
            self._beat(message)
            if session.echo:
                await self._echo(session, message)
            return
        if kind == "res":
            session.resolve(message)
        elif kind in ("ack", "nack"):
            version = int(message.get("version", 0))
            error = None if kind == "ack" else str(message.get("error", "unknown error"))
            if error is None:
                session.applied_version = max(session.applied_version, version)
            self._applied.put(session.host_id, (version, error))  # written with other acks
        elif kind == "observed":
            self._observed[session.host_id] = _digest(message)
            self._reports.put(session.host_id, cast(schemas.Observed, admitted).instances)
        elif kind == "alarm":
            if message.get("alarm_id") == HOST_FENCED and message.get("action") == "raise":
                session.fenced = True  # its recoverable VNFs are stopped (agent/fencing.py)
            self._background(self._record_alarm(session, message))
        elif kind == "renew":
            self._background(self._renew(session, message))
        else:
            raise ProtocolError(f"unexpected {kind!r} in an established session")

    async def _record_alarm(self, session: AgentSession, message: dict[str, Any]) -> None:
        """Write one host alarm, in the order its agent sent them, beside the session's reader:
        a store that stalls must not stop this controller reading (and answering) the host's
        heartbeats, or it would find the host silent and close its session. A failed write
        closes the session: its agent says hello again with the alarms it holds raised."""
        async with session.alarm_turn:
            try:
                await reports.record_host_alarm(
                    self.ctx,
                    session.host_id,
                    str(message.get("action")),
                    str(message.get("alarm_id")),
                    str(message.get("reason", "")),
                )
            except Exception as exc:
                log.warning("host %s: its alarm was not written: %s", session.host_name, exc)
                session.abort()

    async def _renew(self, session: AgentSession, message: dict[str, Any]) -> None:
        """Answer a renewal beside the session's reader (it signs and writes to the store)."""
        try:
            answer = await renewing.answer(self.ctx, self.ca, session, message)
        except Exception as exc:  # the store is busy or down: the agent tries again later
            log.warning("host %s: its renewal failed: %s", session.host_name, exc)
            answer = messages.make("renewed", error=f"the controller could not renew now: {exc}")
        with contextlib.suppress(OSError, ConnectionError):
            await session.send(answer)

    # batched store work (batching.py) -----------------------------------------------------
    async def _load_starts(
        self, wanted: dict[tuple[str, int], None]
    ) -> dict[tuple[str, int], Start | None]:
        return await availability.session_starts(self.ctx, list(wanted))

    async def _write_online(self, hellos: dict[str, availability.Greeting]) -> dict[str, None]:
        try:
            async with self._writing:
                await availability.hosts_online(self.ctx, hellos)
        except Exception:
            for host_id in hellos:
                self._known.pop(host_id, None)  # written again at the next hello
            raise
        return {}

    async def _write_applied(self, results: dict[str, tuple[int, str | None]]) -> dict[str, None]:
        async with self._writing:
            await reports.record_applied_many(self.ctx, results)
        return {}

    async def _write_observed(
        self, observed: dict[str, dict[str, InstanceReport]]
    ) -> dict[str, None]:
        try:
            async with self._writing:
                await reports.record_observed_many(self.ctx, observed)
        except Exception:
            for host_id in observed:
                self._observed.pop(host_id, None)
            raise
        return {}

    # desired state -----------------------------------------------------------------------
    async def _sync_host(self, host_id: str) -> None:
        session = self.sessions.get(host_id)
        if session is None:
            return
        await self.steering.pending(host_id)  # a chain's steer goes out first (steering.py)
        async with transaction(self.ctx.sessions) as s:
            host = await s.get(Host, host_id)
            if host is None or host.desired_version == session.sent_version:
                return
            state = await desired.snapshot(s, host)
        session.sent_version = state.version
        self.stats.full_syncs += 1
        spec = desired_wire.to_wire(state)  # serialised once per sync
        with contextlib.suppress(ConnectionError):  # gone: pushed again when it reconnects
            await session.send(messages.make("desired", version=state.version, spec=spec))

    # liveness ----------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval / 2, 5.0))
            try:
                await self._check_liveness()
            except Exception:
                log.exception("host liveness check failed; retrying")

    def _fence_after(self) -> float | None:
        """How long an agent may go without hearing from the controllers before it fences its
        recoverable VNFs (agent/fencing.py): one interval less than the liveness limit, so
        it has fenced before any controller can declare its host failed (docs/architecture.md,
        "Host failure and recovery"). None: the site does not recover hosts."""
        if not self.ctx.settings.host_recovery:
            return None
        return self.interval * (self.misses - 1)

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
        now, limit = time.monotonic(), self.interval * self.misses
        for session in list(self.sessions.values()):
            if now - session.last_seen > limit:
                log.warning(
                    "host %s silent for %.0f s: closing its session",
                    session.host_name,
                    now - session.last_seen,
                )
                session.abort()
                self._closed(session)  # missing from now on, even if its reader lingers
        if self.announce is not None:
            self.announce(self.announcer.next(self.sessions))
        judging = self.judging
        if judging is None:
            return  # another controller leads the site and judges
        # a silent holder may have answered its agents for vouch_grace after its last word
        self._missing(self.elsewhere.expired(now, limit + self.vouch_grace))
        total = len(self.sessions) + len(self._gone_since) + len(self.elsewhere)
        verdict = judge(now, self._gone_since, total, limit, self.protection, self._caught)
        if verdict.together:
            self._caught.update(self._gone_since)
        await self._mass_loss(verdict.mass_loss, len(self._gone_since), total, judging)
        # hosts whose agent came back while we were writing the alarm are not lost
        offline = [h for h in verdict.offline if h in self._gone_since]
        # hosts lost with many others are not evacuated (one alarm, no recovery storm)
        alone = [h for h in offline if h not in self._caught and not self.mass_loss]
        if offline:
            for host_id in offline:
                del self._gone_since[host_id]
                self._caught.discard(host_id)
                self._known.pop(host_id, None)
            async with self._writing:
                names = await availability.hosts_offline(
                    judging, offline, f"no connection from the host's agent for {limit:.0f} s"
                )
            self.stats.hosts_marked_offline += len(names)
            if names:
                log.warning("hosts offline: %d (%s)", len(names), ", ".join(names[:20]))
            if judging.settings.host_recovery and alone:
                await recovery.recover_hosts(
                    judging, alone, f"no connection from its agent for {limit:g} s"
                )

    async def _mass_loss(self, active: bool, missing: int, total: int, ctx: ServiceContext) -> None:
        if active and not self.mass_loss:
            log.warning("multi-host loss: %d of %d hosts missing; holding off", missing, total)
            self.stats.mass_loss_events += 1
            await availability.mass_loss(ctx, missing, total, self.protection.mass_loss_grace)
        elif self.mass_loss and not active:
            log.warning("multi-host loss over: %d of %d hosts missing", missing, total)
            await availability.mass_loss_over(ctx, f"{missing} of {total} hosts missing")
        self.mass_loss = active

    async def _tick(self) -> None:
        """Once a period: the stats file, and the resumed hosts' last_seen_at in one batch.
        The batch waits for the store's write turn in its own task, so a long turn (thousands
        of observed reports after a restart) never holds back the stats."""
        seen: asyncio.Task[None] | None = None
        while True:
            await self._sleep_measuring_lag(STATS_PERIOD)
            if self.stats_file is not None:
                try:
                    self._write_stats(self.stats_file)
                except OSError as exc:
                    log.warning("writing the gateway stats failed: %s", exc)
            if self._touched and (seen is None or seen.done()):
                touched, self._touched = self._touched, {}
                seen = self.listener.background(self._write_seen(touched))

    async def _write_seen(self, touched: dict[str, dt.datetime]) -> None:
        try:
            async with self._writing:
                await availability.seen(self.ctx, touched)
        except Exception:
            log.exception("recording when %d hosts were last seen failed; retrying", len(touched))
            for host_id, when in touched.items():  # newer hellos win
                self._touched.setdefault(host_id, when)

    async def _sleep_measuring_lag(self, period: float) -> None:
        """Sleep ``period`` in short steps, recording how late the event loop wakes us (what
        every coroutine, API requests included, waits for on each step of its work)."""
        steps = 10
        for _ in range(steps):
            due = time.monotonic() + period / steps
            await asyncio.sleep(period / steps)
            lag = time.monotonic() - due
            self.stats.loop_lag_max_recent = max(self.stats.loop_lag_max_recent, lag)

    def _write_stats(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        data = self.stats.as_dict()
        data.update(
            time=time.time(),
            sessions=len(self.sessions),
            missing=len(self._gone_since),
            handshakes_in_flight=self.admission.in_flight,
            image_transfers=dataclasses.asdict(self.image_serving.stats),
            writes_pending=self._online.pending + self._applied.pending + self._reports.pending,
            sync_waiting=self.admission.sync_waiting,
            sync_pending=self._sync.pending,
            mass_loss=self.mass_loss,
            in_sync=sum(1 for x in self.sessions.values() if x.applied_version == x.sent_version),
            preauth=self.preauth.total,  # preauth.py: held now, refused and evicted since start
            preauth_refused=self.preauth.refused,
            preauth_evicted=self.preauth.evicted,
        )
        self.stats.hb_lag_max_recent = 0.0
        self.stats.loop_lag_max_recent = 0.0
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data))
            tmp.replace(path)


def _digest(value: Any) -> str:
    return hashlib.blake2b(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), digest_size=12
    ).hexdigest()
