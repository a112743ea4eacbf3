"""/v1/images: upload (a streamed PUT of the image's bytes), list, show, delete.

The upload is one request: ``PUT /v1/images/{name}?disk_format=...`` with the bytes as an
``application/octet-stream`` body and a Content-Length. The bytes stream to the image store
as they arrive (memory stays bounded whatever the size); the image exists only once every byte
arrived, matched the optional ``X-Image-Sha256`` header and passed the format checks
(services/images.py). An interrupted upload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.requests import ClientDisconnect

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import ImageFormat, ImageOut, Name, Sha256
from edgecloud.errors import InvalidInput
from edgecloud.services import catalog, images
from edgecloud.store.models import Image

router = APIRouter(prefix="/v1/images", tags=["images"])


def upload_body(what: str) -> dict[str, Any]:
    """The OpenAPI of a streamed upload's body: ``what``'s raw bytes, with a Content-Length."""
    return {
        "requestBody": {
            "required": True,
            "description": f"{what} bytes. Content-Length is required.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }


UPLOAD_BODY = upload_body("The image's")


@router.put(
    "/{name}",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses={411: {"description": "no Content-Length"}, 507: {"description": "no room"}},
)
async def upload_image(
    ctx: Ctx,
    name: Name,
    request: Request,
    disk_format: Annotated[
        ImageFormat,
        Query(description="qcow2 or raw: a disk; kernel (with ramdisk, cmdline) or ramdisk"),
    ],
    # framing, not a parameter: left out of the OpenAPI so no client is invited to set it
    content_length: Annotated[int | None, Header(ge=1, include_in_schema=False)] = None,
    x_image_sha256: Annotated[Sha256 | None, Header(description="refused if different")] = None,
    ramdisk: Annotated[Name | None, Query(description="kernel images: the ramdisk image")] = None,
    cmdline: Annotated[str | None, Query(max_length=1024)] = None,
) -> ImageOut:
    """Upload image NAME; 201 once its bytes are stored and checked."""
    if content_length is None:
        raise InvalidInput("an image upload needs a Content-Length header", field="size")
    image = await images.upload(
        ctx,
        name,
        disk_format,
        request_body(request),
        size=content_length,
        sha256=x_image_sha256,
        ramdisk=ramdisk,
        cmdline=cmdline,
    )
    return views.image(await catalog.get_one(ctx, Image, image.name))


async def request_body(request: Request) -> AsyncIterator[bytes]:
    """An upload's body as it arrives (a client that hangs up is refused, in words)."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise InvalidInput("the client closed the connection before the upload ended") from exc


@router.get("")
async def list_images(ctx: Ctx) -> list[ImageOut]:
    return [views.image(i) for i in await catalog.list_all(ctx, Image)]


@router.get("/{name}")
async def get_image(ctx: Ctx, name: Name) -> ImageOut:
    return views.image(await catalog.get_one(ctx, Image, name))


@router.delete("/{name}", status_code=204)
async def delete_image(ctx: Ctx, name: Name) -> Response:
    await images.delete(ctx, name)
    return Response(status_code=204)
