"""/v1/networks, /v1/flavors: create, list, show, delete (images: routers/images.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import (
    FlavorCreate,
    FlavorOut,
    Name,
    NetworkCreate,
    NetworkOut,
)
from edgecloud.services import catalog
from edgecloud.store.models import Flavor, Network

networks = APIRouter(prefix="/v1/networks", tags=["networks"])
flavors = APIRouter(prefix="/v1/flavors", tags=["flavors"])


@networks.post("", status_code=201)
async def create_network(ctx: Ctx, body: NetworkCreate) -> NetworkOut:
    return NetworkOut.model_validate(await catalog.create_network(ctx, body.model_dump()))


@networks.get("")
async def list_networks(ctx: Ctx) -> list[NetworkOut]:
    return [NetworkOut.model_validate(n) for n in await catalog.list_all(ctx, Network)]


@networks.get("/{name}")
async def get_network(ctx: Ctx, name: Name) -> NetworkOut:
    return NetworkOut.model_validate(await catalog.get_one(ctx, Network, name))


@networks.delete("/{name}", status_code=204)
async def delete_network(ctx: Ctx, name: Name) -> Response:
    await catalog.delete(ctx, Network, name)
    return Response(status_code=204)


@flavors.post("", status_code=201)
async def create_flavor(ctx: Ctx, body: FlavorCreate) -> FlavorOut:
    return FlavorOut.model_validate(await catalog.create_flavor(ctx, body.model_dump()))


@flavors.get("")
async def list_flavors(ctx: Ctx) -> list[FlavorOut]:
    return [FlavorOut.model_validate(f) for f in await catalog.list_all(ctx, Flavor)]


@flavors.get("/{name}")
async def get_flavor(ctx: Ctx, name: Name) -> FlavorOut:
    return FlavorOut.model_validate(await catalog.get_one(ctx, Flavor, name))


@flavors.delete("/{name}", status_code=204)
async def delete_flavor(ctx: Ctx, name: Name) -> Response:
    await catalog.delete(ctx, Flavor, name)
    return Response(status_code=204)
