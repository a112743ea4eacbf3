"""Enrollment trusts only the CA its join token names, whatever else an unverified peer sends."""

from __future__ import annotations

from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.joining import named_ca as _named_ca


def test_only_the_ca_the_token_names_is_kept() -> None:
    real, other = CertificateAuthority.create("edge"), CertificateAuthority.create("intruder")
    assert _named_ca(other.cert_pem + real.cert_pem, real.fingerprint) == real.cert_pem
    assert _named_ca(real.cert_pem + other.cert_pem, real.fingerprint) == real.cert_pem
    assert _named_ca(other.cert_pem, real.fingerprint) is None
    assert _named_ca(b"not a certificate", real.fingerprint) is None
