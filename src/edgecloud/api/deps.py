"""Request dependencies: the service context, and bearer-token authentication with
authorisation (services/authorization.py: the route's rule, the token's role and scope),
for every route that takes ``Ctx``; ``Caller`` hands the principal to the handler."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edgecloud.errors import Unauthorized
from edgecloud.services import auth, authorization
from edgecloud.services.auth import Principal
from edgecloud.services.context import ServiceContext

_bearer = HTTPBearer(auto_error=False)


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ServiceContext:
    """The service context, once the bearer token is checked and the route allowed to it."""
    if credentials is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    ctx = context(request)
    principal = await auth.check_token(ctx, credentials.credentials)
    request.state.principal = principal  # also read by api/auditing.py
    route = request.scope.get("route")
    rule = authorization.rule_for(request.method, str(getattr(route, "path", "")))
    authorization.decide(principal, rule)
    name = request.path_params.get("name")
    if rule is not None and isinstance(name, str):
        await authorization.check_owner(ctx, principal, rule, name)
    return ctx


async def caller(
    request: Request, _: Annotated[ServiceContext, Depends(authenticated)]
) -> Principal:
    """The authenticated principal of this request."""
    principal: Principal = request.state.principal
    return principal


Ctx = Annotated[ServiceContext, Depends(authenticated)]
Caller = Annotated[Principal, Depends(caller)]
