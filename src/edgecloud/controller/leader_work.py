"""The controller's leader-only work, started when this process gains the site's leadership
and stopped when it loses it (controller/leading.py calls ``start`` and ``stop``).

Leader-only: placement (the instance reconciler, with its process-local placement lock), the
chain, maintenance and migration state machines, the stack sweeper, the orchestrated upgrade
(services/upgrade_runs.py ``advance``, every second), fault-history pruning
(controller/housekeeping.py), the replicated database's failover readiness
(controller/db_witness.py, alarm 100.010) and the gateway's liveness verdicts (hosts offline, multi-host
loss). They run with a context whose sessions are fenced by the leadership epoch
(store/leadership.py ``fenced_sessions``; on SQLite the plain context), so a transaction
begun after this process was deposed fails instead of landing. The API and the agent gateway
run in every controller process and are not here. Neighbours: controller/notifying.py routes
change notices to the reconcilers held here, controller/site.py builds this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from edgecloud.controller.db_witness import watch_forever
from edgecloud.controller.housekeeping import prune_forever
from edgecloud.fm.pruning import Retention
from edgecloud.gateway.gateway import Gateway
from edgecloud.reconcile.chains import ChainReconciler
from edgecloud.reconcile.instances import InstanceReconciler
from edgecloud.reconcile.maintenance import MaintenanceReconciler
from edgecloud.reconcile.migrations import MigrationReconciler
from edgecloud.reconcile.stacks import StackSweeper
from edgecloud.services import hosts, upgrade_runs
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
UPGRADE_IDLE_PERIOD = 5.0  # seconds between looks for an upgrade while none is under way


class LeaderWork:
    """The reconcilers and loops only the leading controller runs (see the module)."""

    def __init__(
        self,
        gateway: Gateway,
        retention: Retention,
        host_changed: Callable[[str], None],
        db_witness: str | None = None,
        central: Callable[[ServiceContext], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.gateway = gateway
        # the site's link to central (controller/central_link.py): one per site, the leader's
        self.central = central
        self._linking: asyncio.Task[None] | None = None
        self.retention = retention
        self.db_witness = db_witness  # the replicated store's monitor (controller/db_witness.py)
        self._watching: asyncio.Task[None] | None = None
        self._host_changed = host_changed  # reaches the host's gateway in any process
        self.instances: InstanceReconciler | None = None
        self.chains: ChainReconciler | None = None
        self.maintenance: MaintenanceReconciler | None = None
        self.migrations: MigrationReconciler | None = None
        self._sweeper: StackSweeper | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._upgrading: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.instances is not None

    async def start(self, ctx: ServiceContext) -> None:
        """Start everything with ``ctx`` (fenced) and pick up work left under way."""
        self.instances = InstanceReconciler(ctx, self._host_changed)
        self.chains = ChainReconciler(ctx)
        self.maintenance = MaintenanceReconciler(ctx)
        self.migrations = MigrationReconciler(ctx, self._host_changed)
        self._sweeper = StackSweeper(ctx)
        self.gateway.new_term()  # hosts not connected here: judged from now, not from before
        self.gateway.judging = ctx
        self._pruning = asyncio.create_task(prune_forever(ctx, self.retention), name="prune")
        self._upgrading = asyncio.create_task(advance_forever(ctx), name="upgrade")
        if self.db_witness is not None:
            self._watching = asyncio.create_task(watch_forever(ctx, self.db_witness), name="db")
        if self.central is not None:
            self._linking = asyncio.create_task(self.central(ctx), name="central-link")
        await self.resume(ctx)
        self._sweeper.start()

    async def resume(self, ctx: ServiceContext) -> None:
        """Queue every object with work under way (after a start, or lost notices)."""
        if self.chains is None or self.maintenance is None or self.migrations is None:
            return
        await hosts.requeue_unscheduled(ctx)
        await self.chains.resume_all()
        await self.maintenance.resume_all()
        await self.migrations.resume_all()

    async def stop(self) -> None:
        """Stop it all now (work in flight is cancelled; its state is in the store)."""
        self.gateway.judging = None
        for task in (self._pruning, self._watching, self._upgrading, self._linking):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._watching = self._upgrading = self._linking = None
        reconcilers = (self.instances, self.chains, self.maintenance, self.migrations)
        self.instances = self.chains = self.maintenance = self.migrations = None
        for reconciler in reconcilers:
            if reconciler is not None:
                await reconciler.close()
        if self._sweeper is not None:
            await self._sweeper.close()
        self._sweeper = self._pruning = None


async def advance_forever(
    ctx: ServiceContext, period: float = 1.0, idle: float = UPGRADE_IDLE_PERIOD
) -> None:
    """Move the site's upgrade along, if one is under way (services/upgrade_runs.py): every
    ``period`` while one is, every ``idle`` while none is (or at once when this process
    starts one)."""
    wakeup = ctx.wakeup("upgrade-leader")
    while True:
        busy = True
        try:
            busy = await upgrade_runs.advance(ctx)
        except Exception:
            log.exception("moving the upgrade along failed; retrying")
        wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), period if busy else idle)
