"""Enrollment and the mTLS channel: tokens work once, only the site CA's current certificates
get a session, and every refusal says why on both sides.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgecloud.agent import identity
from edgecloud.agent.connection import CredentialsRefused
from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.errors import EnrollmentError
from edgecloud.pki import tokens
from edgecloud.pki.authority import CertificateAuthority
from tests.integration.harness import running_site


async def test_join_token_works_once(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        token = await site.add_host("node1")
        first = await enroll(token, tmp_path / "a")
        assert first.host == "node1" and first.cert.exists()
        with pytest.raises(EnrollmentError, match="already used"):
            await enroll(token, tmp_path / "b")


async def test_unknown_and_expired_tokens_are_refused(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url, join_token_ttl=0.0) as site:
        token = await site.add_host("node1")
        with pytest.raises(EnrollmentError, match="expired"):
            await enroll(token, tmp_path / "a")
        forged = tokens.encode(
            tokens.JoinToken(**{**tokens.decode(token).__dict__, "secret": "x" * 32})
        )
        with pytest.raises(EnrollmentError, match="not known"):
            await enroll(forged, tmp_path / "b")


async def test_agent_refuses_a_controller_whose_ca_does_not_match_the_token(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        token = tokens.decode(await site.add_host("node1"))
        wrong = tokens.encode(tokens.JoinToken(token.address, "0" * 64, token.secret, token.host))
        with pytest.raises(EnrollmentError, match="fingerprint does not match"):
            await enroll(wrong, tmp_path / "a")


def _cert_from(ca_dir: Path, name: str, *, expired: bool = False) -> tuple[bytes, bytes]:
    """A client certificate for ``name`` signed by the CA in ``ca_dir`` (optionally expired)."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now, now + dt.timedelta(days=1))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def _run_agent_expecting_refusal(state_dir: Path) -> str:
    agent = Agent(identity.load(state_dir), compute="fake")
    with pytest.raises(CredentialsRefused) as refused:
        await agent.run()
    return str(refused.value)


@pytest.mark.parametrize("kind", ["foreign-ca", "expired"])
async def test_bad_client_certificates_are_refused_on_both_sides(
    tmp_path: Path, db_url: str | None, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_site(tmp_path, db_url) as site:
        good = await enroll(await site.add_host("node1"), tmp_path / "agent")
        if kind == "foreign-ca":
            CertificateAuthority.load_or_create(tmp_path / "other-ca", "intruder")
            cert, key = _cert_from(tmp_path / "other-ca", "node1")
        else:
            cert, key = _cert_from(tmp_path / "controller" / "pki", "node1", expired=True)
        good.cert.write_bytes(cert)
        good.key.write_bytes(key)
        with caplog.at_level(logging.WARNING, logger="edgecloud.gateway"):
            message = await _run_agent_expecting_refusal(good.state_dir)
        assert "does not accept this node's certificate" in message
        refusals = [
            r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()
        ]
        assert refusals, "the gateway did not log the refusal"
        expected = (
            "unable to get local issuer" if kind == "foreign-ca" else "certificate has expired"
        )
        assert f"client certificate rejected: {expected}" in refusals[0]
        assert (await site.host("node1"))["availability"] == "pending"


async def test_certificate_of_a_deleted_host_is_refused(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        handle = await site.join("node1")
        await handle.stop()
        assert (await site.api.delete("/v1/hosts/node1")).status_code == 204
        message = await _run_agent_expecting_refusal(handle.state_dir)
        assert "not current on this site" in message
