"""/v1/subnets: IPv4 and IPv6 subnets of networks (rules: services/subnets.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import Name, SubnetCreate, SubnetOut
from edgecloud.services import subnets

router = APIRouter(prefix="/v1/subnets", tags=["subnets"])


@router.post("", status_code=201)
async def create_subnet(ctx: Ctx, body: SubnetCreate) -> SubnetOut:
    request = body.model_dump(exclude={"allocation_pools"})
    if body.allocation_pools is not None:
        request["allocation_pools"] = [p.model_dump() for p in body.allocation_pools]
    return views.subnet(await subnets.create_subnet(ctx, request))


@router.get("")
async def list_subnets(ctx: Ctx, network: Name | None = None) -> list[SubnetOut]:
    """Every subnet, or only those of ``network``."""
    return [views.subnet(n) for n in await subnets.list_subnets(ctx, network)]


@router.get("/{name}")
async def get_subnet(ctx: Ctx, name: Name) -> SubnetOut:
    return views.subnet(await subnets.get_subnet(ctx, name))


@router.delete("/{name}", status_code=204)
async def delete_subnet(ctx: Ctx, name: Name) -> Response:
    await subnets.delete_subnet(ctx, name)
    return Response(status_code=204)
