"""A controller upgrading (and rolling back) itself when an orchestrated upgrade says it is its
turn (issue 12; the upgrade's course: services/upgrade_runs.py).

Every controller runs this, leader or not, once a second: while the upgrade is in its
``controllers`` phase and every controller before this one (in the upgrade's order: the
leader last) runs the release, this controller marks its step ``restarting``, stages the
signed package from the site's image store into its own state folder (staging.py: the
signature checked against the site CA, the bytes against the manifest), selects it and asks
to be restarted: the ``edgecloud controller`` command re-executes into it in the same
process (cli/daemons.py). While an upgrade is aborted, once every host is back, each
controller at the release (the last upgraded first) goes back to the one installed with it.
A controller that cannot stage marks its step and the upgrade failed, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from edgecloud import __version__, staging
from edgecloud.errors import DriverError
from edgecloud.services import blobs, software
from edgecloud.services.context import ServiceContext
from edgecloud.services.upgrade_runs import process_of
from edgecloud.store.database import transaction
from edgecloud.store.models import Upgrade, UpgradeStep, utcnow

log = logging.getLogger(__name__)
PERIOD = 1.0  # seconds between looks while an upgrade is under way
IDLE_PERIOD = 5.0  # while none is: another controller's `upgrade start` waits this long at most


class StoreBlobs:
    """A controller's blob source for staging: the site's image store (services/blobs.py)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        if not await blobs.local_copy(self.ctx, sha256):
            raise DriverError(f"blob {sha256[:12]}… is not in the site's image store")
        await asyncio.to_thread(shutil.copyfile, blobs.store_of(self.ctx).path(sha256), partial)


class SelfUpgrade:
    """See the module. ``restart``: stop this controller so that it re-executes."""

    def __init__(
        self,
        ctx: ServiceContext,
        state_dir: Path,
        trust_file: Path,
        controller_id: str,
        restart: Callable[[], None],
    ) -> None:
        self.ctx, self.state_dir, self.restart = ctx, state_dir, restart
        self.process = process_of(controller_id)
        self.stager = staging.Stager(state_dir, trust_file, StoreBlobs(ctx))
        self._asked = False
        self._to = self._upgrade_id = self._step_id = ""  # the step this controller took

    async def run_forever(self) -> None:
        """Look every PERIOD while an upgrade is under way, every IDLE_PERIOD while none is
        (at once when this process starts or aborts one)."""
        wakeup = self.ctx.wakeup("upgrade-controller")
        while not self._asked:
            busy = True
            try:
                busy = await self.tick()
            except Exception:
                log.exception("following the site's upgrade failed; retrying")
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), PERIOD if busy else IDLE_PERIOD)

    async def tick(self) -> bool:
        """Take this controller's step if it is its turn; whether an upgrade (or its abort) is
        at the controllers."""
        move = await self._my_turn()
        if move == "idle":
            return False
        if move == "forward":
            await self._forward()
        elif move == "back":
            await asyncio.to_thread(staging.select, self.state_dir, None)
            self._restart("installed")
        return True

    async def _my_turn(self) -> str | None:
        """Mark this controller's step and say which way it moves, when it is its turn
        ("idle": no upgrade is at the controllers)."""
        now = utcnow()
        async with transaction(self.ctx.sessions) as s:
            upgrade = await s.scalar(
                select(Upgrade).where(Upgrade.state.in_(("controllers", "aborting"))).limit(1)
            )
            if upgrade is None:
                return "idle"
            ours = [st for st in upgrade.steps if st.kind == "controller"]
            mine = next((st for st in ours if st.target == self.process), None)
            if mine is None:
                return None
            if upgrade.state == "controllers":
                before = [st for st in ours if st.batch < mine.batch]
                if mine.state != "pending" or __version__ == upgrade.to_release:
                    return None
                if any(st.state != "done" for st in before):
                    return None
                mine.state, mine.updated_at = "restarting", now
                self._to = upgrade.to_release
                self._upgrade_id, self._step_id = upgrade.id, mine.id
                return "forward"
            hosts_back = all(st.state == "reverted" for st in upgrade.steps if st.kind == "host")
            after = [st for st in ours if st.batch > mine.batch]
            if (
                hosts_back
                and __version__ == upgrade.to_release
                and mine.state != "reverting"
                and all(st.state == "reverted" for st in after)
            ):
                mine.state, mine.updated_at = "reverting", now
                return "back"
            return None

    async def _forward(self) -> None:
        try:
            package = await software.get(self.ctx, self._to)
            await self.stager.stage(software.signed(package).to_wire())
            await asyncio.to_thread(staging.select, self.state_dir, self._to)
        except Exception as exc:
            log.error("cannot upgrade this controller to %s: %s", self._to, exc)
            await self._failed(f"controller {self.process}: staging failed: {exc}")
            return
        self._restart(self._to)

    def _restart(self, release: str) -> None:
        log.warning("this controller restarts into release %s (the site's upgrade)", release)
        self._asked = True
        self.restart()

    async def _failed(self, why: str) -> None:
        now = utcnow()
        async with transaction(self.ctx.sessions) as s:
            step = await s.get(UpgradeStep, self._step_id)
            upgrade = await s.get(Upgrade, self._upgrade_id)
            if step is not None:
                step.state, step.error, step.updated_at = "failed", why, now
            if upgrade is not None and upgrade.state == "controllers":
                upgrade.state, upgrade.error, upgrade.updated_at = "failed", why, now
