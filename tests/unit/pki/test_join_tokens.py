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
