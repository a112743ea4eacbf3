"""/v1/hosts: add (returns a one-time join token), list, show, enable/disable/lock, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import HostCreate, HostEnrollment, HostOut, HostUpdate, Name
from edgecloud.services import hosts

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])


@router.get("")
async def list_hosts(ctx: Ctx) -> list[HostOut]:
    return [HostOut.model_validate(h) for h in await hosts.list_hosts(ctx)]


@router.post("", status_code=201)
async def add_host(ctx: Ctx, body: HostCreate) -> HostEnrollment:
    host, token, expires = await hosts.add_host(ctx, body.name)
    return HostEnrollment(host=HostOut.model_validate(host), join_token=token, expires_at=expires)


@router.get("/{name}")
async def get_host(ctx: Ctx, name: Name) -> HostOut:
    return HostOut.model_validate(await hosts.get_host(ctx, name))


@router.patch("/{name}")
async def update_host(ctx: Ctx, name: Name, body: HostUpdate) -> HostOut:
    return HostOut.model_validate(await hosts.set_state(ctx, name, body.state))


@router.delete("/{name}", status_code=204)
async def delete_host(ctx: Ctx, name: Name) -> Response:
    await hosts.delete_host(ctx, name)
    return Response(status_code=204)


@router.post("/{name}/join-token", status_code=201)
async def new_join_token(ctx: Ctx, name: Name) -> HostEnrollment:
    host, token, expires = await hosts.new_join_token(ctx, name)
    return HostEnrollment(host=HostOut.model_validate(host), join_token=token, expires_at=expires)
