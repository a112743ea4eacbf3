"""The instance reconciler: one queue entry per instance, placing those waiting for a host.

Everything after placement is the host agent's job (it makes the hypervisor match the desired
state and reports back); this loop only turns 'scheduling' into a placement and tells the
gateway which host's desired state changed. Placement is serialised by one lock so two
instances never take the same capacity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import scheduling
from edgecloud.services.context import ServiceContext


class InstanceReconciler:
    def __init__(self, ctx: ServiceContext, host_changed: Callable[[str], None]) -> None:
        self.ctx = ctx
        self._host_changed = host_changed
        self._placing = asyncio.Lock()
        self.queue: KeyedQueue[str] = KeyedQueue(self._reconcile, name="instances")

    def enqueue(self, instance_id: str) -> None:
        self.queue.enqueue(instance_id)

    async def _reconcile(self, instance_id: str) -> None:
        async with self._placing:
            host_id = await scheduling.schedule(self.ctx, instance_id)
        if host_id is not None:
            self._host_changed(host_id)

    async def close(self) -> None:
        await self.queue.close()
