"""Benchmark: an orchestrated in-service upgrade of a simulated site of N nodes (issue 12).

The simulator's site (sim/: the real controller process, N real agents with their own mTLS
sessions in worker processes, fake hypervisors): the wheel of release N.0.1 (this checkout's
code under a patch version) is uploaded and signed, then `POST /v1/upgrade` with
``max_parallel`` M. The controller restarts itself into the release (a real re-exec), then
every node stages it (the signature checked, the package fetched over its mTLS port and
checked; not unpacked: sim/worker.py ``SimStager``) and restarts into it batch by batch (a
reconnection whose hello says the release). Measured, per M, in one run of the site each:
the total time to ``activated``, the controllers' and hosts' phases, API p50/p99 of the
simulator's API clients during the upgrade, and the controller's peak CPU and RSS.

    .venv/bin/python benchmarks/upgrade_sim.py [--nodes 1000] [--max-parallel 50,200]

Results: docs/benchmarks.md ("Orchestrated upgrade of a simulated site").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.integration.wheels import source_wheel

from edgecloud import __version__
from edgecloud.sim import scenarios
from edgecloud.sim.scenarios import Run, SimOptions
from edgecloud.upgrades.releases import parse

NOW = parse(__version__)
TO = f"{NOW.major}.{NOW.minor}.{NOW.patch + 1}"


async def upgrade_once(nodes: int, max_parallel: int, workdir: Path) -> dict[str, Any]:
    options = SimOptions(
        state_dir=workdir, nodes=nodes, heartbeat=10.0, workers=4, timeout=600.0, api_clients=2
    )
    wheel = source_wheel(TO)

    async def body(run: Run, _nodes: list[Path], _port: int) -> dict[str, Any]:
        assert run.controller is not None
        info = run.controller.info
        token = (workdir / "controller" / "admin-token").read_text().strip()
        api = httpx.AsyncClient(
            base_url=info["api_url"],
            verify=ssl.create_default_context(cafile=info["ca_cert"]),
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        async with api:
            uploaded = await api.post(
                "/v1/software",
                params={"filename": f"edgecloud-{TO}-py3-none-any.whl"},
                content=wheel,
            )
            assert uploaded.status_code == 201, uploaded.text
            run.load = scenarios.api_load(run)
            run.load.start()
            t0 = await _start(api, max_parallel)
            run.phase = "upgrading"
            hosts_at: float | None = None
            state = "controllers"
            while time.time() - t0 < options.timeout:
                await asyncio.sleep(0.5)
                try:
                    found = (await api.get("/v1/upgrade")).json()
                except httpx.TransportError:
                    continue  # the controller is restarting into the release
                state = found["state"]
                if hosts_at is None and state != "controllers":
                    hosts_at = time.time()
                run.progress(f"upgrade {state}: {found['done']}/{found['total']} steps")
                if state in ("activated", "failed"):
                    break
            t1 = time.time()
            await run.load.stop()
            out = {
                "max_parallel": max_parallel,
                "state": state,
                "error": found.get("error"),
                "total_s": round(t1 - t0, 1),
                "controllers_s": round((hosts_at or t1) - t0, 1),
                "hosts_s": round(t1 - (hosts_at or t1), 1),
                "api": run.load.window(t0, t1),
                # the controller's restart is a window without an API (one controller)
                "api_hosts_phase": run.load.window(hosts_at or t1, t1),
            }
            out.update(scenarios.summary(run, t0, t1))
            return out

    result = await scenarios.with_run(options, lambda line: print(line, flush=True), body)
    result.pop("timeline", None)
    return result


async def _start(api: httpx.AsyncClient, max_parallel: int) -> float:
    """Start the upgrade once `upgrade check` lets it (as an operator would: the last nodes'
    hellos of the cold start may still be on their way into the store); when it was asked."""
    deadline = time.time() + 120
    while True:
        asked = time.time()
        started = await api.post("/v1/upgrade", json={"to": TO, "max_parallel": max_parallel})
        if started.status_code == 202 or "is not online" not in started.text:
            break
        if time.time() > deadline:
            break
        await asyncio.sleep(1)
    assert started.status_code == 202, started.text
    return asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--max-parallel", default="50,200")
    args = parser.parse_args()
    rows = []
    for m in (int(x) for x in args.max_parallel.split(",")):
        with tempfile.TemporaryDirectory(prefix="ec-bench-upgrade-sim-") as tmp:
            rows.append(asyncio.run(upgrade_once(args.nodes, m, Path(tmp))))
        print(json.dumps(rows[-1], default=str), flush=True)  # kept if a later run fails
    print(f"\n{args.nodes} simulated nodes, {__version__} -> {TO}, in service")
    print(
        "| max-parallel | result | total | controllers | hosts | API p50 / p99 (hosts phase) "
        "| API errors (all / hosts phase) | controller CPU peak | RSS peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        api, hosts = r["api"], r["api_hosts_phase"]
        print(
            f"| {r['max_parallel']} | {r['state']} | {r['total_s']} s | {r['controllers_s']} s "
            f"| {r['hosts_s']} s | {_ms(hosts['p50_s'])} / {_ms(hosts['p99_s'])} "
            f"| {api['errors']} / {hosts['errors']} | {_num(r.get('controller_cpu_pct_max'))} % "
            f"| {_num(r.get('controller_rss_mib_max'))} MiB |"
        )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    main()
