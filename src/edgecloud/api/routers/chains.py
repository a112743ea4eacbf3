"""/v1/chains: service chains; every change is make-before-break and answered 202 at once
(follow it with GET: ``operation`` while it runs, ``last_result`` / ``last_error`` after)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from edgecloud.api.deps import Caller, Ctx
from edgecloud.api.schemas import ChainCreate, ChainInsert, ChainOrder, ChainServiceSpec, Name
from edgecloud.services import authorization, chains
from edgecloud.services.context import ServiceContext
from edgecloud.store.models import Chain

router = APIRouter(prefix="/v1/chains", tags=["chains"])


async def _out(ctx: ServiceContext, chain: Chain) -> dict[str, Any]:
    fresh = await chains.get_chain(ctx, chain.name)
    return chains.view(fresh, await chains.applied_versions(ctx))


@router.post("", status_code=202)
async def create_chain(ctx: Ctx, caller: Caller, body: ChainCreate) -> dict[str, Any]:
    authorization.creating_for(caller, body.customer)  # a scoped token: its own customer only
    return await _out(ctx, await chains.create_chain(ctx, body.model_dump()))


@router.get("")
async def list_chains(ctx: Ctx, caller: Caller) -> list[dict[str, Any]]:
    applied = await chains.applied_versions(ctx)
    found = await chains.list_chains(ctx, authorization.visible_to(caller))
    return [chains.view(c, applied) for c in found]


@router.get("/{name}")
async def get_chain(ctx: Ctx, name: Name) -> dict[str, Any]:
    chain = await chains.get_chain(ctx, name)
    return chains.view(chain, await chains.applied_versions(ctx))


@router.post("/{name}/services", status_code=202)
async def insert_service(ctx: Ctx, name: Name, body: ChainInsert) -> dict[str, Any]:
    where = body.model_dump(include={"before", "after", "at"})
    service = body.model_dump(exclude={"before", "after", "at"})
    return await _out(ctx, await chains.insert_service(ctx, name, service, where))


@router.put("/{name}/services/{service}", status_code=202)
async def replace_service(
    ctx: Ctx, name: Name, service: Name, body: ChainServiceSpec
) -> dict[str, Any]:
    return await _out(ctx, await chains.replace_service(ctx, name, service, body.model_dump()))


@router.delete("/{name}/services/{service}", status_code=202)
async def remove_service(ctx: Ctx, name: Name, service: Name) -> dict[str, Any]:
    return await _out(ctx, await chains.remove_service(ctx, name, service))


@router.post("/{name}/order", status_code=202)
async def reorder(ctx: Ctx, name: Name, body: ChainOrder) -> dict[str, Any]:
    return await _out(ctx, await chains.reorder(ctx, name, body.services))


@router.delete("/{name}", status_code=202)
async def delete_chain(ctx: Ctx, name: Name) -> dict[str, Any]:
    chain = await chains.delete_chain(ctx, name)
    return chains.view(chain, await chains.applied_versions(ctx))
