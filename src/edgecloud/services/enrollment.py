"""Enrollment: a join token and a CSR in, a client certificate for the host out.

A token works once, before it expires, for the host it was made for: it is consumed by one
conditional UPDATE (``... WHERE used_at IS NULL``, rowcount checked), so of two concurrent
enrollments with one token exactly one wins, on SQLite and PostgreSQL alike. The issued
certificate's serial is stored on the host; the gateway accepts only that certificate for the
host (a re-enrolled, re-tokened or deleted host's old certificate stops working). A connected
agent renews its certificate over its session (``renew``): same name and address, a new key,
and the host's serial moves to the new certificate.
"""

from __future__ import annotations

from sqlalchemy import select, update

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
        consumed = await s.execute(
            update(JoinToken)
            .where(JoinToken.id == token.id, JoinToken.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if consumed.rowcount != 1:  # type: ignore[attr-defined]
            raise EnrollmentError(
                "join token was already used; ask for a new one (edgecloud host token NAME)"
            )
        host.cert_serial = str(serial)
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


async def renew(
    ctx: ServiceContext, ca: CertificateAuthority, host_id: str, serial: int, csr_pem: bytes
) -> tuple[bytes, int]:
    """Sign a new certificate for a connected host whose current certificate is ``serial``
    (the one its session was opened with): (certificate PEM, new serial). The host's serial
    moves to the new certificate in the same conditional UPDATE that checks the old one, so a
    host deleted or re-tokened meanwhile gets nothing."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None or host.cert_serial != str(serial):
            raise EnrollmentError("this certificate is no longer the host's current one")
        cert_pem, new_serial = ca.sign_csr(csr_pem, host.name, address=host.address)
        moved = await s.execute(
            update(Host)
            .where(Host.id == host_id, Host.cert_serial == str(serial))
            .values(cert_serial=str(new_serial))
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise EnrollmentError("this certificate is no longer the host's current one")
    return cert_pem, new_serial


async def current_serials(ctx: ServiceContext, host_ids: list[str]) -> dict[str, str | None]:
    """The current certificate serial of each host that still exists (None: re-tokened,
    no certificate is current); a deleted host is absent. One read (the gateway batches)."""
    async with transaction(ctx.sessions) as s:
        rows = await s.execute(select(Host.id, Host.cert_serial).where(Host.id.in_(host_ids)))
        return {str(row.id): row.cert_serial for row in rows}
