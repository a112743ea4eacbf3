"""Certificate renewal over a live session: the agent's ``renew {csr}``, answered ``renewed``.

As the kubelet does, an agent renews at 2/3 of its certificate's life with a key it makes
itself (agent/renewing.py): the CSR rides the session the current certificate opened, so the
request is authenticated by that session. The site CA signs it for the same host name and
address (services/enrollment.py ``renew``: a conditional UPDATE moves the host's serial from the
session's certificate to the new one); the session's serial moves too, so revoking.py does not
close the session, and the old certificate is refused at the next connection. The reply carries
the CA bundle the agent should trust from now on (CA rotation: docs/security.md).

One renewal per session per ``MIN_INTERVAL`` seconds: a misbehaving node cannot make the
controller sign in a loop. During a CA rotation (pki/rotation.py) the gateway ``ask``s every
node whose certificate is from the old CA to renew at once (request ``renew``).
Neighbours: gateway.py (dispatch), sessions.py, controller/tls.py (asks after a CA change).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edgecloud.errors import EdgecloudError, EnrollmentError
from edgecloud.gateway.sessions import AgentSession
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.protocol import messages
from edgecloud.services import enrollment
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
MIN_INTERVAL = 30.0
MAX_CSR = 16 * 1024


async def answer(
    ctx: ServiceContext, ca: CertificateAuthority, session: AgentSession, message: dict[str, Any]
) -> dict[str, Any]:
    """The ``renewed`` reply to one ``renew`` request."""
    now = time.monotonic()
    if now - session.renewed_at < MIN_INTERVAL:
        return messages.make("renewed", error="a renewal was done moments ago on this session")
    csr = message.get("csr")
    if not isinstance(csr, str) or len(csr) > MAX_CSR:
        return messages.make("renewed", error=f"renew needs a PEM csr of at most {MAX_CSR} bytes")
    session.renewed_at = now
    try:
        cert, serial = await enrollment.renew(
            ctx, ca, session.host_id, session.cert_serial, csr.encode()
        )
    except EnrollmentError as exc:
        log.warning("refused certificate renewal of host %s: %s", session.host_name, exc)
        return messages.make("renewed", error=str(exc))
    session.cert_serial = serial
    log.info("renewed the certificate of host %s (serial %x)", session.host_name, serial)
    return messages.make("renewed", cert=cert.decode(), ca=ca.trust_pem.decode())


def outdated(ca: CertificateAuthority, writer: asyncio.StreamWriter) -> bool:
    """During a CA rotation: whether the peer's certificate is from the old CA."""
    if not ca.rotating:
        return False
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return der is not None and not ca.issued(der)


async def ask(session: AgentSession, timeout: float = 60.0) -> None:
    """Ask the node to renew now (a CA rotation began); its ``renew`` comes back over the
    session like any other (answer above)."""
    try:
        await session.request("renew", {}, timeout)
    except (EdgecloudError, OSError) as exc:
        log.warning("host %s did not renew when asked: %s", session.host_name, exc)
