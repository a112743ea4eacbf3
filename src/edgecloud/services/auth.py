"""API bearer tokens: the admin token made at first start, and checking presented tokens."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from edgecloud.errors import Unauthorized
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import ApiToken


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def ensure_admin_token(ctx: ServiceContext) -> str | None:
    """Create the admin token if none exists; returns it only when newly created."""
    async with transaction(ctx.sessions) as s:
        if (await s.scalars(select(ApiToken).where(ApiToken.name == "admin"))).first():
            return None
        token = "ec_" + secrets.token_urlsafe(32)
        s.add(ApiToken(name="admin", token_hash=_hash(token), role="admin"))
    return token


async def check_token(ctx: ServiceContext, token: str) -> str:
    """The role of a valid token; Unauthorized otherwise."""
    async with transaction(ctx.sessions) as s:
        query = select(ApiToken.role).where(ApiToken.token_hash == _hash(token))
        role = (await s.scalars(query)).first()
    if role is None:
        raise Unauthorized("the API token is not valid for this site")
    return role
