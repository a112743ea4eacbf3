"""The sites scenario: thousands of simulated site controllers against one real central.

One run (per protection setting): the sites are enrolled at central (sim/site_identities.py,
cached), central starts as its own process (sim/central_process.py, ``edgecloud central up``,
``--no-protection`` for the baseline), then the worker processes (sim/fleet.py ``Fleet`` with
sim/site_worker.py: the real ``CentralLink`` per site, a fake site behind it). A sampler
records twice a second: links connected (the sites' view: welcomed on a connection newer than
the last cut), sites online and in sync (central's store), central's CPU, RSS and open
descriptors. Phases, each measured on its own:

- cold start: every site dials at once; time until every one is connected and in sync;
- steady: heartbeats, plus API load (sim/central_load.py) for ``duration`` seconds;
- storm (WAN restore): every link cut at the same instant (no TLS close), the links dial again
  with their own backoff; time until every site is back and in sync, API latency meanwhile;
- deploy: a catalogue template deployed to the sites' group (one ``POST /v1/deployments``);
  time until every site applied it (central's store: applied version = desired version).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecloud.sim import central_process, site_identities
from edgecloud.sim.central_load import TEMPLATE, CentralLoad
from edgecloud.sim.central_process import CentralProcess
from edgecloud.sim.fleet import Fleet, free_port

SAMPLE = 0.5
SERVICE = "sim-service"  # the template and deployment of the deploy phase
Progress = Callable[[str], None]


@dataclass
class SitesOptions:
    state_dir: Path
    sites: int
    protection: bool = True
    heartbeat: float = 10.0  # central's heartbeat interval (sites beat at it)
    workers: int = 2
    duration: float = 30.0  # steady: how long
    timeout: float = 180.0  # give up waiting for every site after this
    hosts: int = 4  # per fake site, in its summary
    vnfs: int = 8
    api_clients: int = 4
    deploy: bool = True  # the deploy phase


@dataclass
class SitesRun:
    options: SitesOptions
    progress: Progress
    central: CentralProcess | None = None
    fleet: Fleet | None = None
    load: CentralLoad | None = None
    t0: float = field(default_factory=time.time)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "starting"

    @property
    def n(self) -> int:
        return self.options.sites

    def latest(self) -> dict[str, Any]:
        return self.timeline[-1] if self.timeline else {}

    async def sample_forever(self) -> None:
        folder = self.options.state_dir / "central"
        while True:
            row: dict[str, Any] = {"t": time.time() - self.t0, "phase": self.phase}
            if self.central is not None:
                row.update(self.central.sample())
                with contextlib.suppress(Exception):  # the store not there yet, or locked
                    row["store"] = await asyncio.to_thread(central_process.store_counts, folder)
            if self.fleet is not None:
                row["fleet"] = self.fleet.totals()
            self.timeline.append(row)
            self.progress(line(row, self.n))
            await asyncio.sleep(SAMPLE)

    def all_back(self) -> bool:
        """Every link connected on a new connection (so central wrote its hello), and every
        site online and in sync in central's store."""
        row = self.latest()
        store, fleet = row.get("store", {}), row.get("fleet", {})
        return bool(
            fleet.get("connected") == self.n
            and store.get("online") == self.n
            and store.get("in_sync") == self.n
        )

    async def wait_until(self, since: float, done: Callable[[], bool], what: str) -> float | None:
        """Seconds from ``since`` until ``done()`` (None: not within the timeout)."""
        deadline = since + self.options.timeout
        await asyncio.sleep(SAMPLE * 2.5)  # samples taken after ``since``
        while time.time() < deadline:
            if done():
                return time.time() - since
            await asyncio.sleep(SAMPLE / 2)
        self.progress(f"{what}: not done within {self.options.timeout:.0f} s")
        return None

    async def wait_dropped(self, drops: int, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while self.latest().get("fleet", {}).get("drops", 0) < drops and time.time() < deadline:
            await asyncio.sleep(SAMPLE / 5)


def line(row: dict[str, Any], n: int) -> str:
    """The progress line of one sample."""
    store, fleet = row.get("store", {}), row.get("fleet", {})
    return (
        f"{row['phase']}: links connected {fleet.get('connected', 0)}/{n}, central: online "
        f"{store.get('online', 0)}, in sync {store.get('in_sync', 0)}, CPU "
        f"{row.get('cpu_pct', 0):.0f}% RSS {row.get('rss_mib', 0):.0f} MiB, fds "
        f"{row.get('fds', 0)}, elapsed {row['t']:.0f} s"
    )


def summary(run: SitesRun, t0: float, t1: float) -> dict[str, Any]:
    """Central's CPU, RSS and descriptors, the workers' CPU over [t0, t1] (wall clock)."""
    rows = [r for r in run.timeline if t0 - run.t0 <= r["t"] <= t1 - run.t0]
    cpu = [r["cpu_pct"] for r in rows if "cpu_pct" in r]
    out: dict[str, Any] = {
        "central_cpu_pct_mean": sum(cpu) / len(cpu) if cpu else None,
        "central_cpu_pct_max": max(cpu) if cpu else None,
        "central_rss_mib_max": max((r["rss_mib"] for r in rows if "rss_mib" in r), default=None),
        "central_fds_max": max((r["fds"] for r in rows if "fds" in r), default=None),
    }
    fleets = [r["fleet"] for r in rows if "fleet" in r]
    if len(fleets) >= 2:
        span = max(1e-6, rows[-1]["t"] - rows[0]["t"])
        out["workers_cpu_pct_mean"] = 100 * (fleets[-1]["cpu"] - fleets[0]["cpu"]) / span
    fleet = run.latest().get("fleet", {})
    out["dead_links"] = fleet.get("dead", 0)
    out["dead_reason"] = fleet.get("dead_reason", "")
    out["workers_rss_mib"] = fleet.get("rss_mib")
    return out


def _api(run: SitesRun, t0: float, t1: float) -> dict[str, Any]:
    assert run.load is not None
    return {
        "api": run.load.window(t0, t1),
        "api_site": run.load.window(t0, t1, "site"),
        "api_fleet": run.load.window(t0, t1, "fleet"),
    }


def _row(run: SitesRun, phase: str, took: float | None, t0: float, t1: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scenario": "sites",
        "phase": phase,
        "protection": run.options.protection,
        "sites": run.n,
        "in_sync_s": took,
    }
    out.update(summary(run, t0, t1))
    out["manual_interventions"] = out["dead_links"]
    if took is None:  # sites not back (the sites' view) or not online and in sync (central's)
        latest = run.latest()
        store, fleet = latest.get("store", {}), latest.get("fleet", {})
        back = min(fleet.get("connected", 0), store.get("online", 0), store.get("in_sync", 0))
        out["manual_interventions"] += run.n - back
    return out


# phases -------------------------------------------------------------------------------------
async def cold_start(run: SitesRun) -> dict[str, Any]:
    run.phase = "cold start"
    took = await run.wait_until(run.t0, run.all_back, "cold start")
    return _row(run, "cold start", took, run.t0, time.time())


async def steady(run: SitesRun) -> dict[str, Any]:
    assert run.load is not None
    run.phase = "settling"
    await asyncio.sleep(min(run.options.heartbeat, run.options.duration))
    run.phase = "steady"
    t0 = time.time()
    await asyncio.sleep(run.options.duration)
    t1 = time.time()
    out = _row(run, "steady", None, t0, t1)
    out["all_in_sync"] = run.all_back()
    out.update(_api(run, t0, t1))
    return out


async def storm(run: SitesRun) -> dict[str, Any]:
    assert run.fleet is not None
    run.phase = "storm"
    t0 = time.time()
    drops = run.latest().get("fleet", {}).get("drops", 0)
    await run.fleet.command("drop")
    await run.wait_dropped(drops + 1)
    took = await run.wait_until(t0, run.all_back, "storm")
    end = t0 + (took if took is not None else run.options.timeout)
    out = _row(run, "storm", took, t0, end)
    out.update(_api(run, t0, end))
    out["drop_at_s"] = t0 - run.t0
    out["timeline"] = [_slim(r) for r in run.timeline]
    return out


async def deploy(run: SitesRun) -> dict[str, Any]:
    assert run.load is not None
    run.phase = "deploy"
    async with run.load.client() as api:
        body = {"name": SERVICE, "template": TEMPLATE}
        response = await api.post("/v1/templates", json=body)
        if response.status_code not in (201, 409):
            raise RuntimeError(f"template: {response.status_code} {response.text}")
        before = run.latest().get("store", {}).get("desired_max", 0)
        t0 = time.time()
        deployment = {"name": SERVICE, "template": SERVICE, "group": site_identities.GROUP}
        response = await api.post("/v1/deployments", json=deployment, timeout=120)
        posted = time.time() - t0
        if response.status_code != 201:
            raise RuntimeError(f"deployment: {response.status_code} {response.text}")

    def applied() -> bool:
        store = run.latest().get("store", {})
        return bool(store.get("desired_min", 0) > before and run.all_back())

    took = await run.wait_until(t0, applied, "deploy")
    end = t0 + (took if took is not None else run.options.timeout)
    out = _row(run, "deploy", took, t0, end)
    out.update(_api(run, t0, end))
    out["post_s"] = posted
    return out


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    store, fleet = row.get("store", {}), row.get("fleet", {})
    return {
        "t": round(row["t"], 2),
        "phase": row["phase"],
        "connected": fleet.get("connected", 0),
        "online": store.get("online", 0),
        "in_sync": store.get("in_sync", 0),
        "cpu_pct": round(row.get("cpu_pct", 0.0), 1),
        "rss_mib": round(row.get("rss_mib", 0.0), 1),
        "fds": row.get("fds", 0),
    }


# a whole run --------------------------------------------------------------------------------
async def run_sites(options: SitesOptions, progress: Progress) -> list[dict[str, Any]]:
    """Cold start, steady, storm and deploy with one central; a result row per phase."""
    central_dir = options.state_dir / "central"
    progress(f"enrolling {options.sites} sites (cached in {options.state_dir}/sites)")
    sites = await site_identities.ensure_sites(
        central_dir,
        options.state_dir / "sites",
        options.sites,
        lambda done: progress(f"enrolled {done} new sites"),
    )
    port = free_port()
    site_identities.point_at(sites, f"127.0.0.1:{port}")
    run = SitesRun(options, progress)
    sampler = asyncio.create_task(run.sample_forever())
    rows: list[dict[str, Any]] = []
    try:
        run.central = CentralProcess(central_dir, port, options.heartbeat, options.protection)
        await run.central.start()
        run.load = CentralLoad(
            run.central.info["api_url"],
            run.central.info["ca_cert"],
            run.central.token,
            [site_identities.site_name(i) for i in range(options.sites)],
            clients=options.api_clients,
        )
        run.fleet = Fleet(
            options.state_dir,
            sites,
            options.workers,
            None,
            options.protection,
            module="edgecloud.sim.site_worker",
            spec={"hosts": options.hosts, "vnfs": options.vnfs},
        )
        run.t0 = time.time()
        await run.fleet.start()
        rows.append(await cold_start(run))
        run.load.start()
        rows.append(await steady(run))
        rows.append(await storm(run))
        if options.deploy:
            rows.append(await deploy(run))
    finally:
        run.phase = "stopping"
        if run.load is not None:
            await run.load.stop()
        if run.fleet is not None:
            await run.fleet.stop()
        if run.central is not None:
            await run.central.stop()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    for row in rows:
        row["heartbeat_s"] = options.heartbeat
        row["workers"] = options.workers
    return rows
