"""Keeping the controller's TLS material current while it runs: no restart to rotate anything.

Every ``period`` seconds a stat of the files in the PKI folder (ca.crt, ca.key, trust.crt,
server.crt, server.key); when one changed, and every ``reissue_period`` anyway, the CA is loaded
again, the server certificate re-issued if it is missing, no longer trusted, no longer covers
the controller's names or is within 30 days of expiry (pki/authority.py
``ensure_server_cert``), and the gateway gets a new SSL context (new connections use it;
established sessions keep theirs). The API's context is the one uvicorn made: its certificate
is loaded again in place (OpenSSL copies a context's certificate into each new connection).
When the signing CA changed (a CA rotation began, pki/rotation.py) the gateway asks every
connected node to renew. During a rotation a server certificate issued anew (missing, expiring)
comes from the old CA, which every node trusts (pki/rotation.py ``server_issuer``). On a site
sharing its CA through the store, controller/ca_following.py writes the files and calls
``step`` at once. Join tokens name the CA of the server certificate a new node meets:
the old CA until the rotation finishes, the new one after. API clients are given
``pki/api-ca.crt`` (controller.json ``ca_cert``), rewritten here after the API's certificate:
the CA, or during a rotation both CAs, so a client that reads it meanwhile verifies the API's
old-CA certificate, and one that reads it after the finish the new one.

Neighbours: controller/site.py (starts it), gateway.py (``tls``, ``ca``, ``request_renewals``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path

from edgecloud.gateway.gateway import Gateway
from edgecloud.pki import rotation
from edgecloud.pki.authority import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    TRUST_FILE,
    CertificateAuthority,
    write_client_trust,
)
from edgecloud.pki.identity import server_ssl_context
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
PERIOD = 5.0
REISSUE_PERIOD = 3600.0
FILES = (CA_CERT_FILE, CA_KEY_FILE, TRUST_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)


def token_fingerprint(pki_dir: Path, ca: CertificateAuthority) -> str:
    """The CA that join tokens name: the one that signed the server certificate new nodes
    meet, so during a CA rotation still the old one (pki/rotation.py)."""
    return rotation.previous_fingerprint(pki_dir) or ca.fingerprint


def trust_file(pki_dir: Path) -> Path:
    """The CAs the gateway trusts for client certificates (the bundle during a rotation)."""
    bundle = pki_dir / TRUST_FILE
    return bundle if bundle.exists() else pki_dir / CA_CERT_FILE


class TlsReloader:
    """See the module docstring."""

    def __init__(
        self,
        pki_dir: Path,
        site_name: str,
        names: list[str],
        ips: list[str],
        gateway: Gateway,
        ctx: ServiceContext,
        period: float = PERIOD,
        reissue_period: float = REISSUE_PERIOD,
    ) -> None:
        self.pki_dir, self.site_name, self.names, self.ips = pki_dir, site_name, names, ips
        self.gateway, self.ctx = gateway, ctx
        self.period, self.reissue_period = period, reissue_period
        self.api: ssl.SSLContext | None = None  # set once the API server made its context
        self._seen = self._signature()
        self._checked = time.monotonic()
        self.reloads = 0
        self._one_at_a_time = asyncio.Lock()  # the timer and controller/ca_following.py

    def _signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for name in FILES:
            try:
                st = (self.pki_dir / name).stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.step()
            except Exception:
                log.exception("reloading the controller's TLS files failed; retrying")

    async def step(self) -> None:
        async with self._one_at_a_time:
            await self._step()

    async def _step(self) -> None:
        due = time.monotonic() - self._checked >= self.reissue_period
        if not due and self._signature() == self._seen:
            return
        self._checked = time.monotonic()
        ca = await asyncio.to_thread(
            CertificateAuthority.load_or_create, self.pki_dir, self.site_name
        )
        issuer = await asyncio.to_thread(rotation.server_issuer, self.pki_dir, ca)
        cert, key = await asyncio.to_thread(
            issuer.ensure_server_cert, self.pki_dir, self.names, self.ips
        )
        signature = self._signature()
        if signature == self._seen:
            return  # checked; nothing changed
        self._seen = signature
        context = await asyncio.to_thread(server_ssl_context, cert, key, trust_file(self.pki_dir))
        new_ca = ca.fingerprint != self.gateway.ca.fingerprint
        self.gateway.tls, self.gateway.ca = context, ca
        self.ctx.ca_fingerprint = token_fingerprint(self.pki_dir, ca)
        if self.api is not None:
            self.api.load_cert_chain(cert, key)
        await asyncio.to_thread(write_client_trust, self.pki_dir, ca)  # after the API's cert
        self.reloads += 1
        log.info("TLS files reloaded (CA %s…, rotation: %s)", ca.fingerprint[:12], ca.rotating)
        if new_ca:
            self.gateway.request_renewals()
