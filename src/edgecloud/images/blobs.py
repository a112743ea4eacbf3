"""A content-addressed file store: image bytes kept under their sha256, read-only.

Used on both sides of an image's life: the controller's image store (uploads, services/
images.py) and each node's image cache (agent/image_cache.py). Layout under ``root``:

    <sha256>             a complete, verified blob (mode 0444; never written again)
    .incoming/<key>      bytes being received (a partial file; resumable where the caller wants)

``BlobWriter`` streams bytes to an incoming file while hashing them, in a worker thread in
batches of ``BATCH`` bytes, so memory stays bounded whatever the size and the event loop never
waits on the disk or the hash. ``commit`` fsyncs and renames atomically, so a blob either is
complete and verified or is not there at all (a crash leaves only an incoming file).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO

from edgecloud.errors import InvalidInput

BATCH = 1 << 20  # bytes written and hashed per worker-thread call
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Blobs under ``root``, named by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming_dir = self.root / ".incoming"

    def prepare(self) -> None:
        """Create the folders (private to the owner)."""
        self.incoming_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise InvalidInput(f"{sha256!r} is not a sha256 hex digest", field="sha256")
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def digests(self) -> set[str]:
        """Every complete blob."""
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.iterdir() if SHA256.match(p.name) and p.is_file()}

    def incoming(self, key: str) -> Path:
        return self.incoming_dir / key

    def commit(self, partial: Path, sha256: str) -> Path:
        """Make the verified file ``partial`` the blob ``sha256`` (atomic; read-only)."""
        target = self.path(sha256)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.chmod(partial, 0o444)
        partial.replace(target)
        _fsync_dir(self.root)
        return target

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clear_incoming(self, keep: frozenset[str] = frozenset()) -> None:
        """Delete partial files (left by a crash), except those named in ``keep``."""
        if self.incoming_dir.is_dir():
            for partial in self.incoming_dir.iterdir():
                if partial.name not in keep:
                    partial.unlink(missing_ok=True)


class BlobWriter:
    """Receives one blob into ``path``, hashing as it goes; ``resume`` keeps what is there."""

    def __init__(self, path: Path, *, resume: bool = False) -> None:
        self.path = path
        self._resume = resume
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    async def open(self) -> int:
        """Open the file; returns how many bytes it already holds (0 unless resuming)."""
        self.size = await asyncio.to_thread(self._open)
        return self.size

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._resume and self.path.exists():
            with self.path.open("rb") as f:
                while chunk := f.read(BATCH):
                    self._hash.update(chunk)
            self._file = self.path.open("ab")
        else:
            self._file = self.path.open("wb")
        os.chmod(self.path, 0o600)
        return self.path.stat().st_size

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= BATCH:
            await self._flush()

    async def finish(self) -> str:
        """Flush, close, and return the sha256 of everything written."""
        await self._flush()
        await asyncio.to_thread(self._close)
        return self._hash.hexdigest()

    async def discard(self) -> None:
        await asyncio.to_thread(self._close)
        self.path.unlink(missing_ok=True)

    async def _flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        assert self._file is not None
        self._file.write(data)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
