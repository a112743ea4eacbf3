"""The image store's blobs, shared by images and software packages: receiving an upload,
keeping it, serving a copy, dropping it once nothing names it.

A blob is named by its sha256 (images/blobs.py): equal uploads are stored once, whatever
they became (an image, a software package). An upload streams into the store's incoming
folder while it is hashed (``received``); the caller checks what the bytes are, then
``keep`` commits the blob and records its object in one turn of the blobs lock, so a blob is
never removed between an upload finding it and recording what names it. Anything that goes
wrong on the way leaves no object and no file.

Neighbours: services/images.py and services/software.py (what the blobs are), gateway/
image_serving.py (nodes fetch blobs over their mTLS port), store/image_copies.py (the store's
copy on PostgreSQL, for a controller that did not take the upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select

from edgecloud.errors import InsufficientStorage, InvalidInput
from edgecloud.images.blobs import BlobStore, BlobWriter
from edgecloud.services.context import ServiceContext
from edgecloud.store import image_copies
from edgecloud.store.database import transaction
from edgecloud.store.models import Image, SoftwarePackage

log = logging.getLogger(__name__)
FREE_SPACE_RESERVE = 2**30  # an upload must leave this much free on the store's disk
BLOBS_LOCK = "image-blobs"  # adding a blob and dropping an unused one take turns
T = TypeVar("T")


@dataclass(frozen=True)
class Incoming:
    path: Path  # the bytes received, in the store's incoming folder
    digest: str  # their sha256
    size: int


async def check_room(ctx: ServiceContext, size: int, what: str) -> None:
    """InsufficientStorage unless ``size`` bytes fit with the reserve kept free."""
    free = (await asyncio.to_thread(shutil.disk_usage, store_of(ctx).root)).free
    if size + FREE_SPACE_RESERVE > free:
        raise InsufficientStorage(
            f"the image store has {free // 2**20} MiB free: not enough for {size // 2**20} MiB "
            f"({what}) and the {FREE_SPACE_RESERVE // 2**20} MiB it keeps free"
        )


@contextlib.asynccontextmanager
async def received(
    ctx: ServiceContext, chunks: AsyncIterator[bytes], size: int, sha256: str | None
) -> AsyncIterator[Incoming]:
    """Exactly ``size`` bytes from ``chunks`` (matching ``sha256`` when given), in the store's
    incoming folder while the block runs; removed from there when it ends, kept or not."""
    writer = BlobWriter(store_of(ctx).incoming(f"upload-{uuid.uuid4().hex}"))
    try:
        await writer.open()
        async for chunk in chunks:
            if writer.size + len(chunk) > size:
                raise InvalidInput(f"the upload sent more than the {size} bytes it announced")
            await writer.write(chunk)
        digest = await writer.finish()
        if writer.size != size:
            raise InvalidInput(f"the upload ended after {writer.size} of {size} bytes")
        if sha256 is not None and digest != sha256:
            raise InvalidInput(
                f"the upload's sha256 is {digest}, not {sha256} as announced: the file changed "
                "or was damaged on the way",
                field="sha256",
            )
        yield Incoming(writer.path, digest, size)
    finally:
        await writer.discard()


async def keep(ctx: ServiceContext, incoming: Incoming, record: Callable[[], Awaitable[T]]) -> T:
    """The blob into the store (unless it is there), the store's copy, then ``record()`` (the
    object that names it), in one turn of the blobs lock; a blob nothing names is dropped
    again if ``record`` fails."""
    store = store_of(ctx)
    committed: str | None = None
    try:
        async with ctx.lock(BLOBS_LOCK):
            if not store.has(incoming.digest):
                await asyncio.to_thread(store.commit, incoming.path, incoming.digest)
                committed = incoming.digest
            await image_copies.put(ctx.sessions, incoming.digest, store.path(incoming.digest))
            return await record()
    except BaseException:
        if committed is not None:
            await drop_if_unused(ctx, committed)
        raise


async def drop_if_unused(ctx: ServiceContext, digest: str) -> None:
    """Remove blob ``digest`` (and the store's copy) when no image or package names it."""
    async with ctx.lock(BLOBS_LOCK):
        async with transaction(ctx.sessions) as s:
            images = await s.scalar(select(func.count()).where(Image.sha256 == digest))
            packages = await s.scalar(select(func.count()).where(SoftwarePackage.sha256 == digest))
        if not images and not packages:
            await asyncio.to_thread(store_of(ctx).remove, digest)
            await image_copies.drop(ctx.sessions, digest)


async def size_on_site(ctx: ServiceContext, digest: str) -> int | None:
    """The size of blob ``digest`` if an active image or a software package of this site is
    made of it (what nodes may fetch)."""
    async with transaction(ctx.sessions) as s:
        size = await s.scalar(
            select(Image.size).where(Image.sha256 == digest, Image.status == "active").limit(1)
        )
        if size is None:
            size = await s.scalar(
                select(SoftwarePackage.size).where(SoftwarePackage.sha256 == digest).limit(1)
            )
        return size


async def local_copy(ctx: ServiceContext, digest: str) -> bool:
    """Whether blob ``digest`` is on this controller's disk, copied first from the store's
    copy when another controller of the site took the upload (store/image_copies.py)."""
    store = store_of(ctx)
    if store.has(digest):
        return True
    async with ctx.lock(BLOBS_LOCK):
        if store.has(digest):
            return True
        writer = BlobWriter(store.incoming(f"shared-{digest}"))
        await writer.open()
        try:
            if not await image_copies.fetch(ctx.sessions, digest, writer.write):
                return False
            got = await writer.finish()
            if got != digest:
                log.error("the store's copy of blob %s has sha256 %s: not used", digest, got)
                return False
            await asyncio.to_thread(store.commit, writer.path, digest)
            log.info("blob %s… copied from the store", digest[:12])
            return True
        finally:
            await writer.discard()


def store_of(ctx: ServiceContext) -> BlobStore:
    if ctx.images is None:
        raise InvalidInput("this controller has no image store")
    return ctx.images
