"""Central's site gateway: the one port site controllers dial out to.

The accept loop, pre-auth limits, handshake slots and TLS handshake are the node gateway's
(gateway/listener.py). Without a client certificate a peer may fetch central's CA or enroll a
site with its join token (central/sites.py); with one it is a site session: ``hello`` (its
release, protocol versions and report: protocol/central.py) -> ``welcome``, then ``report``
whenever its summary changes and ``hb`` every interval, each answered. A session silent for
``misses`` intervals is closed; a site without a session for that long is offline (alarm
900.001), cleared at its next hello. What a site should run (central/deployments.py) is pushed
as a whole, versioned snapshot (``desired``) when it changes and at a hello whose applied
version is not current; the site answers ``applied`` with each deployment's result.

The store work of hellos and reports is batched (gateway/batching.py ``Batcher``, as the node
gateway does for its agents): certificate checks, hellos and reports of many sites in one
transaction each, which is what lets a WAN restore (every site saying hello within seconds)
through a SQLite store (sim/site_scenarios.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from edgecloud import __version__
from edgecloud.central import deployments, sites
from edgecloud.errors import EnrollmentError, ProtocolError
from edgecloud.gateway.admission import GatewayStats, Protection
from edgecloud.gateway.batching import Batcher
from edgecloud.gateway.listener import TlsListener, common_name
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.protocol import central as wire
from edgecloud.protocol import messages, schemas
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.store.models import utcnow

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 15.0
SEEN_PERIOD = 10.0  # seconds between writes of the connected sites' last_seen_at


@dataclass
class SiteSession:
    """Central's end of one site's connection."""

    site_id: str
    name: str
    writer: asyncio.StreamWriter
    last_seen: float = field(default_factory=time.monotonic)
    sent_version: int = -1  # the desired version last pushed (or found applied at hello)
    _send: asyncio.Lock = field(default_factory=asyncio.Lock)
    pushing: asyncio.Lock = field(default_factory=asyncio.Lock)  # one snapshot at a time

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send:
            await write_frame(self.writer, message)

    def close(self) -> None:
        self.writer.close()


class SiteGateway:
    def __init__(
        self,
        sessions: sites.Sessions,
        ca: CertificateAuthority,
        tls: ssl.SSLContext,
        heartbeat_interval: float = 10.0,
        misses: int = 3,
        protection: Protection | None = None,
    ) -> None:
        self.store, self.ca, self.tls = sessions, ca, tls
        self.interval, self.misses = heartbeat_interval, misses
        self.protection = protection or Protection()
        self.stats = GatewayStats()
        self.listener = TlsListener(
            lambda: self.tls, self._serve, self.protection, self.stats, peers="site"
        )
        self.sessions: dict[str, SiteSession] = {}
        self._gone_since: dict[str, float] = {}
        self._certs: Batcher[tuple[str, int], None, str] = Batcher(
            lambda batch: sites.current_sites(self.store, batch), "site-certificates"
        )
        self._hellos: Batcher[str, sites.Hello, int] = Batcher(
            lambda batch: sites.sites_online(self.store, batch), "site-hellos"
        )
        self._reports: Batcher[str, dict[str, Any], None] = Batcher(
            self._write_reports, "site-reports", delay=0.5
        )
        self._monitor: asyncio.Task[None] | None = None
        self._seen_at = 0.0

    async def start(self, host: str, port: int) -> int:
        now = time.monotonic()
        for site_id in await sites.online_site_ids(self.store):
            self._gone_since[site_id] = now  # online before central started: prove it again
        bound = await self.listener.start(host, port)
        self._monitor = asyncio.create_task(self._watch(), name="site-liveness")
        return bound

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for session in list(self.sessions.values()):
            session.close()
        await self.listener.stop()
        for batcher in (self._certs, self._hellos, self._reports):
            await batcher.close()

    def forget(self, site_id: str) -> None:
        """The site was deleted or re-tokened: its session ends now."""
        session = self.sessions.pop(site_id, None)
        if session is not None:
            session.close()
        self._gone_since.pop(site_id, None)

    def sites_changed(self, site_ids: list[str]) -> None:
        """What these sites should run changed: push it to those connected now (the others
        get it when they next say hello: resumed by version)."""
        for site_id in site_ids:
            session = self.sessions.get(site_id)
            if session is not None:
                self.listener.background(self._push(session))

    async def _push(self, session: SiteSession) -> None:
        """The site's whole desired state, unless that version was already sent."""
        async with session.pushing:
            found = await deployments.snapshot(self.store, session.site_id)
            if found is None or found[0] == session.sent_version:
                return
            version, specs = found
            state = wire.SiteDesired(
                version=version, deployments=[wire.DeploymentSpec(**spec) for spec in specs]
            )
            with contextlib.suppress(ConnectionError, OSError):
                await session.send(wire.desired(state))
                session.sent_version = version
                self.stats.full_syncs += 1

    @property
    def limit(self) -> float:
        return self.interval * self.misses

    # connections -------------------------------------------------------------------------
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        cert = writer.get_extra_info("peercert") or {}
        name = common_name(cert)
        if name is None:  # anonymous: the CA, or enrollment with a site join token
            limit, timeout = self.protection.preauth_frame, self.protection.preauth_timeout
            first = await asyncio.wait_for(read_frame(reader, limit), timeout)
            await write_frame(writer, await self._anonymous(first, peer))
            return
        hello_frame = await asyncio.wait_for(read_frame(reader), HELLO_TIMEOUT)
        messages.check(hello_frame, frozenset({"hello"}))
        hello = wire.read_hello(hello_frame)
        if hello.site != name:
            raise ProtocolError(f"hello names site {hello.site!r}, the certificate {name!r}")
        site_id = await self._certs.submit((name, int(cert["serialNumber"], 16)), None)
        if site_id is None:
            log.warning("refused site %r from %s: certificate is not its current one", name, peer)
            await write_frame(writer, messages.error(
                "unknown_certificate",
                f"certificate for site {name!r} is not current at central (site deleted or "
                "re-tokened): join again with a new site join token",
            ))  # fmt: skip
            return
        report = hello.report.model_dump(mode="json")
        said = sites.Hello(hello.release, wire.SITE_PROTOCOL, report, hello.applied_version)
        current = await self._hellos.submit(site_id, said) or 0  # written with others' hellos
        session = self._open(site_id, name, writer)
        try:
            in_sync = hello.applied_version == current
            welcome = wire.SiteWelcome(
                release=__version__, heartbeat_interval=self.interval, in_sync=in_sync
            )
            await session.send(welcome.frame())
            log.info("site %s connected from %s (release %s, applied version %d of %d)",
                     name, peer, hello.release, hello.applied_version, current)  # fmt: skip
            if in_sync:
                session.sent_version = current
            else:
                await self._push(session)
            await self._session(session, reader)
        finally:
            self._closed(session)

    async def _anonymous(self, message: dict[str, Any], peer: str) -> dict[str, Any]:
        kind = messages.check(message, frozenset({"get_ca", "enroll"}))
        request = schemas.validate(message, kind)
        if kind == "get_ca":
            return messages.make("ca", cert=self.ca.trust_pem.decode())
        assert isinstance(request, schemas.Enroll)
        try:
            cert = await sites.enroll(
                self.store, self.ca, request.host, request.secret, request.csr.encode()
            )
        except EnrollmentError as exc:
            log.warning("refused site %r from %s: %s", request.host, peer, exc)
            return messages.error("enrollment_refused", str(exc))
        log.info("site %r joined from %s", request.host, peer)
        return messages.make("enrolled", cert=cert.decode(), ca=self.ca.trust_pem.decode())

    def _open(self, site_id: str, name: str, writer: asyncio.StreamWriter) -> SiteSession:
        old = self.sessions.get(site_id)
        if old is not None:
            old.close()
        session = SiteSession(site_id, name, writer)
        self.sessions[site_id] = session
        self._gone_since.pop(site_id, None)
        self.stats.sessions_started += 1
        return session

    def _closed(self, session: SiteSession) -> None:
        session.close()
        if self.sessions.get(session.site_id) is session:
            del self.sessions[session.site_id]
            self._gone_since[session.site_id] = time.monotonic()
            log.info("site %s disconnected", session.name)

    async def _session(self, session: SiteSession, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_frame(reader)
            session.last_seen = time.monotonic()
            self.stats.frames_in += 1
            kind = messages.check(message, frozenset({"report", "hb", "applied"}))
            if kind == "hb":
                self.stats.heartbeats += 1
                await session.send(messages.make("hb", seq=message.get("seq", 0)))
            elif kind == "applied":
                done = wire.read_applied(message)
                results = {k: (r.status, r.message) for k, r in done.results.items()}
                await deployments.record_applied(self.store, session.site_id, done.version, results)
            else:
                report = wire.read_report(message).model_dump(mode="json")
                self._reports.put(session.site_id, report)  # written with other sites' reports

    async def _write_reports(self, batch: dict[str, dict[str, Any]]) -> dict[str, None]:
        await sites.sites_reported(self.store, batch)
        return {}

    # liveness ----------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(self.interval / 2, 5.0))
            try:
                await self._check()
            except Exception:
                log.exception("site liveness check failed; retrying")

    async def _check(self) -> None:
        now = time.monotonic()
        if now - self._seen_at >= SEEN_PERIOD:
            self._seen_at = now
            await sites.seen(self.store, list(self.sessions))
        for session in list(self.sessions.values()):
            if now - session.last_seen > self.limit:
                log.warning("site %s silent for %.0f s: closing its session", session.name,
                            now - session.last_seen)  # fmt: skip
                self._closed(session)
        late = [s for s, since in self._gone_since.items() if now - since > self.limit]
        if not late:
            return
        reason = f"no connection from the site's controller for {self.limit:g} s"
        cutoff = utcnow() - dt.timedelta(seconds=self.limit)
        names = await sites.sites_offline(self.store, late, reason, cutoff)
        for site_id in late:
            self._gone_since.pop(site_id, None)
        if names:
            log.warning("sites offline: %d (%s)", len(names), ", ".join(names[:20]))
