"""/v1/vnfs/{name}/migrate and /v1/migrations: moving VNFs between hosts (services/migrations.py)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import MigrationOut, MigrationRequest, Name
from edgecloud.services import migrations

router = APIRouter(tags=["migrations"])


@router.post("/v1/vnfs/{name}/migrate", status_code=202)
async def migrate_vnf(ctx: Ctx, name: Name, body: MigrationRequest) -> MigrationOut:
    """Start moving VNF ``name``; the migration runs on (GET /v1/migrations/{id} follows it)."""
    return views.migration(
        await migrations.start_migration(
            ctx, name, body.host, body.cold, body.memory_copy, body.max_downtime_ms
        )
    )


@router.get("/v1/migrations")
async def list_migrations(
    ctx: Ctx, limit: int = Query(default=100, ge=1, le=1000)
) -> list[MigrationOut]:
    return [views.migration(m) for m in await migrations.list_migrations(ctx, limit)]


@router.get("/v1/migrations/{migration_id}")
async def get_migration(ctx: Ctx, migration_id: str) -> MigrationOut:
    return views.migration(await migrations.get_migration(ctx, migration_id))
