"""Signed software (issue 12): every release or patch package the site deploys carries a
manifest signed through the site's own trust chain, and a node checks it before using a byte.

- The controller keeps a **software-signing key** whose certificate the site CA issues (code
  signing only, 2 years, renewed 30 days before it ends: ``ensure_signer``), beside the CA in
  its pki folder (``software.crt``, ``software.key``, mode 0600).
- ``sign`` signs a manifest (what the package is: name, kind, release, the release a patch
  applies to, in-service or reboot-required, size and sha256) with it: ECDSA P-256 over SHA-256
  of the manifest's canonical JSON (sorted keys, no spaces), and ships the signer's certificate
  along: a ``SignedManifest``.
- ``verify`` (on the node, with the CA bundle it already trusts for its mTLS session) checks
  that the signer's certificate was issued by a CA of that bundle, is valid now and is for
  code signing, that the signature holds over exactly these manifest bytes, and returns the
  manifest; ``check_blob`` then checks the package's size and sha256 against it. Anything
  else raises ``Untrusted`` naming what failed.

A CA rotation makes signatures of the old CA's signer fail once the nodes trust only the new
CA: packages still to deploy are signed again after ``ca rotate finish``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgecloud import files
from edgecloud.errors import Untrusted
from edgecloud.pki.authority import CertificateAuthority, split_pem
from edgecloud.pki.identity import private_key_pem, verify_signed_by

SIGNER_CERT_FILE = "software.crt"
SIGNER_KEY_FILE = "software.key"
SIGNER_VALIDITY = dt.timedelta(days=730)
SIGNER_RENEW_BEFORE = dt.timedelta(days=30)
MANIFEST_FIELDS = ("name", "kind", "release", "applies_to", "reboot_required", "size", "sha256")


@dataclass(frozen=True)
class SignedManifest:
    manifest: dict[str, Any]
    signature: str  # base64 of the DER ECDSA signature over canonical(manifest)
    signer: str  # PEM of the signing certificate

    def to_wire(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "signature": self.signature, "signer": self.signer}


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest as JSON, keys sorted, no spaces."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def ensure_signer(
    ca: CertificateAuthority, directory: Path
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """The signing certificate (PEM) and key in ``directory``, issued by ``ca`` when missing,
    not issued by it, or within ``SIGNER_RENEW_BEFORE`` of its end."""
    cert_path, key_path = directory / SIGNER_CERT_FILE, directory / SIGNER_KEY_FILE
    if cert_path.exists() and key_path.exists():
        pem = cert_path.read_bytes()
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(pem)
        if (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.public_key() == cert.public_key()
            and verify_signed_by(pem, ca.cert_pem)
            and _now() < cert.not_valid_after_utc - SIGNER_RENEW_BEFORE
        ):
            return pem, key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = ca.issue_software_signer(key.public_key(), SIGNER_VALIDITY)
    files.private_dir(directory)
    files.write_atomic(key_path, private_key_pem(key), mode=0o600)
    files.write_atomic(cert_path, pem, mode=0o644)
    return pem, key


def sign(manifest: dict[str, Any], ca: CertificateAuthority, directory: Path) -> SignedManifest:
    """``manifest`` signed with the site's software-signing key (issued on first use)."""
    missing = [f for f in MANIFEST_FIELDS if f not in manifest]
    if missing:
        raise ValueError(f"a software manifest needs {', '.join(missing)}")
    pem, key = ensure_signer(ca, directory)
    signature = key.sign(canonical(manifest), ec.ECDSA(hashes.SHA256()))
    return SignedManifest(dict(manifest), base64.b64encode(signature).decode(), pem.decode())


def verify(
    signed: dict[str, Any] | SignedManifest, trust_pem: bytes, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The manifest, once its signer chains to a CA of ``trust_pem`` and the signature holds;
    ``Untrusted`` naming what failed otherwise."""
    if isinstance(signed, dict):
        signed = _parse(signed)
    try:
        signer = x509.load_pem_x509_certificate(signed.signer.encode())
    except ValueError as exc:
        raise Untrusted(f"the signer's certificate cannot be read: {exc}") from exc
    if not any(verify_signed_by(signed.signer.encode(), ca) for ca in split_pem(trust_pem)):
        raise Untrusted("the signer's certificate was not issued by this site's CA")
    at = now or _now()
    if not signer.not_valid_before_utc <= at <= signer.not_valid_after_utc:
        raise Untrusted(
            f"the signer's certificate is not valid now (valid {signer.not_valid_before_utc:%Y-%m-%d}"
            f" to {signer.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise Untrusted("the signer's certificate is not for code signing")
    public_key = signer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Untrusted("the signer's key is not an EC key")
    try:
        signature = base64.b64decode(signed.signature, validate=True)
        public_key.verify(signature, canonical(signed.manifest), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Untrusted("the manifest's signature does not hold") from exc
    return signed.manifest


def check_blob(manifest: dict[str, Any], path: Path) -> None:
    """``Untrusted`` unless the file at ``path`` has the manifest's size and sha256."""
    size = path.stat().st_size
    if size != manifest["size"]:
        raise Untrusted(f"the package has {size} bytes, its manifest says {manifest['size']}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != manifest["sha256"]:
        raise Untrusted("the package's sha256 is not its manifest's")


def _parse(wire: dict[str, Any]) -> SignedManifest:
    manifest, signature, signer = wire.get("manifest"), wire.get("signature"), wire.get("signer")
    if not isinstance(manifest, dict) or not isinstance(signature, str):
        raise Untrusted("a signed manifest needs a manifest object and a signature")
    if not isinstance(signer, str):
        raise Untrusted("a signed manifest needs its signer's certificate")
    return SignedManifest(manifest, signature, signer)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SiteSigner:
    """Signs manifests with the software-signing key of the controller whose pki folder is
    ``directory``: the CA is read from the folder at each signing, so a rotated site CA
    (controller/ca_following.py) issues the next signer."""

    def __init__(self, directory: Path, site_name: str) -> None:
        self.directory, self.site_name = directory, site_name

    def sign(self, manifest: dict[str, Any]) -> SignedManifest:
        ca = CertificateAuthority.load_or_create(self.directory, self.site_name)
        return sign(manifest, ca, self.directory)
