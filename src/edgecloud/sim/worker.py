"""One simulator worker process: hundreds or thousands of real agents in one asyncio loop.

Run as ``python -m edgecloud.sim.worker SPEC.json`` by sim/fleet.py. Each agent is the real
``Agent`` (agent/runner.py) with its own certificate, its own mTLS connection (from its
source address, by default one of its own: fleet.py ``source_addresses``) and an in-memory
fake compute driver (a power loss loses its VMs, as it would on a real node); its desired
state is kept in its node directory, as on a real node. Commands arrive on stdin, one per line: ``drop`` (every connection is cut at the
same instant), ``quit``. A release is staged for real (signature checked, the package fetched
over mTLS and checked against its manifest) but not unpacked, and a restart into it is a
reconnection whose hello says it (``SimStager``, ``SimAgent._restart_into``): thousands of
nodes on one disk and no re-executed process. Every half second a JSON status line goes to stdout (``drops``:
how many ``drop`` commands were carried out, so the simulator knows when a cut happened). Workers run
at a lower CPU priority (nice 10) than the controller they load: on one shared machine the
system under test gets the CPU first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time
from asyncio import sslproto
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgecloud import __version__, openfiles
from edgecloud.agent import identity
from edgecloud.agent.applying import Applier
from edgecloud.agent.image_fetching import ImageFetcher
from edgecloud.agent.runner import RESTART_AFTER, Agent
from edgecloud.drivers.compute.fake import FakeComputeDriver
from edgecloud.pki import software

STATUS_PERIOD = 0.5
TLS_READ_BUFFER = 32 * 1024  # per connection, instead of asyncio's 256 KiB
# Simulated nodes are other machines in reality: on a shared machine the controller (the
# system under test) gets the CPU first and the workers take what is left.
WORKER_NICE = 10


class SimStager:
    """Stages a release as a node would, less the unpacking: the manifest's signature against
    the site CA, the package fetched over mTLS and checked, then dropped."""

    def __init__(self, who: identity.AgentIdentity, fetcher: ImageFetcher) -> None:
        self.who, self.fetcher = who, fetcher

    async def stage(self, signed: Mapping[str, Any]) -> str:
        manifest = software.verify(dict(signed), self.who.ca.read_bytes())
        partial = self.who.state_dir / "package.partial"
        try:
            await self.fetcher.fetch(manifest["sha256"], int(manifest["size"]), partial)
            software.check_blob(manifest, partial)
        finally:
            partial.unlink(missing_ok=True)
        return str(manifest["release"])


class SimAgent(Agent):
    """The real agent with an in-memory fake hypervisor."""

    def __init__(self, who: identity.AgentIdentity, **options: Any) -> None:
        super().__init__(who, compute="fake", **options)
        self.fake = FakeComputeDriver(None)
        self.compute = self.fake
        self.applier = Applier(  # no fsync: thousands of fake nodes share this disk
            self.fake, self.network, who.state_dir, self.images, durable=False
        )
        self.stager = SimStager(who, self._fetcher)  # type: ignore[assignment]

    def _restart_into(self, release: Any) -> dict[str, Any]:
        """A restart into ``release`` (None: this code's): the session ends and the agent
        dials again, saying the release (its VMs run on: the fake hypervisor keeps them)."""
        self.release = release if isinstance(release, str) else __version__
        asyncio.get_running_loop().call_later(RESTART_AFTER, self.drop)
        return {"release": release}

    dropped: object = None  # the session cut by the last drop

    def drop(self) -> None:
        """Cut the connection at once (no TLS close), like a fibre cut."""
        session = self._session
        self.dropped = session
        if session is not None:
            session.writer.transport.abort()

    @property
    def back(self) -> bool:
        """Connected with a session newer than the one cut by the last drop."""
        return self.connected.is_set() and self._session is not self.dropped

    @property
    def running_vms(self) -> int:
        return len([d for d in self.fake._domains.values() if d.state.value == "running"])


async def run(spec: dict[str, Any]) -> None:
    protect = bool(spec.get("protection", True))
    backoff = (0.5, 30.0) if protect else (0.05, 0.05)
    sources: list[str] = spec["sources"]
    agents: list[SimAgent] = []
    for i, node_dir in enumerate(spec["nodes"]):
        who = identity.load(Path(node_dir))
        agents.append(
            SimAgent(
                who,
                resync_interval=float(spec.get("resync_interval", 30.0)),
                source_address=sources[i % len(sources)],
                backoff=backoff,
            )
        )
    tasks = [asyncio.create_task(a.run()) for a in agents]

    def drop_all() -> None:
        for agent in agents:
            agent.drop()

    reading = Commands(drop_all)
    commands = asyncio.create_task(reading.read())
    try:
        while not commands.done():
            _status(agents, tasks, reading.drops)
            await asyncio.wait({commands}, timeout=STATUS_PERIOD)
    finally:
        for agent in agents:
            agent.stopping.set()
        await asyncio.wait(tasks, timeout=10)
        _status(agents, tasks, reading.drops)


class Commands:
    """The fleet's commands on a worker's stdin, one a line: ``drop`` (every connection
    dropped at once: ``drop_all``) and ``quit``; shared by the agents' and the sites' workers."""

    def __init__(self, drop_all: Callable[[], None]) -> None:
        self.drop_all = drop_all
        self.drops = 0  # ``drop`` commands carried out (in the status line)

    async def read(self) -> None:
        """Until ``quit`` or the end of stdin."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "drop":
                self.drop_all()
                self.drops += 1
                await asyncio.sleep(0)
            elif line == "quit":
                return


def process_status(tasks: list[asyncio.Task[None]], drops: int) -> dict[str, Any]:
    """What every worker's status line says of itself: its tasks that died, its CPU time and
    peak RSS, the drops it carried out."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    dead = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    return {
        "time": time.time(),
        "drops": drops,
        "dead": len(dead),
        "dead_reason": str(dead[0].exception()) if dead else "",
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_kib": usage.ru_maxrss,
    }


def write_status(status: dict[str, Any]) -> None:
    """One status line on stdout, which the fleet reads (sim/fleet.py)."""
    sys.stdout.write(json.dumps(status) + "\n")
    sys.stdout.flush()


def _status(agents: list[SimAgent], tasks: list[asyncio.Task[None]], drops: int) -> None:
    write_status({
        **process_status(tasks, drops),
        "agents": len(agents),
        "connected": sum(1 for a in agents if a.back),
        "vms_running": sum(a.running_vms for a in agents),
    })  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    os.nice(WORKER_NICE)
    openfiles.raise_limit()  # thousands of agents, one socket each
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER  # see gateway/listener.py lean_tls_buffers
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(run(spec))


if __name__ == "__main__":
    main()
