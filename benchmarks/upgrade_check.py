"""Benchmark: what `edgecloud upgrade check` costs as the site grows (issue 12).

Builds a store the way the controller does (benchmarks/placement.py ``build_store``: a
migrated SQLite file, H hosts, 3 VNFs per host placed round-robin in H/2 anti-affinity
groups) and times ``services.upgrades.check`` (the whole API answer but HTTP: one read of
the site, every check, every host's evacuation plan for a release that reboots, and the
batch plan) at each H, median of 3, with the time split into reading the store, the
evacuation plans and the batch plan.

    .venv/bin/python benchmarks/upgrade_check.py [--hosts 100,1000,2000] [--max-parallel 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from placement import build_store

from edgecloud.services import upgrades
from edgecloud.upgrades import batching


async def measure(hosts: int, max_parallel: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ec-bench-upgrade-") as tmp:
        ctx, _, engine = await build_store(Path(tmp), hosts, 3 * hosts, 0, max(1, hosts // 2))
        try:
            whole, plans = [], []
            for _ in range(3):
                started = time.perf_counter()
                found = await upgrades.check(ctx, "0.3.0", reboot=True, max_parallel=max_parallel)
                whole.append(time.perf_counter() - started)
                _, loads, leader = await upgrades.facts(ctx)
                started = time.perf_counter()
                batching.plan([], leader, loads, max_parallel)
                plans.append(time.perf_counter() - started)
        finally:
            await engine.dispose()
    return {
        "check_ms": statistics.median(whole) * 1000,
        "batch_plan_ms": statistics.median(plans) * 1000,
        "batches": len(found.plan.batches),
        "cannot_empty": sum(1 for h in found.assessment.checks if h.result == "failure"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="100,1000,2000", help="comma-separated Hs")
    parser.add_argument("--max-parallel", type=int, default=10)
    args = parser.parse_args()
    print("| hosts | VNFs | check (ms) | of it: batch plan (ms) | batches |")
    print("|---|---|---|---|---|")
    for hosts in (int(h) for h in args.hosts.split(",")):
        row = await measure(hosts, args.max_parallel)
        print(
            f"| {hosts:,} | {3 * hosts:,} | {row['check_ms']:.0f} | "
            f"{row['batch_plan_ms']:.1f} | {row['batches']} |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
