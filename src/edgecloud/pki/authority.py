"""The site certificate authority: one per controller, kept on the controller's disk.

The controller loads it at start (``load_or_create``) to issue its own server certificate
(``ensure_server_cert``) and, through the gateway's enrollment, to sign agents' CSRs
(``sign_csr``). Agents trust the controller by this CA's fingerprint, carried in join tokens
(pki/tokens.py); pki/identity.py holds the TLS contexts and helpers both sides share.

Keys are EC P-256, signatures SHA-256. Files: ``ca.crt``, ``ca.key`` (mode 0600),
``server.crt``, ``server.key`` (mode 0600), and during a CA rotation (pki/rotation.py)
``trust.crt``: the CAs trusted meanwhile, the new (signing) one first, then the old one; and
``api-ca.crt``, the same bundle (or the CA alone) for API clients (``write_client_trust``). File
I/O is blocking but small; it happens at start and when the files change (controller/tls.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgecloud import files
from edgecloud.errors import Conflict, EnrollmentError, InvalidInput
from edgecloud.pki.identity import fingerprint_of, private_key_pem, verify_signed_by

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
TRUST_FILE = "trust.crt"
# what an API client should trust (controller.json ``ca_cert``, the client config): the CA, or
# during a rotation both, since the API keeps its old-CA certificate until the finish
CLIENT_TRUST_FILE = "api-ca.crt"
# held while the CA files are read or replaced (``folder_lock``)
LOCK_FILE = "ca.lock"

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=730)
# A server certificate closer than this to expiry is re-issued rather than reused.
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
# Certificates start a little in the past so a node whose clock lags can still use them.
CLOCK_SKEW = dt.timedelta(minutes=5)
MIN_RSA_BITS = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertificateAuthority:
    """A CA certificate and its private key."""

    def __init__(
        self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, trust: bytes | None = None
    ) -> None:
        self._cert = cert
        self._key = key
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._trust_pem = trust or self._cert_pem

    @classmethod
    def load_or_create(cls, directory: Path, site_name: str) -> CertificateAuthority:
        """Load the CA from ``directory``, creating it (and the directory) on first use."""
        with folder_lock(directory):
            return cls._load_or_create(directory, site_name)

    @classmethod
    def _load_or_create(cls, directory: Path, site_name: str) -> CertificateAuthority:
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        settle_replacement(directory)
        if cert_path.exists() and key_path.exists():
            files.private_dir(directory)  # state from before: folder and key made private
            files.restrict(key_path)
            authority = cls._load(cert_path, key_path)
            trust = directory / TRUST_FILE
            if trust.exists():
                authority._trust_pem = trust.read_bytes()
            return authority
        if cert_path.exists() or key_path.exists():
            raise Conflict(
                f"CA directory {directory} holds only one of {CA_CERT_FILE} and {CA_KEY_FILE}; "
                "restore the missing file (a new CA would orphan every enrolled node)"
            )
        authority = cls._create(site_name)
        files.private_dir(directory)
        _write_private(key_path, private_key_pem(authority._key))
        _write_public(cert_path, authority.cert_pem)
        return authority

    @classmethod
    def load_files(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """A CA from its two files (no bundle; pki/rotation.py reads the old CA this way)."""
        return cls._load(cert_path, key_path)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    @classmethod
    def _load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise Conflict(f"CA files {cert_path} and {key_path} cannot be read: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _key_matches(cert, key):
            raise Conflict(f"{key_path} is not the private key of {cert_path}")
        return cls(cert, key)

    @classmethod
    def create(cls, site_name: str) -> CertificateAuthority:
        """A new CA (in memory; pki/rotation.py writes it)."""
        return cls._create(site_name)

    @classmethod
    def _create(cls, site_name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgecloud"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"edgecloud CA {site_name}"),
            ]
        )
        builder = (
            _validity(x509.CertificateBuilder(), CA_VALIDITY)
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        return cls(builder.sign(key, hashes.SHA256()), key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self._cert_pem

    @property
    def trust_pem(self) -> bytes:
        """The CA certificates a node should trust (enrollment and renewals hand it out): this
        CA's, or during a rotation the bundle, this (new) CA first."""
        return self._trust_pem

    @property
    def rotating(self) -> bool:
        """Whether a CA rotation is in progress (another CA is trusted besides this one)."""
        return self._trust_pem != self._cert_pem

    def issued(self, cert_der_or_pem: bytes) -> bool:
        """Whether this CA (the one signing now) issued the certificate."""
        return verify_signed_by(cert_der_or_pem, self._cert_pem)

    @property
    def key_pem(self) -> bytes:
        """The CA's private key, PEM (pki/rotation.py keeps the previous one for a rollback)."""
        return private_key_pem(self._key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate's DER, lowercase hex without colons."""
        return fingerprint_of(self._cert_pem)

    def ensure_server_cert(
        self, directory: Path, hostnames: list[str], ips: list[str]
    ) -> tuple[Path, Path]:
        """server.crt and server.key in ``directory`` for these SANs, issued only if needed.

        Existing files are kept when they are signed by this CA, cover every requested name
        and address, match each other and are not close to expiry.
        """
        addresses = _parse_ips(ips)
        if not hostnames and not addresses:
            raise InvalidInput("a server certificate needs a hostname or an IP", "hostnames")
        cert_path, key_path = directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE
        if not self._server_cert_usable(cert_path, key_path, hostnames, addresses):
            self._issue_server_cert(directory, hostnames, addresses)
        files.restrict(key_path)  # a key kept from before may have been left wider
        return cert_path, key_path

    def _server_cert_usable(
        self, cert_path: Path, key_path: Path, hostnames: list[str], addresses: list[IpAddress]
    ) -> bool:
        if not (cert_path.exists() and key_path.exists()):
            return False
        pem = cert_path.read_bytes()
        # during a CA rotation the old CA's server certificate stays: nodes that have not
        # renewed yet trust only the old CA
        if not any(verify_signed_by(pem, ca) for ca in split_pem(self._trust_pem)):
            return False
        cert = x509.load_pem_x509_certificate(pem)
        renew_at = cert.not_valid_after_utc - SERVER_RENEW_BEFORE
        return (
            _now() < renew_at
            and _covers(cert, hostnames, addresses)
            and _key_file_matches(cert, key_path)
        )

    def _issue_server_cert(
        self, directory: Path, hostnames: list[str], addresses: list[IpAddress]
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        names += [x509.IPAddress(a) for a in addresses]
        common_name = hostnames[0] if hostnames else str(addresses[0])
        builder = (
            self._leaf_builder(common_name, key.public_key(), SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        )
        cert = builder.sign(self._key, hashes.SHA256())
        files.private_dir(directory)
        _write_private(directory / SERVER_KEY_FILE, private_key_pem(key))
        _write_public(directory / SERVER_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))

    def sign_csr(
        self, csr_pem: bytes, common_name: str, days: int = 365, address: str | None = None
    ) -> tuple[bytes, int]:
        """Issue a node certificate for the CSR's key: (certificate PEM, serial).

        The subject CN is ``common_name`` whatever the CSR asked for: the controller, not the
        node, decides a node's identity. The certificate names the node (DNS SAN, and IP SAN
        ``address``: its address on the site's internal network) and serves both ways: client
        towards the controller and other nodes' hypervisors, server for its own hypervisor's
        migration listener (libvirtd TLS, QEMU migration and NBD).
        """
        if not common_name:
            raise InvalidInput("a certificate needs a common name", "common_name")
        if days < 1:
            raise InvalidInput("a certificate must be valid for at least one day", "days")
        public_key = _csr_public_key(csr_pem)
        builder = self._leaf_builder(common_name, public_key, dt.timedelta(days=days))
        names: list[x509.GeneralName] = [x509.DNSName(common_name)]
        names += [x509.IPAddress(ip) for ip in _parse_ips([address] if address else [])]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), cert.serial_number

    def issue_software_signer(
        self, public_key: ec.EllipticCurvePublicKey, validity: dt.timedelta
    ) -> bytes:
        """A certificate (PEM) for the key that signs the site's software packages: code
        signing only, no name a TLS peer could present (pki/software.py)."""
        builder = self._leaf_builder("edgecloud software signer", public_key, validity)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=True
        )
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def _leaf_builder(
        self,
        common_name: str,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        validity: dt.timedelta,
    ) -> x509.CertificateBuilder:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        return (
            _validity(x509.CertificateBuilder(), validity)
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
        )


def write_client_trust(directory: Path, ca: CertificateAuthority) -> Path:
    """``CLIENT_TRUST_FILE`` holding ``ca``'s trust bundle (rewritten only when it differs)."""
    path = directory / CLIENT_TRUST_FILE
    if not path.exists() or path.read_bytes() != ca.trust_pem:
        _write_public(path, ca.trust_pem)
    return path


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold the CA folder (created private if missing) against other readers and writers of
    its CA files: a controller reloading them (controller/tls.py) while ``edgecloud ca rotate``
    replaces them must not settle a half-written replacement (pki/rotation.py)."""
    files.private_dir(directory)
    with files.locked(directory / LOCK_FILE):
        yield


def settle_replacement(directory: Path) -> None:
    """Complete a CA key/certificate replacement a crash interrupted (pki/rotation.py writes
    ``ca.next.key`` then ``ca.next.crt``, then renames them), or drop a partial one. The caller
    holds ``folder_lock``."""
    key, cert = directory / "ca.next.key", directory / "ca.next.crt"
    if not cert.exists():
        key.unlink(missing_ok=True)
        return
    if key.exists():
        key.replace(directory / CA_KEY_FILE)
    cert.replace(directory / CA_CERT_FILE)


def split_pem(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as PEM."""
    return [
        c.public_bytes(serialization.Encoding.PEM) for c in x509.load_pem_x509_certificates(bundle)
    ]


def _csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The CSR's key, refused unless the CSR is well formed, correctly signed and the key sound."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise EnrollmentError(f"certificate request is malformed: {exc}") from exc
    if not csr.is_signature_valid:
        raise EnrollmentError("certificate request signature is invalid")
    return _sound_public_key(csr.public_key())


def _sound_public_key(key: object) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise EnrollmentError(f"certificate request key curve {key.curve.name} is refused")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise EnrollmentError(f"certificate request RSA key of {key.key_size} bits is weak")
        return key
    raise EnrollmentError("certificate request key type is refused (use EC P-256)")


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """CA: sign certificates; leaf: sign, and "key encipherment", which libvirt and QEMU
    (GnuTLS) demand of a TLS peer's certificate when key usage is critical."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(builder: x509.CertificateBuilder, lifetime: dt.timedelta) -> x509.CertificateBuilder:
    now = _now()
    return builder.not_valid_before(now - CLOCK_SKEW).not_valid_after(now + lifetime)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_ips(ips: list[str]) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise InvalidInput(f"server certificate address is not an IP: {exc}", "ips") from exc


def _covers(cert: x509.Certificate, hostnames: list[str], addresses: list[IpAddress]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    wanted_names = {name.lower() for name in hostnames}
    return wanted_names <= have_names and set(addresses) <= have_ips


def _key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def _key_file_matches(cert: x509.Certificate, key_path: Path) -> bool:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return False
    return isinstance(key, ec.EllipticCurvePrivateKey) and _key_matches(cert, key)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only, replacing any old one atomically."""
    files.write_atomic(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    files.write_atomic(path, data, 0o644)
