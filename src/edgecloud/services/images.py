"""Images: uploaded into the site's image store, checked, and deleted only when unused.

An upload streams into the store (images/blobs.py) while it is hashed, is checked for what it
claims to be (images/inspecting.py: qemu-img for disks, magic bytes for kernels and
ramdisks), and only then becomes an image, in one transaction. Anything that goes wrong on the
way (a dropped connection, a wrong checksum, a file that is not an image, a name taken
meanwhile) leaves no image and no file. Equal bytes are stored once: images are blobs named by
their sha256 (services/blobs.py, shared with software packages), and a blob goes when the
last image or package naming it is deleted.

Rules: a kernel may name a ramdisk image (``ramdisk``) and a ``cmdline``; nothing else may.
An image used by a VNF, or a ramdisk used by a kernel image, cannot be deleted. ``legacy``
images (registered by host path before the image store) cannot boot new VNFs.

Neighbours: api/routers/images.py (the streaming endpoint), services/vnfs.py
(``check_bootable``), services/desired.py (what nodes are told to fetch), gateway/
image_serving.py (nodes fetch blobs over their mTLS port).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput
from edgecloud.images.blobs import SHA256
from edgecloud.images.inspecting import BOOT_FORMATS, FORMATS, ImageFacts, inspect_image
from edgecloud.services import blobs
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Image, Instance

log = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 256 * 2**30
MAX_CMDLINE = 1024


async def upload(
    ctx: ServiceContext,
    name: str,
    disk_format: str,
    chunks: AsyncIterator[bytes],
    *,
    size: int,
    sha256: str | None = None,
    ramdisk: str | None = None,
    cmdline: str | None = None,
) -> Image:
    """Receive ``size`` bytes from ``chunks`` as image ``name``; all or nothing."""
    await _check_request(ctx, name, disk_format, size, sha256, ramdisk, cmdline)
    async with blobs.received(ctx, chunks, size, sha256) as incoming:
        facts = await asyncio.to_thread(
            inspect_image, incoming.path, disk_format, f"image {name!r}"
        )
        image = await blobs.keep(
            ctx,
            incoming,
            lambda: _record(ctx, name, facts.format, incoming.digest, facts, ramdisk, cmdline),
        )
    log.info(
        "image %s uploaded (%s, %d bytes, sha256 %s)", name, facts.format, size, incoming.digest
    )
    return image


async def _check_request(
    ctx: ServiceContext,
    name: str,
    disk_format: str,
    size: int,
    sha256: str | None,
    ramdisk: str | None,
    cmdline: str | None,
) -> None:
    """Everything that can be refused before a single byte is read."""
    if disk_format not in FORMATS:
        raise InvalidInput(
            f"disk_format {disk_format!r} is not one of {', '.join(FORMATS)}", field="disk_format"
        )
    if disk_format != "kernel" and (ramdisk is not None or cmdline is not None):
        raise InvalidInput("ramdisk and cmdline go with a kernel image only", field="ramdisk")
    if cmdline is not None and len(cmdline) > MAX_CMDLINE:
        raise InvalidInput(f"cmdline is longer than {MAX_CMDLINE} characters", field="cmdline")
    if sha256 is not None and not SHA256.match(sha256):
        raise InvalidInput("sha256 must be 64 lowercase hex digits", field="sha256")
    if size <= 0 or size > MAX_IMAGE_BYTES:
        raise InvalidInput(
            f"an image must be 1 byte to {MAX_IMAGE_BYTES // 2**30} GiB, not {size} bytes",
            field="size",
        )
    await blobs.check_room(ctx, size, f"image {name!r}")
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Image, name) is not None:
            raise Conflict(f"image {name!r} already exists")
        if ramdisk is not None:
            await _ramdisk(s, ramdisk)


async def _ramdisk(s: AsyncSession, name: str) -> Image:
    image = await repository.find_by_name(s, Image, name)
    if image is None:
        raise InvalidInput(f"no image named {name!r} (the ramdisk)", field="ramdisk")
    if image.disk_format != "ramdisk":
        raise InvalidInput(
            f"image {name!r} is a {image.disk_format} image, not a ramdisk", field="ramdisk"
        )
    return image


async def _record(
    ctx: ServiceContext,
    name: str,
    disk_format: str,
    digest: str,
    facts: ImageFacts,
    ramdisk: str | None,
    cmdline: str | None,
) -> Image:
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Image, name) is not None:
            raise Conflict(f"image {name!r} already exists")
        image = Image(
            name=name,
            disk_format=disk_format,
            status="active",
            sha256=digest,
            size=facts.size,
            virtual_size=facts.virtual_size,
            ramdisk=await _ramdisk(s, ramdisk) if ramdisk is not None else None,
            cmdline=cmdline or "",
        )
        s.add(image)
    return image


async def delete(ctx: ServiceContext, name: str) -> None:
    """Delete an image nothing uses; its blob goes with the last image naming it."""
    async with transaction(ctx.sessions) as s:
        image = await repository.by_name(s, Image, name, "image")
        users = set(await s.scalars(select(Instance.name).where(Instance.image_id == image.id)))
        if users:
            raise Conflict(f"image {name!r} is used by VNF(s): {', '.join(sorted(users)[:5])}")
        kernels = set(await s.scalars(select(Image.name).where(Image.ramdisk_id == image.id)))
        if kernels:
            raise Conflict(
                f"image {name!r} is the ramdisk of kernel image(s): {', '.join(sorted(kernels))}"
            )
        digest = image.sha256
        await s.delete(image)
    if digest is not None:
        await blobs.drop_if_unused(ctx, digest)


def check_bootable(image: Image) -> None:
    """A VNF can boot ``image``; otherwise InvalidInput saying why."""
    if image.status == "legacy" or image.sha256 is None:
        raise InvalidInput(
            f"image {image.name!r} was registered by a host path before the image store: "
            "upload it again (edgecloud image upload)",
            field="image",
        )
    if image.disk_format in BOOT_FORMATS and image.disk_format != "kernel":
        raise InvalidInput(
            f"image {image.name!r} is a {image.disk_format}: boot the kernel image that uses it",
            field="image",
        )
