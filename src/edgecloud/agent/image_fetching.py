"""Fetch one image blob from the controller, over the gateway's mTLS port, resumably.

Each fetch is its own short connection with the node's certificate (gateway/
image_serving.py): ``fetch_image {sha256, offset}``, then ``image {size, offset}`` and the raw
bytes. The bytes go to a partial file while they are hashed (images/blobs.py); a connection
that breaks is retried with full-jitter backoff and resumes where the partial file ends; a
controller that is busy streaming to others answers ``retry {retry_after}`` and is asked again
after that delay. The blob is accepted only when its sha256 is the one asked for.

Neighbours: agent/image_cache.py decides what to fetch and keeps the result; agent/
connection.py opens the mTLS connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from edgecloud.agent import connection
from edgecloud.agent.identity import AgentIdentity
from edgecloud.errors import DriverError, EdgecloudError
from edgecloud.images.blobs import BlobWriter
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame

log = logging.getLogger(__name__)
READ_SIZE = 256 * 1024
IDLE_TIMEOUT = 60.0  # no byte for this long: the transfer is broken
FETCH_DEADLINE = 3600.0  # give up (the next resync tries again)


class ImageFetcher:
    """Fetches blobs for one node identity (``source_address``: where to dial from)."""

    def __init__(
        self,
        identity: AgentIdentity,
        source_address: str | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.identity = identity
        self.source_address = source_address
        self.backoff = backoff
        self._tls: ssl.SSLContext | None = None

    def forget_credentials(self) -> None:
        """The node's certificate was renewed: the next connection loads the new one."""
        self._tls = None

    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        """Fill ``partial`` with blob ``sha256`` (resuming what it holds); DriverError if the
        controller has no such blob, the bytes do not match, or the deadline passes."""
        backoff = connection.Backoff(*self.backoff)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FETCH_DEADLINE
        while True:
            try:
                delay = await self._attempt(sha256, size, partial)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, EdgecloudError) as exc:
                if isinstance(exc, DriverError):
                    raise
                log.warning("fetching image %s… broke: %s; resuming", sha256[:12], exc)
                delay = None
            else:
                if delay is None:
                    return
            if loop.time() > deadline:
                raise DriverError(f"could not fetch image {sha256[:12]}… in {FETCH_DEADLINE:.0f} s")
            if delay is None:
                await backoff.wait()
            else:
                await asyncio.sleep(delay)

    async def _attempt(self, sha256: str, size: int, partial: Path) -> float | None:
        """One connection: None when the blob is complete, else the delay the controller asked."""
        writer_file = BlobWriter(partial, resume=True)
        have = await writer_file.open()
        if have > size:  # not a prefix of this blob: start over
            await writer_file.discard()
            writer_file = BlobWriter(partial)
            have = await writer_file.open()
        complete = False
        try:
            if have < size:
                answer = await self._transfer(sha256, have, writer_file)
                if answer is not None:
                    return answer
            digest = await writer_file.finish()
            complete = True
        finally:
            if not complete:
                await writer_file.finish()  # keep what arrived: the next attempt resumes
        if writer_file.size != size or digest != sha256:
            partial.unlink(missing_ok=True)
            raise DriverError(
                f"image {sha256[:12]}… arrived damaged ({writer_file.size} bytes, sha256 "
                f"{digest[:12]}…); it will be fetched again"
            )
        return None

    async def _transfer(self, sha256: str, offset: int, out: BlobWriter) -> float | None:
        if self._tls is None:
            self._tls = connection.agent_context(self.identity)
        reader, writer = await connection.connect(self.identity, self.source_address, self._tls)
        try:
            await write_frame(writer, messages.make("fetch_image", sha256=sha256, offset=offset))
            answer = await asyncio.wait_for(read_frame(reader), IDLE_TIMEOUT)
            kind = messages.check(answer, messages.CONTROLLER_TYPES)
            if kind == "retry":
                return float(answer.get("retry_after", 1.0))
            if kind == "error":
                raise DriverError(
                    f"the controller cannot send image {sha256[:12]}…: {answer.get('message')}"
                )
            if kind != "image" or answer.get("offset") != offset:
                raise EdgecloudError(f"unexpected answer {kind!r} to fetch_image")
            remaining = int(answer["size"]) - offset
            while remaining > 0:
                chunk = await asyncio.wait_for(reader.read(min(READ_SIZE, remaining)), IDLE_TIMEOUT)
                if not chunk:
                    raise EdgecloudError(
                        f"the controller closed the transfer {remaining} bytes early"
                    )
                await out.write(chunk)
                remaining -= len(chunk)
            return None
        finally:
            await connection.close(writer)
