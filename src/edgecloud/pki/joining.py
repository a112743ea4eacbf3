"""Joining over the gateway's port, for whoever dials it: a node (agent/enrolling.py) joining
its site, or a site's controller (controller/central_link.py) joining central.

1. TLS without verification, ask for the CA certificate(s); keep only the one whose SHA-256
   fingerprint is the one in the join token (so a man in the middle cannot pose as the other
   end, nor slip in a CA of its own beside the real one).
2. TLS verified against that CA, send the CSR and the token secret; get the certificate and
   the CAs to trust, now over a verified channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgecloud.errors import EnrollmentError
from edgecloud.pki import tokens
from edgecloud.pki.identity import client_ssl_context, fingerprint_of
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame

TIMEOUT = 20.0


class Unreachable(EnrollmentError):
    """No TCP connection to that controller (the next one may answer)."""


async def exchange(
    address: str, context: ssl.SSLContext, message: dict[str, Any]
) -> dict[str, Any]:
    host, port = split_address(address)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), TIMEOUT
        )
    except ssl.SSLError as exc:
        raise EnrollmentError(
            f"TLS with the controller at {address} failed: {exc.reason or exc}"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"cannot reach the controller at {address}: {exc or 'timeout'}") from exc
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


async def first_answering(
    addresses: tuple[str, ...], context: ssl.SSLContext, message: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The first controller, in the token's order, that can be reached, and its reply."""
    failures: list[str] = []
    for address in addresses:
        try:
            return address, await exchange(address, context, message)
        except Unreachable as exc:
            failures.append(str(exc))
    raise Unreachable("; ".join(failures))


def named_ca(bundle: bytes, fingerprint: str) -> bytes | None:
    """The CA of ``bundle`` (one or more PEM certificates, unauthenticated) whose fingerprint
    the join token names; only that one is trusted for the verified exchange."""
    try:
        certificates = x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return None
    for cert in certificates:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if fingerprint_of(pem) == fingerprint:
            return pem
    return None


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def token_ca(token: tokens.JoinToken, other_end: str) -> tuple[str, bytes]:
    """Step 1 for a join token: the first of its addresses that answers, and the CA it
    presented whose fingerprint the token names (EnrollmentError naming ``other_end``, e.g.
    "the controller", when none does)."""
    dialed, reply = await first_answering(
        token.addresses, client_ssl_context(None), messages.make("get_ca")
    )
    ca_pem = named_ca(str(reply.get("cert", "")).encode(), token.ca_fingerprint)
    if ca_pem is None:
        raise EnrollmentError(
            f"{other_end} at {dialed} presented a CA whose fingerprint does not match the "
            "join token: refusing to join"
        )
    return dialed, ca_pem
