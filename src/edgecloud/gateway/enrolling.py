"""The two requests the gateway serves without a client certificate: the CA, and enrollment.

Over this unauthenticated path the agent first fetches the CA certificate (and checks its
fingerprint against its join token), then reconnects verifying the controller against that CA
and sends its CSR with the token secret. Everything else requires a client certificate.
"""

from __future__ import annotations

import logging
from typing import Any

from edgecloud.errors import EnrollmentError, InvalidInput, ProtocolError
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.protocol import messages, schemas
from edgecloud.services import audit, enrollment
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)


async def answer(
    ctx: ServiceContext, ca: CertificateAuthority, message: dict[str, Any], peer: str
) -> dict[str, Any]:
    """The reply to one unauthenticated message."""
    kind = messages.check(message, frozenset({"get_ca", "enroll"}))
    schemas.validate(message, kind)
    if kind == "get_ca":
        return messages.make("ca", cert=ca.trust_pem.decode())
    host, secret, csr = message.get("host"), message.get("secret"), message.get("csr")
    if not (isinstance(host, str) and isinstance(secret, str) and isinstance(csr, str)):
        raise ProtocolError("enroll needs host, secret and csr")
    address = message.get("address")
    if address is not None and not isinstance(address, str):
        raise ProtocolError("enroll's address must be a string")
    try:
        cert = await enrollment.enroll(ctx, ca, host, secret, csr.encode(), address or None)
    except (EnrollmentError, InvalidInput) as exc:
        log.warning("refused enrollment of host %r from %s: %s", host, peer, exc)
        await _audit(ctx, host, 403, peer)
        return messages.error("enrollment_refused", str(exc))
    log.info("enrolled host %r from %s", host, peer)
    await _audit(ctx, host, 201, peer)
    return messages.make("enrolled", cert=cert.decode(), ca=ca.trust_pem.decode())


async def _audit(ctx: ServiceContext, host: str, status: int, peer: str) -> None:
    """The enrollment in the audit log (services/audit.py): actor "join-token:HOST"."""
    try:
        actor, refused = f"join-token:{host}", status != 201  # a refusal proves nothing
        await audit.record(ctx, actor, "enroll", f"host {host}", status, peer, anonymous=refused)
    except Exception:
        log.exception("could not write the audit record of enrolling host %r", host)
