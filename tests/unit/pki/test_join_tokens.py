"""Join tokens: round trip, malformed input, secret hashing."""

from __future__ import annotations

import base64
import json

import pytest

from edgecloud.errors import EnrollmentError
from edgecloud.pki.tokens import (
    JoinToken,
    decode,
    encode,
    hash_secret,
    new_secret,
    secrets_match,
)

TOKEN = JoinToken(
    address="ctl.example:7443", ca_fingerprint="ab" * 32, secret=new_secret(), host="node-1"
)


def _wrap(body: bytes) -> str:
    return "ecjoin1." + base64.urlsafe_b64encode(body).rstrip(b"=").decode()


def _with(**changes: object) -> str:
    data: dict[str, object] = {**TOKEN.__dict__, **changes}
    return _wrap(json.dumps(data).encode())


def test_round_trip() -> None:
    text = encode(TOKEN)
    assert text.startswith("ecjoin1.")
    assert "=" not in text
    assert decode(text) == TOKEN
    assert decode(f"  {text}\n") == TOKEN


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "ecjoin2." + encode(TOKEN).removeprefix("ecjoin1."),
        "ecjoin1.",
        "ecjoin1.!!!not-base64!!!",
        _wrap(b"\xff\xfe"),
        _wrap(b"{not json"),
        _wrap(b"[1, 2]"),
        _wrap(json.dumps({"address": "a:1"}).encode()),
        _with(extra="x"),
        _with(secret=""),
        _with(host=7),
        _with(address="no-port"),
        _with(address="host:99999"),
        _with(address=":7443"),
        _with(ca_fingerprint="AB" * 32),
        _with(ca_fingerprint="ab:cd"),
    ],
)
def test_malformed_tokens_are_refused(text: str) -> None:
    with pytest.raises(EnrollmentError, match="join token is malformed: "):
        decode(text)


def test_secret_hashing() -> None:
    secret = new_secret()
    assert len(secret) >= 32 and secret != new_secret()
    hashed = hash_secret(secret)
    assert len(hashed) == 64 and secret not in hashed
    assert secrets_match(secret, hashed)
    assert not secrets_match(secret + "x", hashed)


def test_a_token_names_the_other_controllers_and_a_single_ones_keeps_the_old_form() -> None:
    several = JoinToken(**{**TOKEN.__dict__, "others": ("10.0.0.2:7444", "[fd00::3]:7444")})
    assert decode(encode(several)) == several
    assert several.addresses == ("ctl.example:7443", "10.0.0.2:7444", "[fd00::3]:7444")
    body = encode(TOKEN).removeprefix("ecjoin1.")
    assert "others" not in json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.mark.parametrize(
    ("others", "reason"),
    [
        ("a:1", "must be a list"),
        ([1], "must be a list"),
        (["no-port"], "is not host:port"),
        ([f"h{i}:1" for i in range(9)], "more than 8"),
    ],
)
def test_bad_other_controllers_are_refused(others: object, reason: str) -> None:
    with pytest.raises(EnrollmentError, match=reason):
        decode(_with(others=others))
