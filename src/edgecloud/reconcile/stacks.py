"""Finishes stack deletions: once a stack's VNFs are gone (their hosts removed the domains),
its networks and the stack itself are removed. A periodic sweep, cheap when nothing waits."""

from __future__ import annotations

import asyncio
import logging

from edgecloud.services import stacks
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
SWEEP_INTERVAL = 1.0


class StackSweeper:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep_forever(), name="stack-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                for name in await stacks.finish_deletes(self.ctx):
                    log.info("stack %s deleted", name)
            except Exception:
                log.exception("stack sweep failed; retrying")
            await asyncio.sleep(SWEEP_INTERVAL)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
