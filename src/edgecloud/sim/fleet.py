"""The processes of a simulation: the real controller(s) and the worker processes of agents.

``ControllerProcess`` runs ``edgecloud controller`` as its own process (so its CPU and resident
memory are measured on their own, with psutil) and reads the gateway's stats file; with
``db_url`` on a PostgreSQL store, which several controllers share (one leads). ``combine``
adds up several controllers' samples into one (the site's view). ``Fleet`` runs the workers
(sim/worker.py; the sites scenario's sim/site_worker.py), sends them commands and sums their
status lines. ``ProcessMeter`` is the CPU and RSS of one process (a controller, central).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from edgecloud.errors import EdgecloudError

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessMeter:
    """One process's CPU (% of one core since the last sample) and resident memory."""

    def __init__(self, pid: int) -> None:
        self.ps = psutil.Process(pid)
        self._last: tuple[float, float] | None = None

    def sample(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with contextlib.suppress(psutil.Error):
            times = self.ps.cpu_times()
            now, cpu = time.monotonic(), times.user + times.system
            if self._last is not None and now > self._last[0]:
                out["cpu_pct"] = 100 * (cpu - self._last[1]) / (now - self._last[0])
            self._last = (now, cpu)
            out["cpu_s"] = cpu
            out["rss_mib"] = self.ps.memory_info().rss / 2**20
        return out


class ControllerProcess:
    def __init__(
        self,
        state_dir: Path,
        gateway_port: int,
        heartbeat: float,
        protection: bool,
        max_handshakes: int | None = None,
        max_image_transfers: int | None = None,
        db_url: str | None = None,
        host_recovery: bool = False,
    ) -> None:
        self.state_dir, self.gateway_port = state_dir, gateway_port
        self.db_url, self.host_recovery = db_url, host_recovery
        self.max_image_transfers = max_image_transfers
        self.heartbeat, self.protection = heartbeat, protection
        self.max_handshakes = max_handshakes
        self.stats_file = state_dir / "gateway-stats.json"
        self.proc: asyncio.subprocess.Process | None = None
        self.meter: ProcessMeter | None = None
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        info_file = self.state_dir / "controller.json"
        info_file.unlink(missing_ok=True)
        self.stats_file.unlink(missing_ok=True)
        args = [
            *("controller", "--state-dir", str(self.state_dir), "--api-port", "0"),
            *("--gateway-port", str(self.gateway_port)),
            *("--heartbeat-interval", str(self.heartbeat), "--stats-file", str(self.stats_file)),
        ]
        if self.db_url is not None:
            args += ["--db", self.db_url]
        if self.host_recovery:  # agents that fence get their heartbeats echoed
            args.append("--host-recovery")
        if not self.protection:
            args.append("--no-protection")
        if self.max_handshakes is not None:
            args += ["--max-handshakes", str(self.max_handshakes)]
        if self.max_image_transfers is not None:
            args += ["--max-image-transfers", str(self.max_image_transfers)]
        log = open(self.state_dir / "controller.log", "ab")  # noqa: SIM115 - child's stderr
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgecloud", *args, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while not info_file.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise EdgecloudError(
                    f"the simulated site's controller did not start; see {self.state_dir}/controller.log"
                )
            await asyncio.sleep(0.1)
        self.info = json.loads(info_file.read_text())
        self.meter = ProcessMeter(self.proc.pid)

    def sample(self) -> dict[str, Any]:
        """CPU (% of one core since the last sample), RSS (MiB) and the gateway counters."""
        out = self.meter.sample() if self.meter is not None else {}
        with contextlib.suppress(OSError, ValueError):
            out["gw"] = json.loads(self.stats_file.read_text())
        return out

    async def stop(self, kill: bool = False) -> None:
        await stop_process(self.proc, kill)


async def stop_process(proc: asyncio.subprocess.Process | None, kill: bool = False) -> None:
    """SIGTERM (SIGKILL with ``kill``) a process the simulator started, and wait for it: a
    minute, then SIGKILL."""
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()


# gateway counters that are a worst case or a point in time, not a count to add up
_MAX_KEYS = ("hb_lag_max", "hb_lag_max_recent", "loop_lag_max_recent", "handshakes_peak")


def combine(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Several controllers' samples as one: CPU and RSS added up (``cpu_pct_each`` keeps each),
    gateway counters added up, worst cases the worst, ``time`` the oldest stats file's,
    ``started`` the latest start; each controller's sessions in ``sessions_each``."""
    if len(samples) == 1:
        return samples[0]
    out: dict[str, Any] = {}
    for key in ("cpu_pct", "cpu_s", "rss_mib"):
        if all(key in s for s in samples):
            out[key] = sum(s[key] for s in samples)
    out["cpu_pct_each"] = [s.get("cpu_pct") for s in samples]
    out["rss_mib_each"] = [s.get("rss_mib") for s in samples]
    gws = [s["gw"] for s in samples if "gw" in s]
    if len(gws) == len(samples):
        gw: dict[str, Any] = dict(gws[0])
        for key, value in gws[0].items():
            values = [g.get(key, 0) for g in gws]
            if key == "time":
                gw[key] = min(values)
            elif key == "started" or key in _MAX_KEYS:
                gw[key] = max(values)
            elif isinstance(value, bool):
                gw[key] = any(values)
            elif isinstance(value, int | float):
                gw[key] = sum(values)
        gw["sessions_each"] = [g.get("sessions", 0) for g in gws]
        out["gw"] = gw
    return out


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    status: dict[str, Any] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


MAX_SOURCES = 253 * 254 * 254


def source_addresses(count: int) -> list[str]:
    """``count`` loopback source addresses for the simulated nodes: 127.1.1.1, 127.1.1.2, ...
    (each octet 1-254; 127.0.0.x is the controllers' and the anonymous peers', anonymous.py).
    By default every node gets its own, as in the field: the gateway bounds the connections
    not authenticated yet per source address (gateway/preauth.py, 64), and thousands of
    agents behind a few addresses would be refused there during a storm, which nodes with
    an address each never are."""
    if not 1 <= count <= MAX_SOURCES:
        raise ValueError(f"1 to {MAX_SOURCES} source addresses, not {count}")
    out = []
    for i in range(count):
        rest, d = divmod(i, 254)
        b, c = divmod(rest, 254)
        out.append(f"127.{1 + b}.{1 + c}.{1 + d}")
    return out


class Fleet:
    """Worker processes, each running a share of the simulated nodes (or sites)."""

    def __init__(
        self,
        state_dir: Path,
        nodes: list[Path],
        workers: int,
        sources: int | None,
        protection: bool,
        resync_interval: float = 30.0,
        module: str = "edgecloud.sim.worker",
        spec: dict[str, Any] | None = None,
    ) -> None:
        """``sources``: how many source addresses the nodes share (None: one per node);
        ``module`` the worker program, ``spec`` more of what each worker is told."""
        self.state_dir, self.nodes, self.workers = state_dir, nodes, max(1, workers)
        self.sources = source_addresses(sources or len(nodes))
        self.protection, self.resync_interval = protection, resync_interval
        self.module, self.spec = module, spec or {}
        self._workers: list[_Worker] = []

    async def start(self) -> None:
        for k in range(self.workers):
            share = self.nodes[k :: self.workers]
            spec = {
                "nodes": [str(p) for p in share],
                "sources": self.sources_of(k),
                "protection": self.protection,
                "resync_interval": self.resync_interval,
                **self.spec,
            }
            spec_file = self.state_dir / f"worker-{k}.json"
            spec_file.write_text(json.dumps(spec))
            with open(self.state_dir / f"worker-{k}.log", "ab") as log:  # the child's stderr
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    self.module,
                    str(spec_file),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                )
            worker = _Worker(proc)
            worker.reader = asyncio.create_task(self._read(worker))
            self._workers.append(worker)

    def sources_of(self, k: int) -> list[str]:
        """The source address of each node of worker ``k`` (node i of the fleet: address i
        mod the number of addresses), in the order of its share."""
        share = range(k, len(self.nodes), self.workers)
        return [self.sources[i % len(self.sources)] for i in share]

    async def _read(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        while line := await worker.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                worker.status = json.loads(line)

    async def command(self, line: str) -> None:
        for worker in self._workers:
            if worker.proc.stdin is not None and worker.proc.returncode is None:
                worker.proc.stdin.write(line.encode() + b"\n")
        await asyncio.gather(
            *(w.proc.stdin.drain() for w in self._workers if w.proc.stdin is not None),
            return_exceptions=True,
        )

    def totals(self) -> dict[str, Any]:
        keys = ("agents", "connected", "vms_running", "dead", "cpu", "links", "applies")
        out: dict[str, Any] = {k: sum(w.status.get(k, 0) for w in self._workers) for k in keys}
        out["rss_mib"] = sum(w.status.get("rss_kib", 0) for w in self._workers) / 1024
        # the oldest desired version a simulated site applied (sim/site_worker.py)
        out["applied_min"] = min((w.status.get("applied_min", 0) for w in self._workers), default=0)
        # drop commands every worker has carried out (sim/worker.py)
        out["drops"] = min((w.status.get("drops", 0) for w in self._workers), default=0)
        reasons = [w.status.get("dead_reason") for w in self._workers if w.status.get("dead")]
        out["dead_reason"] = reasons[0] if reasons else ""
        return out

    async def stop(self, kill: bool = False) -> None:
        if kill:
            for worker in self._workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGKILL)
        else:
            await self.command("quit")
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 30)
            except TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()
            if worker.reader is not None:
                await asyncio.gather(worker.reader, return_exceptions=True)
        self._workers = []
