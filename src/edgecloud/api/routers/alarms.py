"""/v1/alarms and /v1/events: fault management, read-only."""

from __future__ import annotations

from fastapi import APIRouter, Query

from edgecloud.api import views
from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import AlarmOut, EventOut
from edgecloud.services import alarms

router = APIRouter(prefix="/v1", tags=["fault management"])


@router.get("/alarms")
async def list_alarms(ctx: Ctx, all: bool = Query(default=False)) -> list[AlarmOut]:
    return [views.alarm(a) for a in await alarms.list_alarms(ctx, include_cleared=all)]


@router.get("/alarms/{alarm_id}")
async def get_alarm(ctx: Ctx, alarm_id: str) -> AlarmOut:
    return views.alarm(await alarms.get_alarm(ctx, alarm_id))


@router.get("/events")
async def list_events(ctx: Ctx, limit: int = Query(default=100, ge=1, le=10000)) -> list[EventOut]:
    return [EventOut.model_validate(e) for e in await alarms.list_events(ctx, limit)]
