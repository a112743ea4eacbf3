"""Certificate identity helpers shared by the agent and the controller.

The agent uses ``make_key_and_csr`` to ask for a client certificate during enrollment and
``client_ssl_context`` to dial the gateway; the gateway uses ``server_ssl_context`` and
``peer_common_name`` to learn which node is on the other end. pki/authority.py (the CA, on the
controller) signs what these helpers produce; pki/tokens.py carries the CA fingerprint that
``fingerprint_of`` checks.

One TLS port serves both enrollment and the agent channel: the server asks for a client
certificate but does not require one (``CERT_OPTIONAL``); a certificate that is presented must
chain to the site CA or the handshake fails. Callers decide what an anonymous peer may do.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgecloud.errors import EnrollmentError, InvalidInput

_PEM_MARKER = b"-----BEGIN"


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a certificate given as PEM or DER; EnrollmentError if it is not one."""
    try:
        if data.lstrip().startswith(_PEM_MARKER):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise EnrollmentError(f"certificate is malformed: {exc}") from exc


def make_key_and_csr(common_name: str) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a CSR for ``common_name``, both PEM: (key, csr)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return private_key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key (files holding it are mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def fingerprint_of(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER, lowercase hex without colons."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def cert_serial(cert_pem: bytes) -> int:
    """The certificate's serial number."""
    return load_certificate(cert_pem).serial_number


def verify_signed_by(cert_der_or_pem: bytes, ca_pem: bytes) -> bool:
    """Whether the certificate was issued and signed by the CA (validity dates not checked)."""
    ca = load_certificate(ca_pem)
    try:
        cert = load_certificate(cert_der_or_pem)
        cert.verify_directly_issued_by(ca)
    except (EnrollmentError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context; client certificates optional but verified against ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    context.load_verify_locations(cafile=ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_ssl_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """TLS 1.2+ client context.

    With ``ca`` the server must present a certificate from that CA (the controller is known by
    its CA, not its hostname, so hostnames are not checked). Without ``ca`` nothing is
    verified: that is only for fetching the CA during enrollment, whose fingerprint the caller
    then compares with the join token's.
    """
    if key is not None and cert is None:
        raise InvalidInput("a client key was given without its certificate", field="cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if ca is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    if cert is not None:
        context.load_cert_chain(certfile=cert, keyfile=key)
    return context


def peer_common_name(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The subject CN of the peer's verified certificate; None if it presented none.

    ``getpeercert()`` is empty unless the certificate was verified, so a peer on a context that
    does not verify (``CERT_NONE``) has no name either.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not ssl_object.getpeercert() or der is None:
        return None
    names = load_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


def certificate_matches_key(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the certificate is for this private key."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return load_certificate(cert_pem).public_key() == key.public_key()
