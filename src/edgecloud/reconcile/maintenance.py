"""The maintenance reconciler: empties a locked host, one live migration at a time.

One queue entry per host (services/maintenance.py records the evacuation on the host). Each
round asks the service what to move next, starts its migration (services/migrations.py),
records it on the host before waiting, so that a controller restart waits for the same
migration instead of starting another, and records how it ended. One move at a time keeps a
small site's spare capacity and its internal network free for the VNFs.
"""

from __future__ import annotations

import logging

from edgecloud.errors import EdgecloudError
from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import maintenance, migrations
from edgecloud.services.context import ServiceContext
from edgecloud.store.models import Migration

log = logging.getLogger(__name__)


class MaintenanceReconciler:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.queue: KeyedQueue[str] = KeyedQueue(self._reconcile, name="maintenance")

    def enqueue(self, host_id: str) -> None:
        self.queue.enqueue(host_id)

    async def resume_all(self) -> None:
        for host_id in await maintenance.resume_all(self.ctx):
            self.enqueue(host_id)

    async def close(self) -> None:
        await self.queue.close()

    async def _finished(self, migration_id: str) -> Migration:
        """The migration once it has ended (the migration reconciler bounds its steps)."""
        while True:
            try:
                return await migrations.wait_for_migration(self.ctx, migration_id)
            except TimeoutError:
                log.info("still waiting for migration %s", migration_id)

    async def _reconcile(self, host_id: str) -> None:
        while (move := await maintenance.next_move(self.ctx, host_id)) is not None:
            migration_id = move.migration_id
            if migration_id is None:
                try:
                    record = await migrations.start_migration(self.ctx, move.vnf)
                except EdgecloudError as exc:
                    await maintenance.finished(self.ctx, host_id, move.vnf, str(exc))
                    continue
                migration_id = record.id
                await maintenance.started(self.ctx, host_id, move, migration_id)
            outcome = await self._finished(migration_id)
            error = None if outcome.status == "done" else (outcome.error or outcome.status)
            log.info("host %s: vnf %s moved: %s", host_id, move.vnf, error or "done")
            await maintenance.finished(self.ctx, host_id, move.vnf, error)
