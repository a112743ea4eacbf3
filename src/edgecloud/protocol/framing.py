"""Length-prefixed JSON frames over an asyncio stream (the mTLS agent channel).

A frame is a 4-byte big-endian length then that many bytes of UTF-8 JSON (one object).
Frames above MAX_FRAME (or the reader's smaller ``limit``: the gateway allows 64 KiB before a
peer is authenticated) are refused before their body is read, so a peer cannot make the other
side allocate without bound. A message nested deeper than MAX_DEPTH is refused as well (no
message needs more than about ten levels; deeper ones only make encoders and validators recurse).
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from edgecloud.errors import ProtocolError

MAX_FRAME = 16 * 1024 * 1024
MAX_DEPTH = 64
_HEADER = struct.Struct(">I")


def encode_frame(message: dict[str, Any]) -> bytes:
    """One message as a frame."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes is larger than {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> dict[str, Any]:
    """The next message; IncompleteReadError when the peer closed the connection."""
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > limit:
        raise ProtocolError(f"peer sent a frame of {length} bytes (limit {limit})")
    try:
        message = json.loads(await reader.readexactly(length))
    except ValueError as exc:
        raise ProtocolError(f"peer sent a frame that is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("peer sent a frame nested too deeply") from exc
    if not isinstance(message, dict):
        raise ProtocolError("peer sent a frame that is not a JSON object")
    if not _within_depth(message, MAX_DEPTH):
        raise ProtocolError(f"peer sent a frame nested deeper than {MAX_DEPTH} levels")
    return message


def _within_depth(value: Any, limit: int) -> bool:
    """Whether no container in ``value`` is nested deeper than ``limit`` (iterative)."""
    level: list[Any] = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            deeper += [c for c in children if type(c) is dict or type(c) is list]  # JSON's own
        if not deeper:
            return True
        level = deeper
    return False


async def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """Send one message and wait until the transport accepted it; ConnectionResetError when the
    connection is closing (asyncio's TLS transport fails obscurely on a write after close)."""
    if writer.is_closing():
        raise ConnectionResetError("the connection is closed")
    writer.write(encode_frame(message))
    await writer.drain()
