"""/v1/audit: the audit log (admin only), newest first, filtered by time, actor, target."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import AuditOut, Rfc3339
from edgecloud.services import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("")
async def list_audit(
    ctx: Ctx,
    since: Annotated[
        Rfc3339 | None,
        Query(description="RFC 3339 date-time with a time zone: records at or after it."),
    ] = None,
    actor: Annotated[str | None, Query(max_length=63, description="A token's name.")] = None,
    target: Annotated[
        str | None, Query(max_length=255, description="A path prefix, e.g. /v1/chains/c1.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 100,
) -> list[AuditOut]:
    rows = await audit.list_records(ctx, since, actor, target, limit)
    return [views.audit_record(r) for r in rows]
