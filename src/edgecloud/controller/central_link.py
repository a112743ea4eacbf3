"""A site's link to central: ONE outbound mutual-TLS connection, dialled by the site.

Nothing at a site listens towards the WAN: the site's leading controller joins central once
with a site join token (``join``: pki/joining.py, the enrollment nodes use, against central's
site port), keeps its certificate in ``STATE/central/``, and from then on holds one connection
to central (protocol/central.py): ``hello`` with its summary (services/site_summary.py),
``report`` whenever the summary changes, ``hb`` every interval. When central is unreachable or
silent the site goes on by itself (its own API, agents and VNFs never depend on central) and
dials again with a jittered backoff. What central deploys arrives as a versioned snapshot
(``desired``), is applied by controller/central_applying.py and answered (``applied``); the
version applied is kept, so a reconnect with nothing new costs no transfer.

Its files in STATE/central/: controller/central_identity.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Protocol

from edgecloud import __version__, files
from edgecloud.controller import central_applying
from edgecloud.controller import central_identity as identity
from edgecloud.errors import EdgecloudError, EnrollmentError, ProtocolError
from edgecloud.pki import joining, tokens
from edgecloud.pki.identity import client_ssl_context, make_key_and_csr
from edgecloud.protocol import central as wire
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame
from edgecloud.services import site_summary
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
REPORT_PERIOD = 2.0  # seconds between looks at the site's summary
BACKOFF = 1.0  # seconds before dialling again, doubling to BACKOFF_MAX (each jittered: 50-100 %)
BACKOFF_MAX = 30.0
# connect, TLS handshake and welcome: as long as a node waits for its controller (a central
# busy with a reconnect storm keeps connections waiting in its accept queue: admission.py)
CONNECT_TIMEOUT = 20.0
RETRY_PERIOD = 3.0  # seconds between tries of deployments that failed or are coming up


async def join(token_text: str, folder: Path) -> identity.CentralIdentity:
    """Join central with a site join token; saves and returns the site's identity."""
    token = tokens.decode(token_text)
    dialed, ca_pem = await joining.token_ca(token, "central")
    files.private_dir(folder)
    files.write_atomic(folder / "ca.crt", ca_pem, files.PUBLIC_FILE)
    key_pem, csr_pem = make_key_and_csr(token.host)
    request = messages.make("enroll", host=token.host, secret=token.secret, csr=csr_pem.decode())
    reply = await joining.exchange(dialed, client_ssl_context(folder / "ca.crt"), request)
    files.write_atomic(folder / "site.key", key_pem)
    files.write_atomic(folder / "site.crt", str(reply["cert"]).encode(), files.PUBLIC_FILE)
    if reply.get("ca"):
        files.write_atomic(folder / "ca.crt", str(reply["ca"]).encode(), files.PUBLIC_FILE)
    digest = tokens.hash_secret(token.secret)
    info = {"address": dialed, "site": token.host, "token": digest}
    files.write_atomic(folder / identity.INFO, json.dumps(info))
    log.info("joined central at %s as site %r", dialed, token.host)
    return identity.CentralIdentity(folder, dialed, token.host, digest)


class SiteEnd(Protocol):
    """What the link asks of the site: its summary, and to apply central's desired state."""

    async def summary(self) -> wire.SiteReport: ...

    async def apply(self, desired: wire.SiteDesired) -> wire.Applied: ...


class StoreSite:
    """The site as its store says (services/site_summary.py) and its services change
    (controller/central_applying.py); the simulator puts fake sites in its place."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def summary(self) -> wire.SiteReport:
        now = await site_summary.summary(self.ctx)
        return wire.SiteReport(
            release=__version__,
            inventory=wire.Inventory(
                hosts=now.hosts, hosts_online=now.hosts_online, vnfs=now.vnfs,
                vnfs_running=now.vnfs_running, chains=now.chains, stacks=now.stacks,
            ),
            alarms=wire.AlarmCounts(**now.alarms),
        )  # fmt: skip

    async def apply(self, desired: wire.SiteDesired) -> wire.Applied:
        return await central_applying.apply(self.ctx, desired)


class CentralLink:
    """The site's one connection to central, kept up while this controller leads the site."""

    def __init__(
        self, site: SiteEnd, who: identity.CentralIdentity, interval: float = 10.0
    ) -> None:
        self.site, self.who, self.interval = site, who, interval
        self.connected = asyncio.Event()
        self.sent: wire.SiteReport | None = None
        self._wanted: wire.SiteDesired | None = None  # the newest desired state from central
        self._new = asyncio.Event()
        self._sending = asyncio.Lock()
        self._all_applied = True

    async def run_forever(self) -> None:
        delay = BACKOFF
        while True:
            began = time.monotonic()
            try:
                await self._connection()
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.info("central at %s: %s", self.who.address, exc or type(exc).__name__)
            except EdgecloudError as exc:
                log.warning("central at %s: %s", self.who.address, exc)
            except Exception:
                log.exception("the link to central failed")
            finally:
                self.connected.clear()
            if time.monotonic() - began > 3 * self.interval:  # it had held: start over
                delay = BACKOFF
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _connection(self) -> None:
        host, port = joining.split_address(self.who.address)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.who.tls(), server_hostname=host),
            CONNECT_TIMEOUT,
        )
        try:
            summary = await self.site.summary()
            applied = identity.applied_version(self.who.folder)
            hello = wire.hello(self.who.site, __version__, summary, applied)
            await write_frame(writer, hello)
            first = await asyncio.wait_for(read_frame(reader), CONNECT_TIMEOUT)
            kind = messages.check(first, wire.CENTRAL_TYPES)
            if kind == "error":
                raise ProtocolError(f"central refused: {first.get('message')}")
            if kind != "welcome":
                raise ProtocolError(f"central answered {kind!r} to hello")
            welcome = wire.read_welcome(first)
            self.interval = welcome.heartbeat_interval
            self.sent = summary
            self.connected.set()
            log.info("connected to central at %s (release %s) as site %s",
                     self.who.address, welcome.release, self.who.site)  # fmt: skip
            helpers = [
                asyncio.create_task(self._talk(writer)),
                asyncio.create_task(self._apply_forever(writer)),
            ]
            try:
                await self._listen(reader)
            finally:
                for task in helpers:
                    task.cancel()
                for task in helpers:
                    with contextlib.suppress(BaseException):
                        await task
        finally:
            writer.close()

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        """Read central's frames; silence for three intervals ends the connection."""
        while True:
            message = await asyncio.wait_for(read_frame(reader), 3 * self.interval)
            kind = messages.check(message, wire.CENTRAL_TYPES)
            if kind == "error":
                raise ProtocolError(f"central closed the link: {message.get('message')}")
            if kind == "desired":
                self._wanted = wire.read_desired(message)
                self._new.set()

    async def _apply_forever(self, writer: asyncio.StreamWriter) -> None:
        """Apply the newest desired state central sent, say how it went; what failed or is
        still coming up is tried again every RETRY_PERIOD (an image still on its way, a host
        back, a chain becoming active) until it is in sync."""
        while True:
            try:
                await asyncio.wait_for(self._new.wait(), RETRY_PERIOD)
            except TimeoutError:
                if self._wanted is None or self._all_applied:
                    continue
            self._new.clear()
            wanted = self._wanted
            if wanted is None:
                continue
            result = await self.site.apply(wanted)
            # failed or still coming up (a chain not active yet): tried again; a conflict
            # stays until someone renames
            settled = ("in-sync", "conflict")
            self._all_applied = all(r.status in settled for r in result.results.values())
            if self._all_applied:  # else central pushes it again at the next hello: retried
                identity.save_applied(self.who.folder, wanted.version)
            await self._send(writer, wire.applied(result))

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        async with self._sending:
            await write_frame(writer, message)

    async def _talk(self, writer: asyncio.StreamWriter) -> None:
        seq, beat_due = 0, time.monotonic() + self.interval
        while True:
            await asyncio.sleep(min(REPORT_PERIOD, self.interval))
            summary = await self.site.summary()
            if summary != self.sent:
                await self._send(writer, wire.report(summary))
                self.sent = summary
            if time.monotonic() >= beat_due:
                seq += 1
                await self._send(writer, messages.make("hb", seq=seq, ts=time.time()))
                beat_due = time.monotonic() + self.interval


async def keep_linked(ctx: ServiceContext, folder: Path, interval: float = 10.0) -> None:
    """Join central with the saved token when this site has not joined with it yet (a new
    token, e.g. after central re-tokened the site, joins again), then keep the link up.
    Central unreachable: try again later; the token refused: say why and stay unlinked."""
    who, delay, token = identity.load(folder), BACKOFF, identity.saved_token(folder)
    while token is not None and (who is None or who.token != _token_digest(token)):
        try:
            who = await join(token, folder)
        except joining.Unreachable as exc:
            log.warning("cannot join central yet: %s", exc)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX)
        except (EnrollmentError, ProtocolError, ValueError, KeyError) as exc:
            log.error("could not join central: %s", exc)
            break
    if who is None:
        return
    await CentralLink(StoreSite(ctx), who, interval).run_forever()


def _token_digest(token: str) -> str:
    return tokens.hash_secret(tokens.decode(token).secret)
