"""/v1/keypairs: SSH public keys VNFs can be given (rules: services/keypairs.py).

Only public keys are accepted: ``edgecloud keypair create`` generates the pair on the client.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import KeyPairImport, KeyPairOut, Name
from edgecloud.services import keypairs

router = APIRouter(prefix="/v1/keypairs", tags=["keypairs"])


@router.post("", status_code=201)
async def import_keypair(ctx: Ctx, body: KeyPairImport) -> KeyPairOut:
    return KeyPairOut.model_validate(await keypairs.import_keypair(ctx, body.model_dump()))


@router.get("")
async def list_keypairs(ctx: Ctx) -> list[KeyPairOut]:
    return [KeyPairOut.model_validate(k) for k in await keypairs.list_keypairs(ctx)]


@router.get("/{name}")
async def get_keypair(ctx: Ctx, name: Name) -> KeyPairOut:
    return KeyPairOut.model_validate(await keypairs.get_keypair(ctx, name))


@router.delete("/{name}", status_code=204)
async def delete_keypair(ctx: Ctx, name: Name) -> Response:
    await keypairs.delete_keypair(ctx, name)
    return Response(status_code=204)
