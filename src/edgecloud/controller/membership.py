"""This controller process's row in the store's list of the site's controllers.

Every ``EVERY`` seconds the row (id = its leadership holder name, API URL, gateway address)
is refreshed (store/controllers.py ``seen``); others take it as down when it is older than
``UP_WITHIN``. Each refresh also reads every live controller's gateway address for the agent
gateway's welcome (agents learn controllers added after they enrolled). Join tokens carry every live controller's gateway address and
``GET /v1/controllers`` lists them (services/controllers.py). The same loop removes relayed
node requests left by a controller that died while asking (controller/relaying.py). On stop
the row is deleted. A store no second controller can share (SQLite: ``shared`` False) gets
the row once, at start, and no refresh (an UPDATE and a DELETE a second that nobody reads;
the answering controller counts as up, services/controllers.py). Neighbours:
controller/site.py (starts it), store/controllers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from edgecloud.controller.relaying import RelayedCalls
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers
from edgecloud.store.database import transaction

log = logging.getLogger(__name__)
EVERY = 1.0
SWEEP_EVERY = 60  # refreshes between sweeps of stale relayed requests


class Membership:
    """Keeps this controller's row fresh (see the module)."""

    def __init__(
        self,
        ctx: ServiceContext,
        me: str,
        api_url: str,
        gateway: str,
        relay: RelayedCalls,
        on_gateways: Callable[[tuple[str, ...]], None] = lambda _g: None,
        shared: bool = True,
    ) -> None:
        self.ctx, self.me, self.api_url, self.gateway, self.relay = ctx, me, api_url, gateway, relay
        self.shared = shared  # False: no other controller can use this store (SQLite)
        self.on_gateways = on_gateways  # every live controller's gateway, this one first
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refresh()  # raises if the store does not answer: the controller stops
        self._task = asyncio.create_task(self._run(), name="membership")

    async def _refresh(self) -> None:
        async with transaction(self.ctx.sessions) as s:
            await controllers.seen(s, self.me, self.api_url, self.gateway)
            gateways = await controllers.gateways(s, self.gateway)
        self.on_gateways(tuple(gateways))

    async def _run(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(EVERY)
            rounds += 1
            try:
                if self.shared:
                    await self._refresh()
                if rounds % SWEEP_EVERY == 0:
                    await self.relay.sweep()
            except (SQLAlchemyError, OSError) as exc:
                log.debug("refreshing this controller's row failed: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with transaction(self.ctx.sessions) as s:
                await controllers.gone(s, self.me)
