"""/v1/controllers: the site's controller processes, which are up and which one leads."""

from __future__ import annotations

from fastapi import APIRouter

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import ControllersOut
from edgecloud.services import controllers

router = APIRouter(prefix="/v1/controllers", tags=["controllers"])


@router.get("")
async def list_controllers(ctx: Ctx) -> ControllersOut:
    return ControllersOut.model_validate(await controllers.listing(ctx))
