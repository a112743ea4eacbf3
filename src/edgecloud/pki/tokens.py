"""Join tokens: the one string an operator copies from the controller to a new node.

A token says where the controller's gateway listens (and, on a site with several controllers,
where the others' listen: ``others``), which CA to trust (by fingerprint, see
pki/identity.py ``fingerprint_of``) and carries a one-time secret. The controller stores only
``hash_secret(secret)`` and compares with ``secrets_match``; the gateway's enrollment redeems
the token and has pki/authority.py sign the node's CSR.

Wire form: ``ecjoin1.`` followed by unpadded base64url of a JSON object with the fields of
``JoinToken``; ``others`` (a list) only when it is not empty, so a single controller's tokens
are what an older agent reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass, fields
from typing import Any, NoReturn

from edgecloud.errors import EnrollmentError

PREFIX = "ecjoin1."
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class JoinToken:
    """What a node needs to enroll with a controller."""

    address: str  # "host:port" of the controller's gateway
    ca_fingerprint: str  # sha256 hex of the CA certificate DER
    secret: str  # one-time secret; the controller keeps only its hash
    host: str  # name the node will have in the cluster
    others: tuple[str, ...] = ()  # the other controllers' gateways ("host:port"), if any

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every controller's gateway, the issuing one first."""
        return (self.address, *self.others)


_FIELDS = tuple(f.name for f in fields(JoinToken) if f.name != "others")
MAX_OTHERS = 8


def encode(token: JoinToken) -> str:
    """The token's wire form: ``ecjoin1.<base64url(json)>`` without padding."""
    data: dict[str, Any] = asdict(token)
    data["others"] = list(token.others)
    if not token.others:
        del data["others"]
    body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode(text: str) -> JoinToken:
    """Parse a token's wire form; EnrollmentError saying what is wrong if it is malformed."""
    text = text.strip()
    if not text.startswith(PREFIX):
        _malformed(f"it does not start with {PREFIX!r}")
    data = _json_of(text[len(PREFIX) :])
    others = _others_of(data)
    fields_ = _fields_of(data)
    _check_address(fields_["address"])
    if not _FINGERPRINT.fullmatch(fields_["ca_fingerprint"]):
        _malformed("the CA fingerprint is not 64 lowercase hex digits")
    return JoinToken(**fields_, others=others)


def new_secret() -> str:
    """A fresh random secret for a token."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    """What the controller stores instead of the secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, hashed: str) -> bool:
    """Whether ``secret`` hashes to ``hashed``, in constant time."""
    return hmac.compare_digest(hash_secret(secret), hashed)


def _malformed(reason: str) -> NoReturn:
    raise EnrollmentError(f"join token is malformed: {reason}")


def _json_of(body: str) -> Any:
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        _malformed("its body is not base64url")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        _malformed("its body is not JSON")


def _others_of(data: Any) -> tuple[str, ...]:
    """The optional ``others`` list, checked and removed from ``data``."""
    if not isinstance(data, dict) or "others" not in data:
        return ()
    others = data.pop("others")
    if not isinstance(others, list) or not all(isinstance(a, str) for a in others):
        _malformed("others must be a list of host:port strings")
    if len(others) > MAX_OTHERS:
        _malformed(f"it names more than {MAX_OTHERS} other controllers")
    for address in others:
        _check_address(address)
    return tuple(others)


def _fields_of(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        _malformed("its body is not a JSON object")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        _malformed(f"it lacks {', '.join(missing)}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        _malformed(f"it has unknown fields {', '.join(unknown)}")
    empty = [name for name in _FIELDS if not isinstance(data[name], str) or not data[name]]
    if empty:
        _malformed(f"{', '.join(empty)} must be non-empty strings")
    return {name: data[name] for name in _FIELDS}


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        _malformed(f"address {address!r} is not host:port")
