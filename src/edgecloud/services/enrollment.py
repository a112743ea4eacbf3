"""Enrollment: a join token and a CSR in, a client certificate for the host out.

A token works once, before it expires, for the host it was made for. The issued certificate's
serial is stored on the host; the gateway accepts only that certificate for the host (a
re-enrolled or deleted host's old certificate stops working).
"""

from __future__ import annotations

from sqlalchemy import select

from edgecloud.errors import EnrollmentError
from edgecloud.pki import tokens
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, JoinToken, as_utc, utcnow


async def enroll(
    ctx: ServiceContext,
    ca: CertificateAuthority,
    host_name: str,
    secret: str,
    csr_pem: bytes,
    address: str | None = None,
) -> bytes:
    """Check the token, sign the CSR for ``host_name`` (and its internal ``address``, an IP
    SAN: other nodes' hypervisors check it during a migration); returns the certificate PEM."""
    async with transaction(ctx.sessions) as s:
        query = select(JoinToken).where(JoinToken.secret_hash == tokens.hash_secret(secret))
        token = (await s.scalars(query)).first()
        if token is None or token.host_name != host_name:
            raise EnrollmentError("join token is not known to this controller")
        if token.used_at is not None:
            raise EnrollmentError(
                "join token was already used; ask for a new one (edgecloud host token NAME)"
            )
        if as_utc(token.expires_at) < utcnow():
            raise EnrollmentError(
                "join token has expired; ask for a new one (edgecloud host token NAME)"
            )
        host = (await s.scalars(select(Host).where(Host.name == host_name))).first()
        if host is None:
            raise EnrollmentError(f"host {host_name!r} no longer exists")
        cert_pem, serial = ca.sign_csr(csr_pem, host_name, address=address)
        token.used_at, host.cert_serial = utcnow(), str(serial)
        if address:
            host.address = address
    return cert_pem


async def certificate_current(ctx: ServiceContext, host_name: str, serial: int) -> str | None:
    """The host id when ``serial`` is the host's current certificate, else None."""
    async with transaction(ctx.sessions) as s:
        host = (await s.scalars(select(Host).where(Host.name == host_name))).first()
        if host is None or host.cert_serial != str(serial):
            return None
        return host.id
