"""/v1/vnfs: VNF instances with ordered vNICs; actions and the serial console."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Query

from edgecloud.api import views
from edgecloud.api.deps import Caller, Ctx
from edgecloud.api.schemas import ConsoleOut, Name, VnfAction, VnfCreate, VnfOut, VnicAttach
from edgecloud.services import authorization, vnfs

router = APIRouter(prefix="/v1/vnfs", tags=["vnfs"])


@router.post("", status_code=201)
async def create_vnf(ctx: Ctx, caller: Caller, body: VnfCreate) -> VnfOut:
    request = body.model_dump()
    request["customer"] = authorization.creating_for(caller, None)
    if body.user_data is not None:
        request["user_data"] = base64.b64decode(body.user_data)  # checked by the schema
    return views.vnf(await vnfs.create_vnf(ctx, request))


@router.get("")
async def list_vnfs(ctx: Ctx, caller: Caller) -> list[VnfOut]:
    customer = authorization.visible_to(caller)
    return [views.vnf(i) for i in await vnfs.list_vnfs(ctx, customer)]


@router.get("/{name}")
async def get_vnf(ctx: Ctx, name: Name) -> VnfOut:
    return views.vnf(await vnfs.get_vnf(ctx, name))


@router.delete("/{name}", status_code=202)
async def delete_vnf(ctx: Ctx, name: Name) -> VnfOut:
    return views.vnf(await vnfs.delete_vnf(ctx, name))


@router.post("/{name}/actions", status_code=202)
async def vnf_action(ctx: Ctx, name: Name, body: VnfAction) -> VnfOut:
    await vnfs.act(ctx, name, body.action)
    return views.vnf(await vnfs.get_vnf(ctx, name))


@router.get("/{name}/console")
async def vnf_console(
    ctx: Ctx, name: Name, max_bytes: int = Query(default=65536, ge=1, le=4 * 1024 * 1024)
) -> ConsoleOut:
    instance, output = await vnfs.console(ctx, name, max_bytes)
    return ConsoleOut(
        name=instance.name, host=instance.host.name if instance.host else "", output=output
    )


@router.post("/{name}/nics", status_code=202)
async def attach_vnic(ctx: Ctx, name: Name, body: VnicAttach) -> VnfOut:
    nic = body.model_dump(exclude={"position"})
    return views.vnf(await vnfs.attach_vnic(ctx, name, nic, body.position))


@router.delete("/{name}/nics/{position}", status_code=202)
async def detach_vnic(ctx: Ctx, name: Name, position: int) -> VnfOut:
    return views.vnf(await vnfs.detach_vnic(ctx, name, position))
