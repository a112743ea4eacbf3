"""Benchmark: the image store under load, measured on real processes.

Part A, upload: a 1 GiB raw disk image (sparse file with a partition-table signature) is
uploaded to a real controller process with the client SDK (the CLI's code path: sha256 first,
then a streamed PUT); the controller's RSS is sampled every 20 ms. Reports the time, the
throughput and the controller's RSS growth (the acceptance bound is 64 MiB).

Part B, an image storm: a simulated site (the real controller and N real agents with the fake
hypervisor, `edgecloud sim` machinery) starts cold; an image of M MiB is uploaded and one VNF
per node is created from it, so every node fetches the same image at once over its mTLS port.
Side by side in one run: the controller's transfer bound (default 4 at once) against no bound
(N at once). Reports the time until every VNF runs, the controller's CPU seconds and peak
CPU, the transfers that ran at once and the nodes told to retry.

    .venv/bin/python benchmarks/images.py [--upload-mib 1024] [--nodes 50] [--image-mib 256]
                                          [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from sites import write_section

from edgecloud.client import Client, ClientConfig
from edgecloud.sim import scenarios
from edgecloud.sim.fleet import ControllerProcess, free_port
from edgecloud.sim.scenarios import Run, SimOptions

HEADING = "## Image store: upload memory, and many nodes fetching one image"


def raw_disk(path: Path, mib: int) -> Path:
    with path.open("wb") as f:
        f.truncate(mib << 20)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


# Part A -----------------------------------------------------------------------------------
async def upload(workdir: Path, mib: int) -> dict[str, Any]:
    controller = ControllerProcess(workdir / "controller", free_port(), 10.0, True)
    (workdir / "controller").mkdir(parents=True)
    await controller.start()
    try:
        info = controller.info
        token = (workdir / "controller" / "admin-token").read_text().strip()
        disk = raw_disk(workdir / "upload.img", mib)
        ps = psutil.Process(info["pid"])
        base = ps.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], ps.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        config = ClientConfig(url=info["api_url"], token=token, ca_cert=info["ca_cert"])
        t0 = time.monotonic()
        try:
            with Client(config) as client:
                image = await asyncio.to_thread(client.upload_image, "big", disk, "raw")
        finally:
            done.set()
            sampler.join()
        took = time.monotonic() - t0
        cpu = ps.cpu_times()
        return {
            "size_mib": mib,
            "seconds": round(took, 1),
            "mib_per_s": round(mib / took, 1),
            "controller_rss_base_mib": round(base / 2**20, 1),
            "controller_rss_peak_mib": round(peak[0] / 2**20, 1),
            "controller_rss_growth_mib": round((peak[0] - base) / 2**20, 1),
            "controller_cpu_s_total": round(cpu.user + cpu.system, 1),
            "sha256": image["sha256"][:16],
        }
    finally:
        await controller.stop()


# Part B -----------------------------------------------------------------------------------
async def storm(workdir: Path, nodes: int, image_mib: int, max_transfers: int) -> dict[str, Any]:
    options = SimOptions(
        state_dir=workdir,
        nodes=nodes,
        workers=2,
        sources=2,
        vnfs=nodes,
        heartbeat=10.0,
        timeout=600.0,
        max_image_transfers=max_transfers,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    disk = raw_disk(workdir.parent / f"storm-{image_mib}.img", image_mib)

    async def body(run: Run, _nodes: list[Path], _port: int) -> dict[str, Any]:
        assert run.controller is not None and run.controller.ps is not None
        names = [f"vnf-{i:05d}" for i in range(nodes)]
        async with scenarios.api_load(run).client() as api:
            await scenarios._catalogue(api, run.options.state_dir)
            await _upload(api, disk)
            cpu0 = _cpu_s(run.controller.ps)
            t0 = time.time()
            run.phase = "image storm"
            await _create(api, names)
            took, running = await scenarios._wait_vnfs(run, api, names, t0)
            cpu = _cpu_s(run.controller.ps) - cpu0
        await asyncio.sleep(2.5)  # the gateway writes its counters once a second
        stats = _transfers(run)
        window = scenarios.summary(run, t0, time.time())
        out = {
            "max_transfers": max_transfers,
            "vnfs_running": running,
            "all_running_s": round(took, 1) if took else None,
            "controller_cpu_s": round(cpu, 1),
            "controller_cpu_pct_max": _round(window.get("controller_cpu_pct_max")),
            "controller_rss_mib_max": _round(window.get("controller_rss_mib_max")),
            "loop_lag_max_ms": _round(1000 * (window.get("loop_lag_max_s") or 0)),
            "hb_lag_max_ms": _round(1000 * (window.get("hb_lag_max_s") or 0)),
            "transfers_at_once_peak": stats.get("active_peak"),
            "retries": stats.get("retried"),
            "bytes_sent_mib": round(stats.get("bytes_sent", 0) / 2**20),
        }
        return out

    result = await scenarios.with_run(options, lambda line: print(line, flush=True), body)
    return {k: v for k, v in result.items() if k != "timeline"}


async def _upload(api: httpx.AsyncClient, disk: Path) -> None:
    def chunks() -> Any:
        with disk.open("rb") as f:
            while data := f.read(1 << 20):
                yield data

    async def body() -> Any:
        for chunk in chunks():
            yield chunk

    response = await api.put(
        "/v1/images/storm",
        params={"disk_format": "raw"},
        content=body(),
        headers={"Content-Length": str(disk.stat().st_size)},
        timeout=600,
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload: {response.status_code} {response.text}")


async def _create(api: httpx.AsyncClient, names: list[str]) -> None:
    async def one(name: str) -> None:
        body = {"name": name, "image": "storm", "flavor": "tiny", "nics": [{"network": "lan"}]}
        response = await api.post("/v1/vnfs", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"{name}: {response.status_code} {response.text}")

    await asyncio.gather(*(one(n) for n in names))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpu_s(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return float(times.user + times.system)


def _transfers(run: Run) -> dict[str, Any]:
    for row in reversed(run.timeline):
        gw = row.get("gw") or {}
        if "image_transfers" in gw:
            return dict(gw["image_transfers"])
    return {}


# report -----------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def section(command: str, up: dict[str, Any], storms: list[dict[str, Any]]) -> str:
    machine = f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    return f"""{HEADING}

Command: `{command}` ({machine}; controller, agents and client on this one machine).

Upload of a {up["size_mib"]} MiB raw disk image through the API (sha256 on the client, then a
streamed PUT; the controller hashes, checks with qemu-img and stores it):

{table([up], ["size_mib", "seconds", "mib_per_s", "controller_rss_base_mib", "controller_rss_peak_mib", "controller_rss_growth_mib"])}

{storms[0]["nodes"] if storms else "?"} simulated nodes (the real agent with the fake hypervisor) each start one VNF
from the same {storms[0].get("image_mib", "?") if storms else "?"} MiB image at once, so each fetches it over its mTLS port;
the controller's transfer bound against no bound, in one run:

{table(storms, ["max_transfers", "vnfs_running", "all_running_s", "controller_cpu_s", "controller_cpu_pct_max", "controller_rss_mib_max", "loop_lag_max_ms", "hb_lag_max_ms", "transfers_at_once_peak", "retries", "bytes_sent_mib"])}

How to read it: `all_running_s` runs from the first VNF create to the last VNF running (every
node fetched the whole image, verified its sha256 and committed it to its cache); the
controller's CPU is what streaming {storms[0].get("bytes_sent_mib", "?") if storms else "?"} MiB over TLS costs it; `loop_lag_max_ms` is
how late the controller's event loop woke at worst (what every API request and heartbeat
waits for) and `hb_lag_max_ms` the worst heartbeat delay. `retries` counts nodes told to come
back later because the wait line (256) was full: none at 50 nodes.
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--image-mib", type=int, default=256)
    parser.add_argument("--write", type=Path, help="Markdown file to put the section in")
    args = parser.parse_args()
    command = "python benchmarks/images.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="ec-bench-images-") as tmp:
        root = Path(tmp)
        print("part A: upload", flush=True)
        up = await upload(root / "upload", args.upload_mib)
        print(json.dumps(up), flush=True)
        storms = []
        for bound in (4, args.nodes):
            print(f"part B: {args.nodes} nodes, transfer bound {bound}", flush=True)
            result = await storm(root / f"storm-{bound}" / "sim", args.nodes, args.image_mib, bound)
            result["image_mib"] = args.image_mib
            print(json.dumps(result), flush=True)
            storms.append(result)
    if args.write:
        write_section(args.write, HEADING, section(command, up, storms))


if __name__ == "__main__":
    asyncio.run(main())
