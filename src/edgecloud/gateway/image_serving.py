"""Image blobs to nodes, over the gateway's own mTLS port: no new port, no new firewall rule.

A node that must run a VNF opens a second connection to the gateway, with the same
certificate as its session, and sends ``fetch_image {sha256, offset}``; the gateway answers
``image {sha256, size, offset}`` and then the raw bytes from ``offset`` to the end, and closes.
``offset`` lets a node resume a transfer that broke (agent/image_fetching.py). Only blobs of
this site's active images and software packages are served (services/blobs.py), only to hosts
whose certificate is current.

Throttled: at most ``max_transfers`` blobs stream at once (disk and TLS work); up to
``max_waiting`` more wait for a slot; beyond that a node gets ``retry {retry_after}`` with a
jittered delay, as in admission.py. So a start-up storm of nodes that all need the same image
becomes an orderly queue, not an image storm.

Neighbours: gateway.py hands over connections whose first frame is ``fetch_image``;
services/blobs.py says which blobs exist; images/blobs.py is where they are.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from edgecloud.errors import ProtocolError
from edgecloud.images.blobs import SHA256
from edgecloud.protocol import messages
from edgecloud.protocol.framing import write_frame
from edgecloud.services import blobs
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
CHUNK = 256 * 1024


@dataclass(frozen=True)
class TransferLimits:
    max_transfers: int = 4  # blobs streaming at once
    max_waiting: int = 256  # fetches waiting for a slot; beyond: retry
    retry_after: tuple[float, float] = (1.0, 5.0)  # jitter range of retry_after, seconds


@dataclass
class TransferStats:
    started: int = 0
    finished: int = 0
    failed: int = 0
    retried: int = 0  # 'retry' answers
    bytes_sent: int = 0
    active: int = 0
    waiting: int = 0
    active_peak: int = 0


class ImageServing:
    """Serves ``fetch_image`` requests, a bounded number at a time."""

    def __init__(self, ctx: ServiceContext, limits: TransferLimits | None = None) -> None:
        self.ctx = ctx
        self.limits = limits or TransferLimits()
        self.stats = TransferStats()
        self._slots = asyncio.Semaphore(self.limits.max_transfers)

    async def serve(
        self, request: dict[str, Any], writer: asyncio.StreamWriter, host_name: str
    ) -> None:
        """Answer one fetch on its connection (the caller closes the connection)."""
        digest, offset = _parse(request)
        size = await blobs.size_on_site(self.ctx, digest)
        if size is None or self.ctx.images is None or not await blobs.local_copy(self.ctx, digest):
            await write_frame(
                writer, messages.error("no_image", f"no image with sha256 {digest} on this site")
            )
            return
        if offset > size:
            raise ProtocolError(f"offset {offset} is past the end of a {size}-byte image")
        stats = self.stats
        if stats.waiting >= self.limits.max_waiting:
            stats.retried += 1
            delay = random.uniform(*self.limits.retry_after)
            await write_frame(writer, messages.make("retry", retry_after=delay))
            return
        stats.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            stats.waiting -= 1
        stats.active += 1
        stats.active_peak = max(stats.active_peak, stats.active)
        stats.started += 1
        try:
            await write_frame(
                writer, messages.make("image", sha256=digest, size=size, offset=offset)
            )
            sent = await _stream(self.ctx.images.path(digest), offset, writer)
            stats.bytes_sent += sent
            stats.finished += 1
            log.info(
                "image %s… sent to host %s (%d bytes from %d)", digest[:12], host_name, sent, offset
            )
        except BaseException:
            stats.failed += 1
            raise
        finally:
            stats.active -= 1
            self._slots.release()


def _parse(request: dict[str, Any]) -> tuple[str, int]:
    digest, offset = request.get("sha256"), request.get("offset", 0)
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise ProtocolError("fetch_image needs a sha256 of 64 lowercase hex digits")
    if not isinstance(offset, int) or offset < 0:
        raise ProtocolError("fetch_image offset must be a non-negative integer")
    return digest, offset


async def _stream(path: Path, offset: int, writer: asyncio.StreamWriter) -> int:
    """Send the file from ``offset``; reads run in a worker thread, writes wait for the peer."""
    f: BinaryIO = await asyncio.to_thread(path.open, "rb")
    sent = 0
    try:
        await asyncio.to_thread(f.seek, offset)
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
    finally:
        await asyncio.to_thread(f.close)
    return sent
