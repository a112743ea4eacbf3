"""/v1/hosts: add (returns a one-time join token), list, show, enable/disable, lock/unlock
(maintenance: a lock empties the host by live migration), delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import HostCreate, HostEnrollment, HostOut, HostUpdate, Name
from edgecloud.services import hosts, maintenance

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


@router.post("/{name}/lock", status_code=202)
async def lock_host(ctx: Ctx, name: Name) -> HostOut:
    """Take the host out of service: no new VNFs, and every VNF on it migrated live to the
    other hosts, one at a time (progress in ``maintenance``). 409, with the reason and
    nothing changed, when the other hosts cannot take them or one cannot migrate live."""
    return HostOut.model_validate(await maintenance.lock_host(ctx, name))


@router.post("/{name}/unlock")
async def unlock_host(ctx: Ctx, name: Name) -> HostOut:
    """Return a locked host to service (an evacuation under way stops after its current
    move). 409 when the host is not locked."""
    return HostOut.model_validate(await maintenance.unlock_host(ctx, name))


@router.delete("/{name}", status_code=204)
async def delete_host(ctx: Ctx, name: Name) -> Response:
    await hosts.delete_host(ctx, name)
    return Response(status_code=204)


@router.post("/{name}/join-token", status_code=201)
async def new_join_token(ctx: Ctx, name: Name) -> HostEnrollment:
    host, token, expires = await hosts.new_join_token(ctx, name)
    return HostEnrollment(host=HostOut.model_validate(host), join_token=token, expires_at=expires)
