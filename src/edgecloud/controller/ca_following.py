"""Following the site CA in the store while the controller runs (sites with a site secret).

A CA rotation step (controller/site_ca_rotation.py) changes the store's row and sends a
``site_ca_changed`` notice; ``wake`` (controller/notifying.py) makes this controller read the
row, write its ``pki/`` to match (controller/shared_ca.py ``mirror``) and reload its TLS at once
(controller/tls.py ``TlsReloader.step``: the gateway signs with the new CA and trusts the
bundle, connected nodes are asked to renew, the server certificate is re-issued when its CA is
no longer trusted). A notice can be lost (the feed's connection down, this process killed or
not started yet), so the row's generation is also read every ``period`` seconds (one small
SELECT) and after the feed reconnects. Everything it does is idempotent: the row says where the
rotation stands and the folder is made to match it, however often and from whatever state.
Neighbours: controller/site.py (starts it), controller/shared_ca.py, controller/tls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.controller import shared_ca
from edgecloud.controller.tls import TlsReloader
from edgecloud.errors import EdgecloudError

log = logging.getLogger(__name__)
PERIOD = 5.0


class CaFollower:
    """See the module docstring."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pki_dir: Path,
        secret: str,
        tls: TlsReloader,
        applied: int,
        period: float = PERIOD,
    ) -> None:
        self.sessions, self.pki_dir, self.secret, self.tls = sessions, pki_dir, secret, tls
        self.applied = applied  # the generation the folder holds
        self.period = period
        self.followed = 0  # changes taken from the store
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A notice said the row changed (or may have: the feed reconnected)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ca-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period)
            self._wake.clear()
            try:
                await self.step()
            except (SQLAlchemyError, OSError, EdgecloudError) as exc:
                log.warning("following the site CA in the store failed (%s); retrying", exc)

    async def step(self) -> bool:
        """Take the row when its generation is not the one applied; whether it did."""
        if await shared_ca.generation(self.sessions) == self.applied:
            return False
        state = await shared_ca.read(self.sessions, self.secret)
        if state is None:
            return False
        await asyncio.to_thread(shared_ca.mirror, self.pki_dir, state)
        await self.tls.step()
        self.applied = state.generation
        self.followed += 1
        log.info(
            "site CA generation %d taken from the store (signing %s…, rotation: %s)",
            state.generation,
            state.fingerprint[:12],
            state.previous is not None,
        )
        return True
