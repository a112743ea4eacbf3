"""Signed software packages: a manifest signed with the site's software-signing key verifies
against the site's CA bundle (also mid-rotation, old and new CA), and every way it could be
forged or mistaken is refused naming what failed: another site's CA, a changed manifest, a
TLS certificate as signer, an expired signer, a package whose bytes differ."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edgecloud.errors import Untrusted
from edgecloud.pki import software
from edgecloud.pki.authority import CertificateAuthority

PACKAGE = b"edgecloud-0.3.0 wheel bytes\n" * 100


def manifest(**changed: object) -> dict[str, object]:
    return {
        "name": "edgecloud-0.3.0",
        "kind": "release",
        "release": "0.3.0",
        "applies_to": None,
        "reboot_required": False,
        "size": len(PACKAGE),
        "sha256": hashlib.sha256(PACKAGE).hexdigest(),
        **changed,
    }


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("site-a")


def test_a_signed_manifest_verifies_against_the_site_ca_and_its_package(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    signed = software.sign(manifest(), ca, tmp_path)
    assert software.verify(signed.to_wire(), ca.cert_pem) == manifest()
    package = tmp_path / "pkg.whl"
    package.write_bytes(PACKAGE)
    software.check_blob(manifest(), package)
    package.write_bytes(PACKAGE[:-1] + b"X")
    with pytest.raises(Untrusted, match="sha256 is not its manifest's"):
        software.check_blob(manifest(), package)
    package.write_bytes(PACKAGE + b"more")
    with pytest.raises(Untrusted, match="bytes, its manifest says"):
        software.check_blob(manifest(), package)
    assert (tmp_path / software.SIGNER_KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_the_signer_is_kept_and_issued_again_only_when_it_no_longer_fits(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    first, _ = software.ensure_signer(ca, tmp_path)
    assert software.ensure_signer(ca, tmp_path)[0] == first
    other = CertificateAuthority.create("site-a")  # after a CA rotation
    assert software.ensure_signer(other, tmp_path)[0] != first


def test_forgeries_and_mistakes_are_refused_naming_what_failed(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    signed = software.sign(manifest(), ca, tmp_path)
    stranger = CertificateAuthority.create("site-b")
    with pytest.raises(Untrusted, match="not issued by this site's CA"):
        software.verify(signed, stranger.cert_pem)
    tampered = dataclasses.replace(signed, manifest=manifest(reboot_required=True))
    with pytest.raises(Untrusted, match="signature does not hold"):
        software.verify(tampered, ca.cert_pem)
    with pytest.raises(Untrusted, match="signature does not hold"):
        software.verify(dataclasses.replace(signed, signature="not base64!"), ca.cert_pem)
    # a TLS certificate of the same CA (a node's, say) may not sign software
    key = ec.generate_private_key(ec.SECP256R1())
    ca.ensure_server_cert(tmp_path / "tls", ["ctl"], [])
    tls_pem = (tmp_path / "tls" / "server.crt").read_bytes()
    forged = software.SignedManifest(manifest(), signed.signature, tls_pem.decode())
    with pytest.raises(Untrusted, match="not for code signing"):
        software.verify(forged, ca.cert_pem)
    del key
    later = dt.datetime.now(dt.UTC) + software.SIGNER_VALIDITY + dt.timedelta(days=1)
    with pytest.raises(Untrusted, match="not valid now"):
        software.verify(signed, ca.cert_pem, now=later)
    with pytest.raises(Untrusted, match="needs its signer's certificate"):
        software.verify({"manifest": manifest(), "signature": signed.signature}, ca.cert_pem)
    with pytest.raises(ValueError, match="needs sha256"):
        software.sign({k: v for k, v in manifest().items() if k != "sha256"}, ca, tmp_path)


def test_during_a_ca_rotation_a_bundle_of_both_cas_verifies_either_signer(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    new = CertificateAuthority.create("site-a")
    old_signed = software.sign(manifest(), ca, tmp_path / "old")
    new_signed = software.sign(manifest(), new, tmp_path / "new")
    bundle = ca.cert_pem + new.cert_pem
    assert software.verify(old_signed, bundle) == software.verify(new_signed, bundle)
    with pytest.raises(Untrusted):  # after the rotation: the old CA's signer is no longer
        software.verify(old_signed, new.cert_pem)
