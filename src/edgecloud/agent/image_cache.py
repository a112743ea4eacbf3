"""The node's image cache: blobs by sha256 under STATE/images, fetched once, evicted when unused.

``ensure(sha256, size)`` returns the path of a complete, verified, read-only copy of the blob,
fetching it from the controller first when the node does not have it (one fetch per blob at a
time, however many VNFs wait for it). ``evict(keep)`` removes the blobs no desired VNF uses;
the applier calls it after a resync, once the domains that used them are gone (their overlays
name the blob as backing file). Partial files of interrupted fetches stay and are resumed.

Neighbours: agent/applying.py (the only caller), agent/image_fetching.py (the transfer),
images/blobs.py (the files).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from edgecloud.images.blobs import BlobStore

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    async def fetch(self, sha256: str, size: int, partial: Path) -> None: ...


class ImageCache:
    def __init__(self, root: Path, fetcher: Fetcher) -> None:
        self.blobs = BlobStore(root)
        self.fetcher = fetcher
        self._fetching: dict[str, asyncio.Task[Path]] = {}
        self.fetched = 0  # blobs fetched since start (for reports and tests)

    async def ensure(self, sha256: str, size: int) -> Path:
        """The local path of blob ``sha256``, fetched first if needed."""
        path = self.blobs.path(sha256)
        if await asyncio.to_thread(path.is_file):
            return path
        task = self._fetching.get(sha256)
        if task is None:
            task = asyncio.create_task(self._fetch(sha256, size), name=f"fetch-{sha256[:12]}")
            self._fetching[sha256] = task
            task.add_done_callback(lambda _t: self._fetching.pop(sha256, None))
        return await asyncio.shield(task)

    async def _fetch(self, sha256: str, size: int) -> Path:
        await asyncio.to_thread(self.blobs.prepare)
        partial = self.blobs.incoming(sha256)
        log.info("fetching image %s… (%d bytes) from the controller", sha256[:12], size)
        await self.fetcher.fetch(sha256, size, partial)
        path = await asyncio.to_thread(self.blobs.commit, partial, sha256)
        self.fetched += 1
        return path

    async def evict(self, keep: set[str]) -> list[str]:
        """Remove every cached blob not in ``keep`` (and not being fetched); returns them."""
        busy = keep | self._fetching.keys()
        gone = sorted(await asyncio.to_thread(self.blobs.digests) - busy)
        for digest in gone:
            log.info("evicting image %s… (no VNF on this node uses it)", digest[:12])
            await asyncio.to_thread(self.blobs.remove, digest)
        await asyncio.to_thread(self.blobs.clear_incoming, frozenset(busy))
        return gone

    async def close(self) -> None:
        for task in list(self._fetching.values()):
            task.cancel()
        await asyncio.gather(*self._fetching.values(), return_exceptions=True)
