"""The migration reconciler: drives each migration to done or failed, one queue entry each.

States (store ``Migration.status``; services/migrations.py makes the transitions):

    queued --> preparing --(destination reports prepared)--> migrating --(source moved it)--> done
                   |                                            |
                   +--------------- failed <--------------------+

- preparing: both hosts' snapshots carry the migration; the destination agent fetches the
  image, makes the overlay, config drive and vSwitch ports, defines nothing, and reports
  "prepared" with where it put them (its observed state, services/reports.py). The chains
  through the instance feed both copies from then on; the move waits until every host they
  touch has applied that too (no moment where a chain points at neither copy).
- migrating: the source agent is asked (request ``migrate`` over its channel) to move the
  guest; live: libvirt peer-to-peer migration straight to the destination's hypervisor; cold:
  it powers the guest off and removes it.
- done: ONE transaction moves the instance to the destination and bumps both hosts' desired
  versions (the source forgets it, the destination adopts the running domain, or starts it
  when cold).
- failed: the VNF stays on the source (its agent never stopped it), the destination drops
  what it prepared, an event says why.

Resumable: progress lives in the store; after a controller restart an unfinished migration
resumes at its status. A ``migrate`` call that failed or was cut off is checked against what
the destination reports: a guest running there is a finished migration, not a failed one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from edgecloud.errors import EdgecloudError
from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import migrations
from edgecloud.services.context import ServiceContext
from edgecloud.store.models import Migration

log = logging.getLogger(__name__)
PREPARE_TIMEOUT = 300.0  # the destination may fetch the image first
MIGRATE_TIMEOUT = 360.0  # a little more than the driver's own abort (libvirt.MIGRATION_TIMEOUT)
SETTLE = 10.0  # how long a failed call is checked against the destination's report
POLL = 0.1


class _Failed(Exception):
    """The migration cannot go on; the message says why (recorded, and in an event)."""


class MigrationReconciler:
    def __init__(
        self,
        ctx: ServiceContext,
        host_changed: Callable[[str], None],
        *,
        prepare_timeout: float = PREPARE_TIMEOUT,
        migrate_timeout: float = MIGRATE_TIMEOUT,
        settle: float = SETTLE,
    ) -> None:
        self.ctx = ctx
        self._host_changed = host_changed
        self.prepare_timeout, self.migrate_timeout = prepare_timeout, migrate_timeout
        self.settle = settle
        self.queue: KeyedQueue[str] = KeyedQueue(self._reconcile, name="migrations")

    def enqueue(self, migration_id: str) -> None:
        self.queue.enqueue(migration_id)

    async def resume_all(self) -> None:
        """After a restart: continue every unfinished migration."""
        for migration_id in await migrations.unfinished(self.ctx):
            self.enqueue(migration_id)

    async def close(self) -> None:
        await self.queue.close()

    async def _reconcile(self, migration_id: str) -> None:
        m = await migrations.get_migration(self.ctx, migration_id)
        try:
            if m.status == "queued":
                m = self._told(await migrations.set_status(self.ctx, m.id, "preparing"))
            if m.status == "preparing":
                placement = await self._prepared(m)
                m = self._told(await migrations.set_status(self.ctx, m.id, "migrating"))
            elif m.status == "migrating":  # resumed: the call's outcome is unknown
                placement = dict(m.progress.get("placement") or {})
            else:
                return  # done or failed
            stats = await self._move(m, placement)
        except _Failed as exc:
            log.warning("migration %s of %s failed: %s", m.id, m.instance_name, exc)
            self._told(await migrations.fail(self.ctx, m.id, str(exc)))
            return
        self._told(await migrations.finish(self.ctx, m.id, stats))
        log.info("migration %s of %s done: %s", m.id, m.instance_name, stats)

    def _told(self, m: Migration) -> Migration:
        versions = (m.progress or {}).get("versions") or {}
        for host_id in {m.source_host_id, m.destination_host_id, *versions}:
            self._host_changed(host_id)
        return m

    async def _prepared(self, m: Migration) -> dict[str, Any]:
        """Wait for the destination's "prepared" report; its placement."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.prepare_timeout
        while True:
            progress = (await migrations.get_migration(self.ctx, m.id)).progress or {}
            if progress.get("prepared") and await migrations.versions_applied(self.ctx, m.id):
                return dict(progress.get("placement") or {})
            if progress.get("error"):
                raise _Failed(
                    f"host {m.destination_host.name} could not prepare it: {progress['error']}"
                )
            if loop.time() > deadline:
                raise _Failed(
                    f"host {m.destination_host.name} did not report it prepared within "
                    f"{self.prepare_timeout:g} s (is its agent connected?)"
                )
            await asyncio.sleep(POLL)

    async def _move(self, m: Migration, placement: dict[str, Any]) -> dict[str, Any]:
        """Ask the source to move the guest; its statistics. A failed call still counts as
        done when the destination reports the guest running."""
        args = {
            "instance_id": m.instance_id,
            "migration_id": m.id,
            "placement": placement,
            "cold": m.kind == "cold",
            "max_downtime_ms": m.max_downtime_ms,
            "memory_copy": m.memory_copy,
        }
        if self.ctx.nodes is None:
            raise _Failed("this controller has no agent gateway")
        try:
            result = await self.ctx.nodes.call(
                m.source_host_id, "migrate", args, self.migrate_timeout
            )
            return dict(result or {})
        except EdgecloudError as exc:
            reason = str(exc)
        if m.kind == "live" and await self._running_on_destination(m.id):
            return {"note": f"the source's answer was lost ({reason}); the guest runs on the "
                    "destination"}  # fmt: skip
        raise _Failed(f"host {m.source_host.name} could not move it: {reason}")

    async def _running_on_destination(self, migration_id: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle
        while loop.time() < deadline:
            progress = (await migrations.get_migration(self.ctx, migration_id)).progress or {}
            if progress.get("power") == "running":
                return True
            await asyncio.sleep(POLL)
        return False
