"""/v1/tokens: API tokens (admin only): create and rotate answer the secret once."""

from __future__ import annotations

from fastapi import APIRouter

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import Name, TokenCreate, TokenOut, TokenRotate, TokenSecretOut
from edgecloud.services import auth
from edgecloud.store.models import ApiToken, as_utc

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def _out(row: ApiToken) -> TokenOut:
    return TokenOut(
        name=row.name,
        role=row.role,
        customer=row.customer,
        state=auth.state(row),
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        rotated_at=as_utc(row.rotated_at) if row.rotated_at else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
    )


@router.post("", status_code=201)
async def create_token(ctx: Ctx, body: TokenCreate) -> TokenSecretOut:
    row, secret = await auth.create_token(ctx, body.name, body.role, body.customer, body.expires_in)
    return TokenSecretOut(**_out(row).model_dump(), secret=secret)


@router.get("")
async def list_tokens(ctx: Ctx) -> list[TokenOut]:
    return [_out(row) for row in await auth.list_tokens(ctx)]


@router.get("/{name}")
async def get_token(ctx: Ctx, name: Name) -> TokenOut:
    return _out(await auth.get_token(ctx, name))


@router.post("/{name}/rotate")
async def rotate_token(ctx: Ctx, name: Name, body: TokenRotate) -> TokenSecretOut:
    row, secret = await auth.rotate_token(ctx, name, body.expires_in)
    return TokenSecretOut(**_out(row).model_dump(), secret=secret)


@router.delete("/{name}")
async def revoke_token(ctx: Ctx, name: Name) -> TokenOut:
    return _out(await auth.revoke_token(ctx, name))
