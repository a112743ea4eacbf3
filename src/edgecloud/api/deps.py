"""Request dependencies: the service context, and bearer-token authentication."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edgecloud.errors import Unauthorized
from edgecloud.services import auth
from edgecloud.services.context import ServiceContext

_bearer = HTTPBearer(auto_error=False)


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ServiceContext:
    """The service context, once the bearer token is checked."""
    if credentials is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    ctx = context(request)
    await auth.check_token(ctx, credentials.credentials)
    return ctx


Ctx = Annotated[ServiceContext, Depends(authenticated)]
