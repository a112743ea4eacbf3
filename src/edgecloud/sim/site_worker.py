"""One simulator worker process of the sites scenario: thousands of real site links in one loop.

Run as ``python -m edgecloud.sim.site_worker SPEC.json`` by sim/fleet.py (``Fleet`` with this
module). Each simulated site is the real ``CentralLink`` (controller/central_link.py: hello with
its summary and applied version, reports, heartbeats, desired state applied and answered,
jittered backoff) with its own certificate (sim/site_identities.py) and its own mTLS connection
from its own loopback source address, and a ``FakeSite`` (sim/fake_sites.py) behind it.

What the simulator changes around the real link, in this process only:
- the source address: each link's task carries its ``_Slot`` in a context variable and
  ``asyncio.open_connection`` binds to the slot's address (the link has no such option, and
  central bounds unauthenticated connections per source address, 64, as a site's gateway does:
  10,000 sites behind one address would be refused there in a storm, sites in the field never);
  the slot keeps the connection, so ``drop`` can cut it;
- ``applied.json`` is written without fsync (thousands of fake sites share one disk);
- without protections the link dials again every 50 ms instead of its jittered backoff.

Commands on stdin, one per line: ``drop`` (every connection cut at the same instant, no TLS
close, like a WAN cut; the links dial again on their own), ``quit``. Every half second a JSON
status line goes to stdout (``connected``: links with a session newer than the last cut).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud import files, openfiles
from edgecloud.controller import central_identity, central_link
from edgecloud.controller.central_link import CentralLink
from edgecloud.gateway.listener import lean_tls_buffers
from edgecloud.sim.fake_sites import FakeSite
from edgecloud.sim.worker import (
    STATUS_PERIOD,
    TLS_READ_BUFFER,
    WORKER_NICE,
    Commands,
    process_status,
    write_status,
)

NO_BACKOFF = 0.05  # seconds between dials without protections


@dataclass
class _Slot:
    """One simulated site: its source address, link and current connection."""

    source: str
    site: FakeSite
    link: CentralLink
    writer: asyncio.StreamWriter | None = None
    dropped: asyncio.StreamWriter | None = None

    @property
    def back(self) -> bool:
        """Connected (welcomed) on a connection newer than the one the last drop cut."""
        return self.link.connected.is_set() and self.writer is not self.dropped

    def drop(self) -> None:
        self.dropped = self.writer
        if self.writer is not None:
            self.writer.transport.abort()


_slot: contextvars.ContextVar[_Slot] = contextvars.ContextVar("sim_site_slot")
_open_connection = asyncio.open_connection


async def _open_from_source(host: Any, port: Any, **kw: Any) -> Any:
    """``asyncio.open_connection`` from the calling link's source address (its slot)."""
    slot = _slot.get(None)
    if slot is not None:
        kw.setdefault("local_addr", (slot.source, 0))
    reader, writer = await _open_connection(host, port, **kw)
    if slot is not None:
        slot.writer = writer
    return reader, writer


def _save_applied(folder: Path, version: int) -> None:
    data = json.dumps({"version": version})
    files.write_atomic(folder / central_identity.APPLIED, data, durable=False)


def setup(protection: bool) -> None:
    """The process-wide changes above (see the module docstring)."""
    asyncio.open_connection = _open_from_source  # type: ignore[assignment]
    central_identity.save_applied = _save_applied
    if not protection:
        central_link.BACKOFF = central_link.BACKOFF_MAX = NO_BACKOFF


def start(spec: dict[str, Any]) -> tuple[list[_Slot], list[asyncio.Task[None]]]:
    sources: list[str] = spec["sources"]
    hosts, vnfs = int(spec.get("hosts", 4)), int(spec.get("vnfs", 8))
    slots, tasks = [], []
    for i, folder in enumerate(spec["nodes"]):
        who = central_identity.load(Path(folder))
        if who is None:
            raise RuntimeError(f"{folder}: no central.json (sim/site_identities.py point_at)")
        site = FakeSite(hosts, vnfs)
        slot = _Slot(sources[i % len(sources)], site, CentralLink(site, who))
        context = contextvars.copy_context()
        context.run(_slot.set, slot)
        tasks.append(asyncio.create_task(slot.link.run_forever(), context=context))
        slots.append(slot)
    return slots, tasks


async def run(spec: dict[str, Any]) -> None:
    setup(bool(spec.get("protection", True)))
    slots, tasks = start(spec)

    def drop_all() -> None:
        for slot in slots:
            slot.drop()

    reading = Commands(drop_all)
    commands = asyncio.create_task(reading.read())
    try:
        while not commands.done():
            write_status(status(slots, tasks, reading.drops))
            await asyncio.wait({commands}, timeout=STATUS_PERIOD)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=10)
        write_status(status(slots, tasks, reading.drops))


def status(slots: list[_Slot], tasks: list[asyncio.Task[None]], drops: int) -> dict[str, Any]:
    return {
        **process_status(tasks, drops),
        "links": len(slots),
        "connected": sum(1 for s in slots if s.back),
        "applied_min": min((s.site.applied for s in slots), default=0),
        "applies": sum(s.site.applies for s in slots),
    }


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    os.nice(WORKER_NICE)
    openfiles.raise_limit()  # thousands of links, one socket each
    lean_tls_buffers(TLS_READ_BUFFER)
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(run(spec))


if __name__ == "__main__":
    main()
