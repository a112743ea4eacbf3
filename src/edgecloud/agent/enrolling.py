"""Enrollment, node side: join token -> CA (fingerprint checked) -> CSR -> certificate.

1. TLS without verification, ask for the CA certificate; refuse it unless its SHA-256
   fingerprint is the one in the token (so a man in the middle cannot pose as the site).
2. TLS verified against that CA, send the CSR and the token secret; get the certificate.
From then on the agent uses mutual TLS only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.agent import identity, tls_files
from edgecloud.errors import EnrollmentError
from edgecloud.pki import tokens
from edgecloud.pki.identity import client_ssl_context, fingerprint_of, make_key_and_csr
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame

TIMEOUT = 20.0


async def _exchange(
    address: str, context: ssl.SSLContext, message: dict[str, Any]
) -> dict[str, Any]:
    host, port = identity.split_address(address)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), TIMEOUT
        )
    except ssl.SSLError as exc:
        raise EnrollmentError(
            f"TLS with the controller at {address} failed: {exc.reason or exc}"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise EnrollmentError(
            f"cannot reach the controller at {address}: {exc or 'timeout'}"
        ) from exc
    try:
        await write_frame(writer, message)
        reply = await asyncio.wait_for(read_frame(reader), TIMEOUT)
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
        raise EnrollmentError(
            f"the controller at {address} closed the connection during enrollment"
        ) from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if reply.get("t") == "error":
        raise EnrollmentError(f"the controller refused: {reply.get('message')}")
    return reply


async def enroll(
    token_text: str, state_dir: Path, address: str | None = None
) -> identity.AgentIdentity:
    """Enroll this node with the join token; saves and returns its identity.

    ``address``: the node's address on the site's internal network, put in its certificate
    (an IP SAN) so other nodes' hypervisors accept it as a migration peer; the certificate is
    also written in the layouts libvirt and QEMU read (agent/tls_files.py)."""
    token = tokens.decode(token_text)
    reply = await _exchange(token.address, client_ssl_context(None), messages.make("get_ca"))
    ca_pem = str(reply.get("cert", "")).encode()
    if fingerprint_of(ca_pem) != token.ca_fingerprint:
        raise EnrollmentError(
            f"the controller at {token.address} presented a CA whose fingerprint does not match "
            "the join token: refusing to enroll"
        )
    files.private_dir(state_dir)
    ca_file = state_dir / "ca.crt"
    files.write_atomic(ca_file, ca_pem, files.PUBLIC_FILE)
    key_pem, csr_pem = make_key_and_csr(token.host)
    fields = {"address": address} if address else {}
    request = messages.make(
        "enroll", host=token.host, secret=token.secret, csr=csr_pem.decode(), **fields
    )
    reply = await _exchange(token.address, client_ssl_context(ca_file), request)
    who = identity.save(
        state_dir, token.host, token.address, ca_pem, str(reply["cert"]).encode(), key_pem
    )
    tls_files.ensure(who)
    return who
