"""The store's copy of each image blob on PostgreSQL, for every controller of the site.

An upload lands on the disk of the controller that took it (images/blobs.py); on PostgreSQL
the bytes are also written to a large object (``lo_create`` / ``lo_put``, ``CHUNK`` bytes per
statement, one transaction: the copy is whole or absent) recorded in ``image_blobs``. Another
controller asked for that blob by a node copies it to its own disk (``lo_get``) and checks its
sha256 before serving it (services/images.py ``local_blob``). The last image naming a blob
takes the copy with it (``lo_unlink``). On SQLite (one controller) nothing is copied.
Neighbours: services/images.py, store/models.py ``ImageBlob``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.store.database import transaction
from edgecloud.store.models import ImageBlob

CHUNK = 1 << 20


def _shared(s: AsyncSession) -> bool:
    return s.bind is not None and s.bind.dialect.name == "postgresql"


async def put(sessions: async_sessionmaker[AsyncSession], digest: str, path: Path) -> bool:
    """Copy the blob at ``path`` into the store unless it is there; whether it copied."""
    async with transaction(sessions) as s:
        if not _shared(s) or await s.get(ImageBlob, digest) is not None:
            return False
        oid = int(await s.scalar(text("SELECT lo_create(0)")) or 0)
        size = 0
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                await s.execute(
                    text("SELECT lo_put(:oid, :offset, :data)"),
                    {"oid": oid, "offset": size, "data": chunk},
                )
                size += len(chunk)
        s.add(ImageBlob(sha256=digest, oid=oid, size=size))
    return True


async def fetch(
    sessions: async_sessionmaker[AsyncSession],
    digest: str,
    write: Callable[[bytes], Awaitable[None]],
) -> bool:
    """Hand the store's copy of ``digest`` to ``write``, in order; False when there is none."""
    async with transaction(sessions) as s:
        if not _shared(s):
            return False
        row = await s.get(ImageBlob, digest)
        if row is None:
            return False
        offset = 0
        while offset < row.size:
            data = await s.scalar(
                text("SELECT lo_get(:oid, :offset, :length)"),
                {"oid": row.oid, "offset": offset, "length": min(CHUNK, row.size - offset)},
            )
            if not data:
                break
            await write(bytes(data))
            offset += len(data)
    return True


async def drop(sessions: async_sessionmaker[AsyncSession], digest: str) -> None:
    """Remove the store's copy of ``digest`` (if any)."""
    async with transaction(sessions) as s:
        if not _shared(s):
            return
        row = await s.get(ImageBlob, digest)
        if row is not None:
            await s.execute(text("SELECT lo_unlink(:oid)"), {"oid": row.oid})
            await s.delete(row)
