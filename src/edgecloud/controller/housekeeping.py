"""Periodic housekeeping of the controller: the fault history kept bounded (fm/pruning.py).

Runs in the leading controller only (controller/leader_work.py starts and stops it; its
transactions are fenced by the leadership epoch). Neighbours: services/alarms.py ``prune``.
"""

from __future__ import annotations

import asyncio
import logging

from edgecloud.fm.pruning import Retention
from edgecloud.services import alarms
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)


async def prune_forever(ctx: ServiceContext, keep: Retention) -> None:
    """Prune now, then every ``keep.period`` seconds; a failure is logged and retried."""
    while True:
        try:
            events, cleared = await alarms.prune(ctx, keep)
            if events or cleared:
                log.info("pruned %d events and %d cleared alarms", events, cleared)
        except Exception as exc:
            log.warning("pruning the fault history failed: %s; retrying", exc)
        await asyncio.sleep(keep.period)
