"""Benchmark: what one placement costs as the number of VNF instances grows.

Builds a store the way the controller does (a SQLite file in a temporary directory, brought
to the newest schema by the project's migrations) holding H hosts and N instances already
placed on them (round-robin, every instance in one of G anti-affinity groups, one in 20
marked deleted but not yet gone from its host), plus K instances waiting for a host. Then,
for each N, it times:

- ``snapshot``: ``services.scheduling.cluster_snapshot`` (what the store is asked per placement;
  given the request's anti-affinity group when the code under test takes it)
- ``place``: ``scheduler.placing.place`` on that snapshot (the pure scheduler)
- ``schedule``: ``services.scheduling.schedule`` for each waiting instance, the whole placement
  transaction the instance reconciler runs (snapshot, place, record, alarms, event)

and prints one row per N: milliseconds per call (median over K) and placements per second.

    .venv/bin/python benchmarks/placement.py [--hosts 2000] [--instances 0,1000,5000,20000]
                                             [--placements 50] [--groups 100]

Before/after comparisons: run it once against the old code with ``PYTHONPATH=OLD/src`` (e.g.
a ``git archive HEAD src | tar -x -C OLD`` copy) and once against the working tree.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from edgecloud.scheduler.placing import place
from edgecloud.scheduler.snapshots import PlacementRequest
from edgecloud.services import scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url
from edgecloud.store.models import Flavor, Host, Image, Instance, new_id, utcnow

HOST_SHAPE = {"vcpus": 64, "memory_mib": 262144, "disk_gib": 4000}
FLAVOR_SHAPE = {"vcpus": 2, "memory_mib": 2048, "disk_gib": 10}
# The old cluster_snapshot(s) loaded every group; the new one takes the groups to look for.
NAMES_GROUPS = "groups" in inspect.signature(scheduling.cluster_snapshot).parameters


async def build_store(
    state_dir: Path, hosts: int, placed: int, waiting: int, groups: int
) -> tuple[ServiceContext, list[str], Any]:
    """A migrated store with the hosts, ``placed`` instances on them and ``waiting`` unplaced;
    returns the context, the ids of the waiting instances and the engine."""
    engine = make_engine(sqlite_url(state_dir))
    await migrate(engine)
    sessions = session_factory(engine)
    now = utcnow()
    host_ids = [new_id() for _ in range(hosts)]
    flavor_id, image_id = new_id(), new_id()
    common = {"image_id": image_id, "flavor_id": flavor_id, "meta": {}, "reboots": 0}
    common |= {"created_at": now, "updated_at": now}
    async with sessions() as s, s.begin():
        s.add(Flavor(id=flavor_id, name="bench", created_at=now, **FLAVOR_SHAPE))
        s.add(Image(id=image_id, name="bench", disk_format="qcow2", cmdline="", created_at=now))
        await s.flush()
        await s.execute(
            insert(Host),
            [
                {"id": host_id, "name": f"host-{i:05d}", "state": "enabled",
                 "availability": "online", "hypervisor": "fake", "facts": {},
                 "desired_version": 1, "applied_version": 1, "created_at": now, **HOST_SHAPE}
                for i, host_id in enumerate(host_ids)
            ],
        )  # fmt: skip
        rows = [
            {"id": new_id(), "name": f"vnf-{i:06d}", "host_id": host_ids[i % hosts],
             "anti_affinity_group": f"group-{i % groups}",
             "desired_state": "deleted" if i % 20 == 19 else "running",
             "status": "deleting" if i % 20 == 19 else "running", **common}
            for i in range(placed)
        ]  # fmt: skip
        rows += [
            {"id": new_id(), "name": f"new-{i:06d}", "host_id": None,
             "anti_affinity_group": f"group-{i % groups}" if i % 2 else None,
             "desired_state": "running", "status": "scheduling", **common}
            for i in range(waiting)
        ]  # fmt: skip
        for start in range(0, len(rows), 5000):
            await s.execute(insert(Instance), rows[start : start + 5000])
    return ServiceContext(sessions=sessions), [row["id"] for row in rows[placed:]], engine


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


async def measure(hosts: int, placed: int, placements: int, groups: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ec-bench-placement-") as tmp:
        ctx, waiting, engine = await build_store(Path(tmp), hosts, placed, placements, groups)
        try:
            snap: list[float] = []
            pure: list[float] = []
            for i in range(placements):
                request = PlacementRequest(
                    instance=f"probe-{i}", anti_affinity_group=f"group-{i % groups}",
                    **FLAVOR_SHAPE,
                )  # fmt: skip
                named = [request.anti_affinity_group] if NAMES_GROUPS else []
                async with ctx.sessions() as s:
                    started = time.perf_counter()
                    snapshot = await scheduling.cluster_snapshot(s, *named)
                    snap.append(time.perf_counter() - started)
                started = time.perf_counter()
                place(snapshot, request)
                pure.append(time.perf_counter() - started)
            full: list[float] = []
            began = time.perf_counter()
            for instance_id in waiting:
                started = time.perf_counter()
                if await scheduling.schedule(ctx, instance_id) is None:
                    raise SystemExit(f"instance {instance_id} was not placed")
                full.append(time.perf_counter() - started)
            total = time.perf_counter() - began
        finally:
            await engine.dispose()
    return {
        "snapshot": median_ms(snap),
        "place": median_ms(pure),
        "schedule": median_ms(full),
        "per_s": len(waiting) / total,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--instances", default="0,1000,5000,20000", help="comma-separated Ns")
    parser.add_argument("--placements", type=int, default=50, help="K placements timed per N")
    parser.add_argument("--groups", type=int, default=100, help="anti-affinity groups")
    args = parser.parse_args()
    print(
        f"{args.hosts} hosts, {args.placements} placements per row, {args.groups} groups"
        "; ms per call (median)"
    )
    print(f"{'instances':>10} {'snapshot':>10} {'place':>8} {'schedule':>10} {'placed/s':>9}")
    for n in (int(v) for v in args.instances.split(",")):
        row = await measure(args.hosts, n, args.placements, args.groups)
        print(
            f"{n:>10} {row['snapshot']:>10.2f} {row['place']:>8.2f} {row['schedule']:>10.2f} "
            f"{row['per_s']:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
