"""What a VNF's guest is given besides its vNICs: hostname and user data (pure rules).

services/vnfs.py calls these at create time; the config drive (drivers/compute/configdrive.py)
carries the result to the guest. Limits as Nova: user data up to 64 KiB (here: decoded bytes),
a hostname of RFC 1123 labels (at most 63 characters each, 253 in all).
"""

from __future__ import annotations

import base64
import re

from edgecloud.errors import InvalidInput

MAX_USER_DATA = 65536  # bytes, decoded
LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def hostname_from_name(name: str) -> str:
    """A valid hostname made from a VNF name (as Nova sanitizes display names)."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:63].rstrip("-")
    return label or "vnf"


def check_hostname(hostname: str) -> str:
    """``hostname`` if it is a valid host name (dot-separated RFC 1123 labels)."""
    labels = hostname.split(".")
    if len(hostname) > 253 or not all(LABEL_RE.match(label) for label in labels):
        raise InvalidInput(
            f"{hostname!r} is not a valid hostname (letters, digits and '-', labels of 1-63 "
            "characters separated by '.', not starting or ending with '-')",
            field="hostname",
        )
    return hostname


def encode_user_data(value: bytes | str | None) -> str | None:
    """User data as stored (base64 text); bytes as given, text as UTF-8."""
    if value is None:
        return None
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > MAX_USER_DATA:
        raise InvalidInput(
            f"user_data is {len(raw)} bytes; the limit is {MAX_USER_DATA} bytes (64 KiB)",
            field="user_data",
        )
    return base64.b64encode(raw).decode()
