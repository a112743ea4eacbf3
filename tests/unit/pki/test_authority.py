"""The site CA: created once, loaded after; server certificates; CSR signing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgecloud.errors import Conflict, EnrollmentError, InvalidInput
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import (
    cert_serial,
    fingerprint_of,
    make_key_and_csr,
    verify_signed_by,
)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _broken_signature(csr_pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s
    csr = x509.load_der_x509_csr(bytes(der))
    return csr.public_bytes(serialization.Encoding.PEM)


def test_created_once_then_loaded(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca", "lab")
    second = CertificateAuthority.load_or_create(tmp_path / "ca", "other-name-ignored")
    assert second.fingerprint == first.fingerprint
    assert second.cert_pem == first.cert_pem
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_ca_certificate_shape(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "lab" in _cn(cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3650
    assert ca.fingerprint == fingerprint_of(ca.cert_pem)
    assert len(ca.fingerprint) == 64 and ca.fingerprint == ca.fingerprint.lower()


def test_half_present_ca_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, "lab")
    (tmp_path / "ca.crt").unlink()
    with pytest.raises(Conflict, match=r"ca\.crt"):
        CertificateAuthority.load_or_create(tmp_path, "lab")


def test_sign_csr_forces_common_name(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    _key, csr = make_key_and_csr("i-want-to-be-the-controller")
    pem, serial = ca.sign_csr(csr, "node-7")
    cert = x509.load_pem_x509_certificate(pem)
    assert _cn(cert) == "node-7"
    assert serial == cert.serial_number == cert_serial(pem)
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert verify_signed_by(pem, ca.cert_pem)


def test_node_certificate_names_its_internal_address(tmp_path: Path) -> None:
    """Other nodes' hypervisors check the node by its address during a migration."""
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    _key, csr = make_key_and_csr("node-7")
    pem, _serial = ca.sign_csr(csr, "node-7", address="10.20.0.7")
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["node-7"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.20.0.7"]
    with pytest.raises(InvalidInput, match="not an IP"):
        ca.sign_csr(csr, "node-7", address="node-7.example")


def test_sign_csr_refuses_broken_signature(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    _key, csr = make_key_and_csr("node-1")
    with pytest.raises(EnrollmentError, match="certificate request signature is invalid"):
        ca.sign_csr(_broken_signature(csr), "node-1")


def test_sign_csr_refuses_garbage(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    with pytest.raises(EnrollmentError, match="certificate request is malformed"):
        ca.sign_csr(b"not a csr", "node-1")


def test_other_ca_does_not_verify(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "a", "a")
    other = CertificateAuthority.load_or_create(tmp_path / "b", "b")
    pem, _serial = other.sign_csr(make_key_and_csr("n")[1], "n")
    assert not verify_signed_by(pem, ca.cert_pem)
    assert not verify_signed_by(b"garbage", ca.cert_pem)


def test_server_cert_issued_with_sans(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    cert_path, key_path = ca.ensure_server_cert(tmp_path, ["ctl.example"], ["127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ctl.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert verify_signed_by(cert_path.read_bytes(), ca.cert_pem)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_server_cert_reused_when_it_covers_the_sans(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    cert_path, _ = ca.ensure_server_cert(tmp_path, ["a", "b"], ["::1"])
    before = cert_path.read_bytes()
    ca.ensure_server_cert(tmp_path, ["B"], [])
    assert cert_path.read_bytes() == before


def test_server_cert_reissued_for_new_san(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    cert_path, _ = ca.ensure_server_cert(tmp_path, ["a"], [])
    before = cert_path.read_bytes()
    ca.ensure_server_cert(tmp_path, ["a"], ["10.0.0.1"])
    assert cert_path.read_bytes() != before


def test_server_cert_reissued_when_from_another_ca(tmp_path: Path) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other", "other")
    other.ensure_server_cert(tmp_path / "tls", ["a"], [])
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", "lab")
    cert_path, _ = ca.ensure_server_cert(tmp_path / "tls", ["a"], [])
    assert verify_signed_by(cert_path.read_bytes(), ca.cert_pem)


def test_server_cert_needs_a_name_and_valid_ips(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "lab")
    with pytest.raises(InvalidInput):
        ca.ensure_server_cert(tmp_path, [], [])
    with pytest.raises(InvalidInput, match="not an IP"):
        ca.ensure_server_cert(tmp_path, ["a"], ["300.1.1.1"])
