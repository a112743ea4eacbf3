"""/v1/software: software packages (releases and patches of edgecloud, issue 12): upload (a
streamed POST of the wheel's bytes), list, show, delete.

The upload is one request: ``POST /v1/software?filename=edgecloud-0.3.0-py3-none-any.whl``
with the wheel as an ``application/octet-stream`` body and a Content-Length. The bytes stream
to the image store as they arrive; the package exists only once every byte arrived, matched
the optional ``X-Package-Sha256`` header, was read as a wheel of an edgecloud release and its
manifest was signed (services/software.py). An interrupted upload leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.routers.images import request_body, upload_body
from edgecloud.api.schemas import Sha256, SoftwareOut
from edgecloud.errors import InvalidInput
from edgecloud.services import software
from edgecloud.upgrades.releases import PATTERN

router = APIRouter(prefix="/v1/software", tags=["software"])

UPLOAD_BODY = upload_body("The wheel's")
ReleaseParam = Annotated[str, Path(pattern=PATTERN, description="A release, e.g. 0.3.0")]


@router.post(
    "",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses={411: {"description": "no Content-Length"}, 507: {"description": "no room"}},
)
async def upload_software(
    ctx: Ctx,
    request: Request,
    filename: Annotated[
        str,
        Query(
            description="The wheel's file name, e.g. edgecloud-0.3.0-py3-none-any.whl",
            json_schema_extra={"pattern": software.WHEEL_NAME},  # checked in words
        ),
    ],
    reboot_required: Annotated[
        bool, Query(description="Its hosts must reboot to take it (emptied by live migration)")
    ] = False,
    # framing, not a parameter: left out of the OpenAPI so no client is invited to set it
    content_length: Annotated[int | None, Header(ge=1, include_in_schema=False)] = None,
    x_package_sha256: Annotated[Sha256 | None, Header(description="refused if different")] = None,
) -> SoftwareOut:
    """Upload the wheel of an edgecloud release; 201 once it is stored, read and signed."""
    if content_length is None:
        raise InvalidInput("a software upload needs a Content-Length header", field="size")
    package = await software.upload(
        ctx,
        filename,
        request_body(request),
        size=content_length,
        sha256=x_package_sha256,
        reboot_required=reboot_required,
    )
    return views.software(package)


@router.get("")
async def list_software(ctx: Ctx) -> list[SoftwareOut]:
    return [views.software(p) for p in await software.list_all(ctx)]


@router.get("/{release}")
async def get_software(ctx: Ctx, release: ReleaseParam) -> SoftwareOut:
    return views.software(await software.get(ctx, release))


@router.delete("/{release}", status_code=204)
async def delete_software(ctx: Ctx, release: ReleaseParam) -> Response:
    await software.delete(ctx, release)
    return Response(status_code=204)
