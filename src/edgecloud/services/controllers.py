"""The site's controllers as the API shows them: which are up, which one leads (epoch).

Read from the store (store/controllers.py): each controller process refreshes its row every
second (controller/membership.py; on SQLite, one controller, only at start); the controller
answering is up whatever its row says. The leader is the holder of the leadership row.
Neighbours: api/routers/controllers.py, store/controllers.py.
"""

from __future__ import annotations

from typing import Any

from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers
from edgecloud.store.models import utcnow


async def listing(ctx: ServiceContext) -> dict[str, Any]:
    """{"leader": {...} | None, "controllers": [...]} (see api/schemas.py ``SiteControllers``)."""
    async with ctx.sessions() as s:
        rows = await controllers.all_known(s)
        lead = await controllers.leadership(s)
    now = utcnow()
    holder = lead.holder if lead is not None and lead.epoch > 0 else ""
    items = [
        {
            "id": r.id,
            "api_url": r.api_url,
            "gateway": r.gateway,
            "up": r.id == ctx.settings.controller_id or controllers.is_up(r, now),
            "leads": r.id == holder,
            "this": r.id == ctx.settings.controller_id,
            "release": r.release,
            "protocols": None if r.protocol is None else [r.protocol_oldest, r.protocol],
            "seen_at": r.seen_at,
            "started_at": r.started_at,
        }
        for r in rows
    ]
    leader = None
    if lead is not None and holder:
        row = next((r for r in rows if r.id == holder), None)
        leader = {
            "id": holder,
            "epoch": lead.epoch,
            "since": lead.since,
            "api_url": row.api_url if row else None,
            "gateway": row.gateway if row else None,
            "up": controllers.is_up(row, now) if row else False,
        }
    elif not holder and rows:  # SQLite: one controller, always the leader (epoch 1)
        only = next((r for r in rows if r.id == ctx.settings.controller_id), rows[0])
        leader = {
            "id": only.id,
            "epoch": 1,
            "since": only.started_at,
            "api_url": only.api_url,
            "gateway": only.gateway,
            "up": True,
        }
        for item in items:
            item["leads"] = item["id"] == only.id
    return {"leader": leader, "controllers": items}
