"""Software packages: releases and patches of edgecloud uploaded to the site, signed, and
fetched by nodes over their mTLS port (issue 12).

An upload is the wheel of a release (``edgecloud-0.3.0-py3-none-any.whl``). It streams into
the image store (services/blobs.py, shared with images) while it is hashed; the wheel's
METADATA says which release it is (upgrades/packages.py: ``MAJOR.MINOR.0`` a release,
``PATCH`` > 0 a patch of its train); then its manifest (what it is, its size and sha256, and
whether its hosts must reboot) is signed with the site's software-signing key (pki/software.py)
and the package is recorded with the signature, in one turn of the blobs lock. All or nothing:
a wheel of another project, a version that is not a release, a release uploaded already, a
damaged transfer leave no package and no file. One package per release.

A node checks a package before using a byte of it: the signer chains to the site CA it trusts
for its session, the signature holds over the manifest, the blob has the manifest's size and
sha256 (pki/software.py ``verify`` and ``check_blob``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.images.blobs import SHA256
from edgecloud.pki.software import SignedManifest
from edgecloud.services import blobs
from edgecloud.services.context import ManifestSigner, ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import SoftwarePackage
from edgecloud.upgrades import packages
from edgecloud.upgrades.packages import PackageFacts

log = logging.getLogger(__name__)
MAX_PACKAGE_BYTES = 1 << 30  # api/limits.py SOFTWARE_MAX_BYTES; edgecloud's wheel is < 1 MiB
WHEEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,250}\.whl$"


async def upload(
    ctx: ServiceContext,
    filename: str,
    chunks: AsyncIterator[bytes],
    *,
    size: int,
    sha256: str | None = None,
    reboot_required: bool = False,
) -> SoftwarePackage:
    """Receive ``size`` bytes from ``chunks`` as a software package; all or nothing."""
    await _check_request(ctx, filename, size, sha256)
    async with blobs.received(ctx, chunks, size, sha256) as incoming:
        facts = await asyncio.to_thread(packages.read_wheel, incoming.path)
        await _refuse_taken(ctx, facts.release)
        manifest = {
            "name": packages.PROJECT,
            "kind": facts.kind,
            "release": facts.release,
            "applies_to": facts.applies_to,
            "reboot_required": reboot_required,
            "size": incoming.size,
            "sha256": incoming.digest,
        }
        signed = await asyncio.to_thread(_signer(ctx).sign, manifest)
        package = await blobs.keep(
            ctx, incoming, lambda: _record(ctx, filename, facts, signed, reboot_required)
        )
    log.info(
        "software %s uploaded (%s, %d bytes, sha256 %s)",
        facts.release,
        facts.kind,
        size,
        incoming.digest,
    )
    return package


async def list_all(ctx: ServiceContext) -> list[SoftwarePackage]:
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(select(SoftwarePackage).order_by(SoftwarePackage.created_at)))


async def get(ctx: ServiceContext, release: str) -> SoftwarePackage:
    async with transaction(ctx.sessions) as s:
        found = await _find(s, release)
    if found is None:
        raise NotFound(f"no software package of release {release!r} (edgecloud software list)")
    return found


async def delete(ctx: ServiceContext, release: str) -> None:
    """Delete the package of ``release``; its blob goes when nothing else names it."""
    async with transaction(ctx.sessions) as s:
        found = await _find(s, release)
        if found is None:
            raise NotFound(f"no software package of release {release!r}")
        digest = found.sha256
        await s.delete(found)
    await blobs.drop_if_unused(ctx, digest)


def signed(package: SoftwarePackage) -> SignedManifest:
    """What a node verifies before it uses the package (pki/software.py ``verify``)."""
    return SignedManifest(dict(package.manifest), package.signature, package.signer)


async def _check_request(ctx: ServiceContext, filename: str, size: int, sha256: str | None) -> None:
    """Everything that can be refused before a single byte is read."""
    if re.match(WHEEL_NAME, filename) is None:
        raise InvalidInput(
            f"{filename!r} is not a wheel's file name (NAME-VERSION-py3-none-any.whl): a "
            "software package is the wheel of an edgecloud release",
            field="filename",
        )
    if sha256 is not None and not SHA256.match(sha256):
        raise InvalidInput("sha256 must be 64 lowercase hex digits", field="sha256")
    if size <= 0 or size > MAX_PACKAGE_BYTES:
        raise InvalidInput(
            f"a software package must be 1 byte to {MAX_PACKAGE_BYTES // 2**20} MiB, "
            f"not {size} bytes",
            field="size",
        )
    _signer(ctx)
    await blobs.check_room(ctx, size, f"software package {filename}")


async def _refuse_taken(ctx: ServiceContext, release: str) -> None:
    async with transaction(ctx.sessions) as s:
        if await _find(s, release) is not None:
            raise Conflict(
                f"release {release} was uploaded already: delete it first to upload it again"
            )


async def _record(
    ctx: ServiceContext,
    filename: str,
    facts: PackageFacts,
    signed_manifest: SignedManifest,
    reboot_required: bool,
) -> SoftwarePackage:
    manifest = signed_manifest.manifest
    async with transaction(ctx.sessions) as s:
        if await _find(s, facts.release) is not None:
            raise Conflict(f"release {facts.release} was uploaded meanwhile")
        package = SoftwarePackage(
            release=facts.release,
            kind=facts.kind,
            applies_to=facts.applies_to,
            reboot_required=reboot_required,
            filename=filename,
            sha256=manifest["sha256"],
            size=manifest["size"],
            manifest=manifest,
            signature=signed_manifest.signature,
            signer=signed_manifest.signer,
        )
        s.add(package)
    return package


async def _find(s: AsyncSession, release: str) -> SoftwarePackage | None:
    return (
        await s.scalars(select(SoftwarePackage).where(SoftwarePackage.release == release))
    ).first()


def _signer(ctx: ServiceContext) -> ManifestSigner:
    if ctx.signer is None:
        raise InvalidInput("this controller cannot sign software (no signing key)")
    return ctx.signer
