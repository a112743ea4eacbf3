"""This controller process's row in the store's list of the site's controllers.

Every ``EVERY`` seconds (on a site that recovers hosts: every half heartbeat, at most
``EVERY``; the same transaction then carries this controller's heartbeat notice, and its commit
keeps the controller's standing to answer its agents: controller/vouching.py) the row (id = its leadership holder name, API URL, gateway address)
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
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from edgecloud import __version__
from edgecloud.controller.relaying import RelayedCalls
from edgecloud.controller.vouching import Vouching
from edgecloud.protocol import messages
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers
from edgecloud.store.change_feed import notify_in
from edgecloud.store.database import transaction

log = logging.getLogger(__name__)
SPEAKS = controllers.Speaks(__version__, messages.OLDEST_VERSION, messages.PROTOCOL_VERSION)
EVERY = 1.0
SWEEP_EVERY = 60  # refreshes between sweeps of stale relayed requests
# a refresh not done after this is left to finish or fail by itself (a dropped link can hold a
# commit for minutes) while the next ones go on, at most MAX_STUCK of them at once
STUCK_AFTER = 1.0
MAX_STUCK = 3


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
        every: float | None = None,
        vouching: Vouching | None = None,
        on_lapse_ended: Callable[[], None] = lambda: None,
    ) -> None:
        self.ctx, self.me, self.api_url, self.gateway, self.relay = ctx, me, api_url, gateway, relay
        self.shared = shared  # False: no other controller can use this store (SQLite)
        self.on_gateways = on_gateways  # every live controller's gateway, this one first
        self.every = EVERY if every is None else every
        # a site that recovers hosts: each refresh carries this controller's heartbeat notice
        # and keeps its standing to answer agents (controller/vouching.py)
        self.vouching = vouching
        self.on_lapse_ended = on_lapse_ended
        self._beats = 0
        self._stuck: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refresh()  # raises if the store does not answer: the controller stops
        self._task = asyncio.create_task(self._run(), name="membership")

    async def _refresh(self) -> None:
        began = time.monotonic()
        async with transaction(self.ctx.sessions) as s:
            await controllers.seen(s, self.me, self.api_url, self.gateway, SPEAKS)
            gateways = await controllers.gateways(s, self.gateway)
            if self.vouching is not None:
                self._beats += 1  # unique: the feed de-duplicates equal notices
                await notify_in(s, "holder_alive", f"{self.me} d{self._beats}")
        if self.vouching is not None and self.vouching.stored(began, time.monotonic()):
            log.warning("the store answers this controller again: restamping the others' hosts")
            self.on_lapse_ended()
        self.on_gateways(tuple(gateways))

    async def _refresh_within(self) -> None:
        """A refresh, given ``STUCK_AFTER`` (at least four periods) to commit; a later one
        may commit first (a new connection, to a database that fails over meanwhile)."""
        if len(self._stuck) >= MAX_STUCK:
            return
        task = asyncio.create_task(self._refresh(), name="membership-refresh")
        done, _ = await asyncio.wait({task}, timeout=max(STUCK_AFTER, 4 * self.every))
        if task in done:
            task.result()
            return
        log.debug("refreshing this controller's row: no answer yet; going on")
        self._stuck.add(task)
        task.add_done_callback(self._unstuck)

    def _unstuck(self, task: asyncio.Task[None]) -> None:
        self._stuck.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a late refresh of this controller's row failed: %s", task.exception())

    async def _run(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.every)
            rounds += 1
            try:
                if self.shared:
                    await self._refresh_within()
                if rounds % max(1, round(SWEEP_EVERY * EVERY / self.every)) == 0:
                    await self.relay.sweep()
            except (SQLAlchemyError, OSError) as exc:
                log.debug("refreshing this controller's row failed: %s", exc)

    async def stop(self) -> None:
        for task in [self._task, *self._stuck]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._stuck] if t), return_exceptions=True)
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with transaction(self.ctx.sessions) as s:
                await controllers.gone(s, self.me)
