"""The FastAPI application: routers, error mapping, body bounds, and the health probe."""

from __future__ import annotations

from fastapi import FastAPI

from edgecloud import __version__
from edgecloud.api import errors
from edgecloud.api.auditing import AuditMiddleware
from edgecloud.api.limits import BodyLimitMiddleware, BodyLimits
from edgecloud.api.routers import (
    alarms,
    audit,
    catalog,
    chains,
    controllers,
    hosts,
    images,
    keypairs,
    migrations,
    software,
    stacks,
    subnets,
    tokens,
    upgrades,
    vnfs,
)
from edgecloud.api.schemas import ErrorOut
from edgecloud.services.context import ServiceContext

ERROR_RESPONSES = (400, 401, 403, 404, 409, 413, 422)
"""Answers any route may give, each with the error body: 400 a body that is not JSON text,
401 no or a wrong token, 404 no such object, 409 a conflict with the site's state, 413 a body
above its bound (api/limits.py), 422 a request the server refuses (the field named)."""


def create_app(ctx: ServiceContext, limits: BodyLimits | None = None) -> FastAPI:
    """The REST API over ``ctx``; request bodies bounded by ``limits`` (api/limits.py)."""
    bounds = limits or BodyLimits()
    app = FastAPI(
        title="edgecloud",
        version=__version__,
        description="Edge cloud for telecom network functions: hosts, networks, flavors, "
        "images, VNF instances with ordered vNICs, alarms. Request bodies: at most "
        f"{bounds.json} bytes of JSON, {bounds.image} bytes for an image upload; a larger "
        "body is answered 413 before it is read.",
        responses={code: {"model": ErrorOut} for code in ERROR_RESPONSES},
    )
    app.add_middleware(BodyLimitMiddleware, limits=bounds)
    app.state.ctx = ctx
    errors.install(app)
    for router in (
        stacks.router,
        chains.router,
        hosts.router,
        catalog.networks,
        catalog.flavors,
        images.router,
        vnfs.router,
        alarms.router,
        subnets.router,
        keypairs.router,
        migrations.router,
        tokens.router,
        audit.router,
        controllers.router,
        upgrades.router,
        software.router,
    ):
        app.include_router(router)
    app.add_middleware(AuditMiddleware, ctx=ctx)

    @app.get("/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
