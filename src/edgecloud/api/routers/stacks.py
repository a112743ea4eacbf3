"""/v1/stacks: stacks from HOT templates: create, show (resources, outputs), update, delete."""

from __future__ import annotations

from fastapi import APIRouter

from edgecloud.api.deps import Caller, Ctx
from edgecloud.api.schemas import Name, StackCreate, StackOut, StackResourceOut, StackUpdate
from edgecloud.services import authorization, stacks
from edgecloud.services.context import ServiceContext
from edgecloud.store.models import Stack

router = APIRouter(prefix="/v1/stacks", tags=["stacks"])


async def _out(ctx: ServiceContext, stack: Stack, with_outputs: bool = True) -> StackOut:
    return StackOut(
        id=stack.id,
        name=stack.name,
        status=stack.status,
        status_reason=stack.status_reason,
        parameters=stack.parameters,
        resources=[StackResourceOut(**r) for r in await stacks.resource_states(ctx, stack)],
        outputs=await stacks.outputs(ctx, stack) if with_outputs else {},
        created_at=stack.created_at,
        updated_at=stack.updated_at,
        customer=stack.customer,
        managed_by=stack.managed_by,
    )


@router.post("", status_code=201)
async def create_stack(ctx: Ctx, caller: Caller, body: StackCreate) -> StackOut:
    stack = await stacks.create_stack(
        ctx, body.name, body.template, body.parameters, body.files, body.environment_files,
        customer=authorization.creating_for(caller, None),
    )  # fmt: skip
    return await _out(ctx, stack)


@router.get("")
async def list_stacks(ctx: Ctx, caller: Caller) -> list[StackOut]:
    found = await stacks.list_stacks(ctx, authorization.visible_to(caller))
    return [await _out(ctx, s, with_outputs=False) for s in found]


@router.get("/{name}")
async def get_stack(ctx: Ctx, name: Name) -> StackOut:
    return await _out(ctx, await stacks.get_stack(ctx, name))


@router.put("/{name}", status_code=202)
async def update_stack(ctx: Ctx, name: Name, body: StackUpdate) -> StackOut:
    stack = await stacks.update_stack(
        ctx, name, body.template, body.parameters, body.files, body.environment_files
    )
    return await _out(ctx, stack)


@router.delete("/{name}", status_code=202)
async def delete_stack(ctx: Ctx, name: Name) -> StackOut:
    return await _out(ctx, await stacks.delete_stack(ctx, name), with_outputs=False)
