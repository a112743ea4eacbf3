"""The site's controller processes in the store: who runs, where, and which one leads.

Each controller process keeps one row of ``controllers`` (store/models.py
``ControllerProcess``) fresh (controller/membership.py); the leader is the ``holder`` of the
``leadership`` row (store/leadership.py). Join tokens (services/hosts.py) take every live
controller's gateway address from here, and ``GET /v1/controllers`` (services/controllers.py)
says who leads. Neighbours: store/models.py, store/leadership.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.store.models import ControllerProcess, Leadership, utcnow

UP_WITHIN = 5.0  # seconds: a controller whose row is older than this is taken as down
FORGET_AFTER = 86400.0  # rows of controllers gone for a day are removed


@dataclass(frozen=True)
class Speaks:
    """A controller's release and the protocol versions it speaks (oldest .. newest)."""

    release: str
    oldest: int
    newest: int


async def seen(
    s: AsyncSession, controller_id: str, api_url: str, gateway: str, speaks: Speaks | None = None
) -> None:
    """Create or refresh this controller's row."""
    row = await s.get(ControllerProcess, controller_id)
    now = utcnow()
    if row is None:
        row = ControllerProcess(id=controller_id, api_url=api_url, gateway=gateway, seen_at=now)
        s.add(row)
    else:
        row.api_url, row.gateway, row.seen_at = api_url, gateway, now
    if speaks is not None and row.release != speaks.release:
        row.release = speaks.release
        row.protocol_oldest, row.protocol = speaks.oldest, speaks.newest
    await s.execute(
        delete(ControllerProcess).where(
            ControllerProcess.seen_at < now - dt.timedelta(seconds=FORGET_AFTER)
        )
    )


async def gone(s: AsyncSession, controller_id: str) -> None:
    """This controller stops: remove its row."""
    await s.execute(delete(ControllerProcess).where(ControllerProcess.id == controller_id))


async def all_known(s: AsyncSession) -> list[ControllerProcess]:
    rows = await s.scalars(select(ControllerProcess).order_by(ControllerProcess.started_at))
    return list(rows)


def is_up(row: ControllerProcess, now: dt.datetime | None = None) -> bool:
    return ((now or utcnow()) - row.seen_at).total_seconds() <= UP_WITHIN


async def gateways(s: AsyncSession, first: str) -> list[str]:
    """Every live controller's gateway address, ``first`` (this controller's) first."""
    now = utcnow()
    others = [r.gateway for r in await all_known(s) if is_up(r, now)]
    return list(dict.fromkeys([first, *others]))


async def leadership(s: AsyncSession) -> Leadership | None:
    return await s.get(Leadership, 1)
