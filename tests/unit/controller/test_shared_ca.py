"""The site CA key as the store keeps it: sealed with the site secret, opened only by it."""

from __future__ import annotations

import pytest

from edgecloud.controller.shared_ca import check_secret, seal, unseal
from edgecloud.errors import Conflict, InvalidInput
from edgecloud.pki.authority import CertificateAuthority

SECRET = "correct horse battery staple"


def test_the_sealed_key_opens_with_the_secret_only() -> None:
    ca = CertificateAuthority.create("edge")
    sealed = seal(ca.key_pem, SECRET)
    assert sealed.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert ca.key_pem.decode() not in sealed
    assert unseal(sealed, SECRET) == ca.key_pem
    with pytest.raises(Conflict, match="does not open the site CA key"):
        unseal(sealed, SECRET + "!")


def test_a_short_secret_is_refused_and_white_space_around_it_is_not_part_of_it() -> None:
    assert check_secret(f"  {SECRET}\n") == SECRET
    with pytest.raises(InvalidInput, match="at least 16 characters"):
        check_secret("short\n")
