"""The FastAPI application: routers, error mapping, and the health probe."""

from __future__ import annotations

from fastapi import FastAPI

from edgecloud import __version__
from edgecloud.api import errors
from edgecloud.api.auditing import AuditMiddleware
from edgecloud.api.routers import (
    alarms,
    audit,
    catalog,
    chains,
    hosts,
    images,
    keypairs,
    migrations,
    stacks,
    subnets,
    tokens,
    vnfs,
)
from edgecloud.api.schemas import ErrorOut
from edgecloud.services.context import ServiceContext


def create_app(ctx: ServiceContext) -> FastAPI:
    """The REST API over ``ctx``."""
    app = FastAPI(
        title="edgecloud",
        version=__version__,
        description="Edge cloud for telecom network functions: hosts, networks, flavors, "
        "images, VNF instances with ordered vNICs, alarms.",
        responses={code: {"model": ErrorOut} for code in (401, 403, 404, 409, 422)},
    )
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
    ):
        app.include_router(router)
    app.add_middleware(AuditMiddleware, ctx=ctx)

    @app.get("/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
