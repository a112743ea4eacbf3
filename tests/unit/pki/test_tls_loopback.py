"""Real TLS on loopback with the server and client contexts of pki/identity.py.

The server takes the connection in plain TCP and upgrades it with ``start_tls`` so the test
can see the server side's handshake outcome (``start_server(ssl=...)`` hides it).

A refused client certificate: the server's handshake fails with an SSLError, but asyncio's SSL
transport (3.11) drops the connection without sending the TLS alert, so the client sees the
connection closed (EOF under TLS 1.3, a reset under TLS 1.2) rather than an SSLError of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import (
    client_ssl_context,
    make_key_and_csr,
    peer_common_name,
    server_ssl_context,
)

DEADLINE = 5.0


@dataclass
class Server:
    port: int
    ca_path: Path
    outcome: asyncio.Future[str | BaseException | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", "lab")


@pytest.fixture
async def server(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[Server]:
    cert, key = ca.ensure_server_cert(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    context = server_ssl_context(cert, key, tmp_path / "ca" / "ca.crt")
    state = Server(port=0, ca_path=tmp_path / "ca" / "ca.crt")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(context)
        except ssl.SSLError as exc:
            state.outcome.set_result(exc)
            writer.close()
            return
        state.outcome.set_result(peer_common_name(writer.get_extra_info("ssl_object")))
        writer.write(b"hello\n")
        await writer.drain()
        await _close(writer)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state
    await listener.wait_closed()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()


def _client_files(tmp_path: Path, ca: CertificateAuthority, name: str) -> tuple[Path, Path]:
    key_pem, csr_pem = make_key_and_csr(name)
    cert_pem, _serial = ca.sign_csr(csr_pem, name)
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


async def _greeting(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        return await reader.readline()
    finally:
        await _close(writer)


async def _refused(port: int, context: ssl.SSLContext) -> bool:
    """True when the server drops the connection instead of greeting."""
    try:
        return await _greeting(port, context) == b""
    except (ssl.SSLError, ConnectionError):
        return True


async def test_client_with_ca_signed_cert_is_accepted(
    tmp_path: Path, ca: CertificateAuthority, server: Server
) -> None:
    cert, key = _client_files(tmp_path, ca, "node-1")
    context = client_ssl_context(server.ca_path, cert, key)
    assert await asyncio.wait_for(_greeting(server.port, context), DEADLINE) == b"hello\n"
    assert await asyncio.wait_for(server.outcome, DEADLINE) == "node-1"


async def test_client_with_cert_from_another_ca_is_refused(tmp_path: Path, server: Server) -> None:
    stranger = CertificateAuthority.load_or_create(tmp_path / "stranger", "elsewhere")
    cert, key = _client_files(tmp_path, stranger, "intruder")
    context = client_ssl_context(server.ca_path, cert, key)
    assert await asyncio.wait_for(_refused(server.port, context), DEADLINE)
    assert isinstance(await asyncio.wait_for(server.outcome, DEADLINE), ssl.SSLError)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_refused_under_each_tls_version(
    tmp_path: Path, server: Server, version: ssl.TLSVersion
) -> None:
    stranger = CertificateAuthority.load_or_create(tmp_path / "stranger", "elsewhere")
    cert, key = _client_files(tmp_path, stranger, "intruder")
    context = client_ssl_context(server.ca_path, cert, key)
    context.minimum_version = context.maximum_version = version
    assert await asyncio.wait_for(_refused(server.port, context), DEADLINE)
    assert isinstance(await asyncio.wait_for(server.outcome, DEADLINE), ssl.SSLError)


async def test_client_without_cert_connects_anonymously(server: Server) -> None:
    context = client_ssl_context(server.ca_path)
    assert await asyncio.wait_for(_greeting(server.port, context), DEADLINE) == b"hello\n"
    assert await asyncio.wait_for(server.outcome, DEADLINE) is None


async def test_enrollment_context_fetches_without_verifying(server: Server) -> None:
    context = client_ssl_context(None)
    assert context.verify_mode == ssl.CERT_NONE
    assert await asyncio.wait_for(_greeting(server.port, context), DEADLINE) == b"hello\n"


async def test_client_refuses_a_server_from_another_ca(tmp_path: Path, server: Server) -> None:
    stranger = CertificateAuthority.load_or_create(tmp_path / "stranger", "elsewhere")
    context = client_ssl_context(tmp_path / "stranger" / "ca.crt")
    assert stranger.fingerprint
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(_greeting(server.port, context), DEADLINE)
