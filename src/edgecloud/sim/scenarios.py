"""The simulator's scenarios: steady, launch, storm, dor; each returns its measurements.

Every scenario starts a real controller process (or ``controllers`` of them on one PostgreSQL
store, ``db_url``: the first leads, the nodes are split between their gateways and know every
one) and the worker processes (sim/fleet.py),
waits until every node is connected and in sync (the cold start, measured too), then does its
thing while a sampler records, twice a second: connected nodes (agents' view), sessions and
in-sync sessions (controller's view), controller CPU and RSS, the gateway's counters (with
several controllers: added up, each controller's CPU and sessions kept too).

- steady: heartbeats plus API load for ``duration`` seconds.
- launch: ``vnfs`` VNFs created at once through the API; time until every one runs.
- storm: every node's connection is cut at the same instant; time until every node is back
  and in sync, API latency meanwhile. With ``anonymous`` N, N anonymous connections
  (sim/anonymous.py) are opened before the cut and held through it, half on the gateway, half
  on the API (slowloris), re-opened whenever the controller closes one.
- dor: dead office recovery; VNFs created and running, then the controller and every worker
  are killed at the same instant (SIGKILL: the in-memory VMs are lost, as at a power loss),
  then all start again together; time until every VNF runs again (a new boot) and every node
  is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgecloud.images.building import build_blank_disk
from edgecloud.sim import anonymous, identities
from edgecloud.sim.fleet import ControllerProcess, Fleet, combine, free_port
from edgecloud.sim.loading import ApiLoad

SAMPLE = 0.5
Progress = Callable[[str], None]


@dataclass
class SimOptions:
    state_dir: Path
    nodes: int
    protection: bool = True
    heartbeat: float = 10.0
    workers: int = 4
    sources: int | None = None  # source addresses the nodes share (None: one per node)
    duration: float = 30.0  # steady: how long; storm: how long after recovery
    timeout: float = 180.0  # give up waiting for recovery after this
    vnfs: int = 0
    api_clients: int = 4
    max_handshakes: int | None = None  # the controller's bound (None: its default)
    max_image_transfers: int | None = None  # the controller's bound (None: its default)
    anonymous: int = 0  # storm: anonymous connections held through it (sim/anonymous.py)
    anonymous_sources: int = 16  # their 127.0.0.x source addresses
    controllers: int = 1  # controller processes; more than one needs db_url (PostgreSQL)
    db_url: str | None = None  # the store (None: SQLite in the first controller's folder)
    host_recovery: bool = False  # controllers with --host-recovery: fencing agents' beats echoed


@dataclass
class Run:
    """One scenario run: processes, sampler, timeline, marks."""

    options: SimOptions
    progress: Progress
    controllers: list[ControllerProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # their gateways' ports (kept over restarts)
    fleet: Fleet | None = None
    load: ApiLoad | None = None
    peers: anonymous.AnonymousPeers | None = None
    t0: float = field(default_factory=time.time)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    phase: str = "starting"
    _sampler: asyncio.Task[None] | None = None

    @property
    def n(self) -> int:
        return self.options.nodes

    @property
    def controller(self) -> ControllerProcess | None:
        """The first controller: the leader (started first); the API load is spread over all."""
        return self.controllers[0] if self.controllers else None

    def latest(self) -> dict[str, Any]:
        return self.timeline[-1] if self.timeline else {}

    async def sample_forever(self) -> None:
        while True:
            row: dict[str, Any] = {"t": time.time() - self.t0, "phase": self.phase}
            if self.controllers:
                row.update(combine([c.sample() for c in self.controllers]))
            if self.fleet is not None:
                row["fleet"] = self.fleet.totals()
            if self.peers is not None and self.peers.status:
                row["anon"] = dict(self.peers.status)
            self.timeline.append(row)
            gw = row.get("gw", {})
            fleet = row.get("fleet", {})
            anon = f"anonymous open {self.peers.open}, " if self.peers is not None else ""
            self.progress(
                f"{self.phase}: {anon}connected {fleet.get('connected', 0)}/{self.n}, "
                f"in sync {gw.get('in_sync', 0)}, sessions {gw.get('sessions', 0)}, "
                f"controller CPU {row.get('cpu_pct', 0):.0f}% RSS {row.get('rss_mib', 0):.0f} MiB, "
                f"elapsed {row['t']:.0f} s"
            )
            await asyncio.sleep(SAMPLE)

    def all_back(self) -> bool:
        row = self.latest()
        gw, fleet = row.get("gw", {}), row.get("fleet", {})
        return bool(
            fleet.get("connected") == self.n
            and gw.get("sessions") == self.n
            and gw.get("in_sync") == self.n
            and time.time() - gw.get("time", 0) < 2 * SAMPLE + 1
        )

    async def writes_done(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until the gateway has no batched store writes pending."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.latest().get("gw", {}).get("writes_pending", 0):
            await asyncio.sleep(SAMPLE)

    async def wait_dropped(self, drops: int, timeout: float = 30.0) -> None:
        """Wait until every worker says it carried out ``drops`` cuts: a worker short of CPU
        may take seconds to read the command, and until then its nodes still look back."""
        deadline = time.time() + timeout
        while self.latest().get("fleet", {}).get("drops", 0) < drops:
            if time.time() > deadline:
                self.progress(f"the workers did not report the cut within {timeout:.0f} s")
                return
            await asyncio.sleep(SAMPLE / 5)

    async def wait_all_back(self, since: float, what: str) -> float | None:
        """Seconds from ``since`` until every node is connected and in sync (None: timeout)."""
        deadline = since + self.options.timeout
        await asyncio.sleep(SAMPLE * 2.5)  # samples taken after ``since``
        while time.time() < deadline:
            if self.all_back():
                return time.time() - since
            await asyncio.sleep(SAMPLE / 2)
        self.progress(f"{what}: not every node back within {self.options.timeout:.0f} s")
        return None


async def prepare(options: SimOptions, progress: Progress) -> list[Path]:
    controller_dir = options.state_dir / "controller"
    controller_dir.mkdir(parents=True, exist_ok=True)
    progress(f"enrolling {options.nodes} nodes (cached in {options.state_dir}/nodes)")
    nodes = await identities.ensure_nodes(
        controller_dir,
        options.state_dir / "nodes",
        options.nodes,
        lambda done: progress(f"enrolled {done} new nodes"),
        options.db_url,
    )
    return nodes


def controller_dirs(options: SimOptions) -> list[Path]:
    """``SIM/controller`` (enrolls the nodes, owns the CA), then ``SIM/controller-2`` ..."""
    first = options.state_dir / "controller"
    return [first] + [
        options.state_dir / f"controller-{k}" for k in range(2, options.controllers + 1)
    ]


async def start(run: Run, nodes: list[Path]) -> None:
    """Start the controllers one after the other (the first leads), then the workers."""
    opts = run.options
    dirs = controller_dirs(opts)
    for extra in dirs[1:]:  # one site CA: the others get a copy (as harness.second_controller)
        shutil.copytree(dirs[0] / "pki", extra / "pki", dirs_exist_ok=True)
    run.controllers = [
        ControllerProcess(
            folder,
            port,
            opts.heartbeat,
            opts.protection,
            opts.max_handshakes,
            opts.max_image_transfers,
            opts.db_url,
            opts.host_recovery,
        )
        for folder, port in zip(dirs, run.ports, strict=True)
    ]
    run.fleet = Fleet(opts.state_dir, nodes, opts.workers, opts.sources, opts.protection)
    for controller in run.controllers:
        await controller.start()
    identities.point_at(nodes, [c.info["gateway"] for c in run.controllers])
    await run.fleet.start()


async def stop(run: Run, kill: bool = False) -> None:
    if run.peers is not None:
        await run.peers.stop()
    if run.load is not None:
        await run.load.stop()
    if run.fleet is not None:
        await run.fleet.stop(kill)
    await asyncio.gather(*(c.stop(kill) for c in run.controllers))


async def stop_killed(run: Run) -> None:
    """SIGKILL the workers and every controller at the same instant (a power loss)."""
    assert run.fleet is not None
    await asyncio.gather(run.fleet.stop(kill=True), *(c.stop(kill=True) for c in run.controllers))


def api_load(run: Run, vnfs: list[str] | None = None) -> ApiLoad:
    assert run.controller is not None
    info = run.controller.info
    token = (run.options.state_dir / "controller" / "admin-token").read_text().strip()
    hosts = [identities.node_name(i) for i in range(run.n)]
    return ApiLoad(
        info["api_url"],
        info["ca_cert"],
        token,
        hosts,
        vnfs or [],
        run.options.api_clients,
        more_urls=[c.info["api_url"] for c in run.controllers[1:]],
    )


def summary(run: Run, t0: float, t1: float) -> dict[str, Any]:
    """Controller CPU/RSS, messages per second and errors over [t0, t1] (wall clock)."""
    rows = [r for r in run.timeline if t0 - run.t0 <= r["t"] <= t1 - run.t0]
    cpu = [r["cpu_pct"] for r in rows if "cpu_pct" in r]
    rss = [r["rss_mib"] for r in rows if "rss_mib" in r]
    # counters: from the last stats written before t0 to the first written after t1 (the
    # gateway writes them once a second, so a short window would otherwise see no change)
    gws = _stats_around(run, t0, t1)
    out: dict[str, Any] = {
        "controller_cpu_pct_mean": sum(cpu) / len(cpu) if cpu else None,
        "controller_cpu_pct_max": max(cpu) if cpu else None,
        "controller_rss_mib_max": max(rss) if rss else None,
    }
    if run.options.controllers > 1:  # each controller's own, the first (the leader) first
        each = [r["cpu_pct_each"] for r in rows if None not in r.get("cpu_pct_each", [None])]
        out["controllers"] = run.options.controllers
        out["controller_cpu_pct_mean_each"] = [
            sum(e[k] for e in each) / len(each) if each else None
            for k in range(run.options.controllers)
        ]
        out["controller_cpu_pct_max_each"] = [
            max((e[k] for e in each), default=None) for k in range(run.options.controllers)
        ]
        rss_each = [r["rss_mib_each"] for r in rows if None not in r.get("rss_mib_each", [None])]
        out["controller_rss_mib_max_each"] = [
            max((e[k] for e in rss_each), default=None) for k in range(run.options.controllers)
        ]
    if len(gws) >= 2:
        first, last = gws[0], gws[-1]
        span = max(1e-6, last["time"] - first["time"])
        for key in ("frames_in", "heartbeats", "accepted", "retries", "full_syncs", "tls_resumed"):
            out[f"{key}"] = last[key] - first[key]
        out["messages_per_s"] = out["frames_in"] / span
        out["echoes_per_s"] = (last.get("echoes", 0) - first.get("echoes", 0)) / span
        if "sessions_each" in last:
            out["sessions_each"] = last["sessions_each"]
        spent = last.get("handshake_seconds", 0.0) - first.get("handshake_seconds", 0.0)
        out["handshake_mean_s"] = spent / out["accepted"] if out["accepted"] else None
        out["connections_per_s"] = out["accepted"] / span
        out["hb_late"] = last["hb_late"] - first["hb_late"]
        out["hb_lag_max_s"] = max(g.get("hb_lag_max_recent", 0.0) for g in gws[1:])
        out["loop_lag_max_s"] = max(g.get("loop_lag_max_recent", 0.0) for g in gws[1:])
        out["handshakes_failed"] = last["handshakes_failed"] - first["handshakes_failed"]
        out["handshakes_slow"] = last.get("handshakes_slow", 0) - first.get("handshakes_slow", 0)
        out["hosts_marked_offline"] = last["hosts_marked_offline"] - first["hosts_marked_offline"]
        out["mass_loss_alarm"] = any(g.get("mass_loss") for g in gws)
    fleets = [r["fleet"] for r in rows if "fleet" in r]
    if len(fleets) >= 2:
        span = max(1e-6, rows[-1]["t"] - rows[0]["t"])
        out["workers_cpu_pct_mean"] = 100 * (fleets[-1]["cpu"] - fleets[0]["cpu"]) / span
    fleet = run.latest().get("fleet", {})
    out["dead_agents"] = fleet.get("dead", 0)
    out["dead_reason"] = fleet.get("dead_reason", "")
    out["worker_rss_mib"] = fleet.get("rss_mib")
    return out


def _stats_around(run: Run, t0: float, t1: float) -> list[dict[str, Any]]:
    rows = [r for r in run.timeline if "gw" in r]
    before = [r for r in rows if r["t"] < t0 - run.t0]
    inside = [r for r in rows if t0 - run.t0 <= r["t"] <= t1 - run.t0]
    after = [r for r in rows if r["t"] > t1 - run.t0]
    picked = before[-1:] + inside + after[:3]
    gws = [r["gw"] for r in picked]
    # a controller restarted inside the window (dor) counts from zero again, from its start
    restart = max(
        (i for i in range(1, len(gws)) if gws[i].get("started") != gws[i - 1].get("started")),
        default=0,
    )
    if not restart:
        return gws
    fresh = gws[restart]
    zero = {k: 0 if isinstance(v, int | float) else v for k, v in fresh.items()}
    zero["time"] = fresh.get("started", fresh["time"])
    return [zero, *gws[restart:]]


async def with_run(
    options: SimOptions, progress: Progress, body: Callable[[Run, list[Path], int], Any]
) -> dict[str, Any]:
    nodes = await prepare(options, progress)
    run = Run(options, progress)
    run._sampler = asyncio.create_task(run.sample_forever())
    run.ports = _free_ports(options.controllers)
    port = run.ports[0]
    try:
        await start(run, nodes)
        run.phase = "cold start"
        cold = await run.wait_all_back(run.t0, "cold start")
        result: dict[str, Any] = {"cold_start_s": cold}
        if options.controllers > 1:
            result["leading"] = await _leading(run)
        result.update(await body(run, nodes, port))
    finally:
        run.phase = "stopping"
        await stop(run)
        run._sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run._sampler
    result["nodes"] = options.nodes
    result["protection"] = options.protection
    result["heartbeat_s"] = options.heartbeat
    result["timeline"] = [_slim(r) for r in run.timeline]
    fleet_rows = [r.get("fleet", {}) for r in run.timeline if r["phase"] != "stopping"]
    result["nodes_not_back_at_end"] = options.nodes - (
        max((f.get("connected", 0) for f in fleet_rows[-3:]), default=0)
    )
    return result


async def _leading(run: Run) -> list[bool]:
    """Which of the controllers leads (``GET /v1/controllers``), in start order: one
    leader doing the leader-only work is what a shared store must give."""
    async with api_load(run).client() as api:
        listing = (await api.get("/v1/controllers")).json()["controllers"]
    leads = {c["gateway"]: c["leads"] for c in listing}
    return [bool(leads.get(c.info["gateway"])) for c in run.controllers]


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    gw, fleet = row.get("gw", {}), row.get("fleet", {})
    return {
        "t": round(row["t"], 2),
        "phase": row["phase"],
        "connected": fleet.get("connected", 0),
        "sessions": gw.get("sessions", 0),
        "in_sync": gw.get("in_sync", 0),
        "cpu_pct": round(row.get("cpu_pct", 0.0), 1),
        "rss_mib": round(row.get("rss_mib", 0.0), 1),
        "vms_running": fleet.get("vms_running", 0),
        "anonymous_open": row.get("anon", {}).get("open_gateway", 0)
        + row.get("anon", {}).get("open_api", 0),
    } | _each(row)


def _each(row: dict[str, Any]) -> dict[str, Any]:
    """Each controller's sessions and CPU (several controllers only)."""
    if "cpu_pct_each" not in row:
        return {}
    cpu = [None if c is None else round(c, 1) for c in row["cpu_pct_each"]]
    return {"sessions_each": row.get("gw", {}).get("sessions_each"), "cpu_pct_each": cpu}


# scenarios ----------------------------------------------------------------------------------
async def steady(options: SimOptions, progress: Progress) -> dict[str, Any]:
    async def body(run: Run, nodes: list[Path], port: int) -> dict[str, Any]:
        # two heartbeat intervals so every agent's beat is in its rhythm
        run.phase = "settling"
        await asyncio.sleep(2 * options.heartbeat)
        run.phase = "steady"
        run.load = api_load(run)
        t0 = time.time()
        run.load.start()
        await asyncio.sleep(options.duration)
        t1 = time.time()
        await run.load.stop()
        out = {"duration_s": options.duration, "api": run.load.window(t0, t1)}
        out.update(summary(run, t0, t1))
        out["manual_interventions"] = out["dead_agents"]
        return out

    return await with_run(options, progress, body)


async def storm(options: SimOptions, progress: Progress) -> dict[str, Any]:
    async def body(run: Run, nodes: list[Path], port: int) -> dict[str, Any]:
        assert run.fleet is not None
        run.phase = "settling"
        await asyncio.sleep(3)
        await run.writes_done(30.0)  # the cold start's batched store writes, not the storm's
        if options.anonymous:
            await _attack(run)
        run.load = api_load(run)
        run.load.start()
        await asyncio.sleep(3)
        run.phase = "storm"
        t0 = time.time()
        run.marks["drop"] = t0 - run.t0
        drops = run.latest().get("fleet", {}).get("drops", 0)
        await run.fleet.command("drop")
        await run.wait_dropped(drops + 1)
        recovered = await run.wait_all_back(t0, "storm")
        run.phase = "after"
        await asyncio.sleep(min(options.duration, 10))
        t1 = time.time()
        await run.load.stop()
        end = t0 + (recovered if recovered is not None else options.timeout)
        out: dict[str, Any] = {
            "drop_at_s": t0 - run.t0,
            "recovery_s": recovered,
            "api": run.load.window(t0, end),
            "api_after": run.load.window(end, t1),
        }
        out.update(summary(run, t0, end))
        if run.peers is not None:
            out["anonymous"] = _attack_window(run, t0, end)
        out["manual_interventions"] = out["dead_agents"] + (
            0
            if recovered is not None
            else run.n - run.latest().get("fleet", {}).get("connected", 0)
        )
        return out

    return await with_run(options, progress, body)


async def _attack(run: Run) -> None:
    """Open the anonymous connections, wait (up to a minute) until each was opened once, then
    until the controller's first closes have been re-opened."""
    assert run.controller is not None
    opts, info = run.options, run.controller.info
    gw_host, _, gw_port = info["gateway"].rpartition(":")
    api = httpx.URL(info["api_url"])
    run.peers = anonymous.AnonymousPeers(
        opts.state_dir,
        opts.anonymous,
        (gw_host, int(gw_port)),
        (api.host, api.port or 443),
        opts.anonymous_sources,
    )
    run.phase = "anonymous peers connecting"
    await run.peers.start()
    if not await run.peers.wait_opened(60.0):
        run.progress(f"only {run.peers.open} of {opts.anonymous} anonymous connections opened")
    run.phase = "anonymous peers holding"
    # past the first pre-auth timeout (5 s) and header deadline (10 s): the attack's rhythm
    await asyncio.sleep(12)


def _attack_window(run: Run, t0: float, t1: float) -> dict[str, Any]:
    rows = [r["anon"] for r in run.timeline if "anon" in r and t0 - run.t0 <= r["t"] <= t1 - run.t0]
    out = anonymous.window(rows, run.options.anonymous)
    gws = _stats_around(run, t0, t1)
    if len(gws) >= 2:
        for key in ("preauth_refused", "preauth_evicted"):
            out[key] = gws[-1].get(key, 0) - gws[0].get(key, 0)
        out["preauth_max"] = max(g.get("preauth", 0) for g in gws)
    return out


async def _catalogue(api: httpx.AsyncClient, work_dir: Path) -> None:
    for path, body in (
        ("/v1/networks", {"name": "lan"}),
        ("/v1/flavors", {"name": "tiny", "vcpus": 1, "memory_mib": 64}),
    ):
        response = await api.post(path, json=body)
        if response.status_code not in (201, 409):
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
    disk = await asyncio.to_thread(build_blank_disk, work_dir / "images")
    response = await api.put(
        "/v1/images/img", params={"disk_format": "qcow2"}, content=disk.read_bytes()
    )
    if response.status_code not in (201, 409):
        raise RuntimeError(f"image upload: {response.status_code} {response.text}")


async def _create_vnfs(
    api: httpx.AsyncClient, names: list[str], concurrency: int = 8, attempts: int = 5
) -> int:
    """Create the VNFs that do not exist yet (a 5xx or a dropped connection is retried);
    returns the number of VNFs that could not be created."""
    gate = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(name: str) -> None:
        nonlocal errors
        body = {"name": name, "image": "img", "flavor": "tiny", "nics": [{"network": "lan"}]}
        for attempt in range(attempts):
            async with gate:
                try:
                    status = (await api.post("/v1/vnfs", json=body)).status_code
                except httpx.HTTPError:
                    status = 0
            if status in (201, 409):
                return
            if 400 <= status < 500:
                break
            await asyncio.sleep(1.0 + attempt)
        errors += 1

    await asyncio.gather(*(one(n) for n in names))
    return errors


async def _vnf_states(api: httpx.AsyncClient) -> dict[str, tuple[str, str | None]]:
    response = await api.get("/v1/vnfs", timeout=120)
    return {v["name"]: (v["status"], v.get("boot_id")) for v in response.json()}


async def _wait_vnfs(
    run: Run,
    api: httpx.AsyncClient,
    names: list[str],
    since: float,
    before: dict[str, tuple[str, str | None]] | None = None,
) -> tuple[float | None, int]:
    """Seconds until every VNF runs (with a new boot when ``before`` is given)."""
    deadline = since + run.options.timeout
    ok = 0
    while time.time() < deadline:
        try:
            states = await _vnf_states(api)
        except httpx.HTTPError:
            await asyncio.sleep(2)
            continue
        ok = sum(
            1
            for n in names
            if states.get(n, ("", None))[0] == "running"
            and (before is None or states[n][1] != before.get(n, ("", None))[1])
        )
        run.progress(f"{run.phase}: VNFs running {ok}/{len(names)}")
        if ok == len(names):
            return time.time() - since, ok
        await asyncio.sleep(max(2.0, len(names) / 1000))  # listing 5,000 VNFs is not free
    return None, ok


async def launch(options: SimOptions, progress: Progress) -> dict[str, Any]:
    async def body(run: Run, nodes: list[Path], port: int) -> dict[str, Any]:
        names = [f"vnf-{i:05d}" for i in range(options.vnfs)]
        async with api_load(run).client() as api:
            await _catalogue(api, run.options.state_dir)
            run.phase = "launch"
            t0 = time.time()
            errors = await _create_vnfs(api, names)
            created = time.time() - t0
            took, running = await _wait_vnfs(run, api, names, t0)
        out: dict[str, Any] = {
            "vnfs": len(names),
            "create_s": created,
            "all_running_s": took,
            "vnfs_running": running,
            "create_errors": errors,
        }
        out.update(summary(run, t0, time.time()))
        out["manual_interventions"] = out["dead_agents"] + (len(names) - running)
        return out

    return await with_run(options, progress, body)


async def dor(options: SimOptions, progress: Progress) -> dict[str, Any]:
    async def body(run: Run, nodes: list[Path], port: int) -> dict[str, Any]:
        names = [f"vnf-{i:05d}" for i in range(options.vnfs)]
        async with api_load(run).client() as api:
            await _catalogue(api, run.options.state_dir)
            run.phase = "creating VNFs"
            t_create = time.time()
            errors = await _create_vnfs(api, names)
            ready, _ = await _wait_vnfs(run, api, names, t_create)
            before = await _vnf_states(api)
        run.phase = "power loss"
        await asyncio.sleep(1)
        await stop_killed(run)
        await asyncio.sleep(2)
        run.phase = "recovery"
        t0 = time.time()
        await start(run, nodes)
        back = await run.wait_all_back(t0, "dor")
        async with api_load(run).client() as api:
            took, running = await _wait_vnfs(run, api, names, t0, before)
        t1 = time.time()
        await asyncio.sleep(2.5 * SAMPLE + 1)  # the counters written once a second after t1
        out: dict[str, Any] = {
            "vnfs": len(names),
            "create_errors": errors,
            "initial_all_running_s": ready,
            "nodes_back_s": back,
            "all_vnfs_running_again_s": took,
            "vnfs_running_again": running,
        }
        out.update(summary(run, t0, t1))
        out["manual_interventions"] = out["dead_agents"] + (len(names) - running)
        return out

    return await with_run(options, progress, body)


SCENARIOS = {"steady": steady, "launch": launch, "storm": storm, "dor": dor}
