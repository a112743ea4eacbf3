"""Benchmark: what a host's desired-state snapshot costs the controller and the agent.

The host is the golden one of tests/unit/services/test_desired_golden.py (three VNFs in a
chain, addresses, user data, a PCI device, one VNF migrating in and one out) in a SQLite store
brought to the newest schema. It times, median of R runs, in microseconds:

- ``snapshot``: ``services.desired.snapshot`` (store reads and building the snapshot), in one
  read transaction, as the gateway's ``_sync_host`` does;
- ``build``: the pure ``services.desired.build`` from rows already loaded (only where the code
  under test has it);
- ``to wire``: the snapshot as the wire dict plus ``json.dumps`` (what the gateway frames);
- ``agent read``: ``json.loads`` plus ``protocol.desired.read`` (the agent's parse; the old
  code had none).

    .venv/bin/python benchmarks/desired_snapshot.py [--runs 2000]

Before/after: run it against the old code with ``PYTHONPATH=OLD/src`` (``git archive BASE
src | tar -x -C OLD``) and against the working tree.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecloud.services import desired
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import Host

GOLDEN_TEST = Path(__file__).parent.parent / "tests/unit/services/test_desired_golden.py"


def _site_builder() -> Any:
    spec = importlib.util.spec_from_file_location("desired_golden_site", GOLDEN_TEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _time(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _median_us(samples)


async def _old_build(s: Any, host: Host) -> Callable[[], Any]:
    """The building part of the old ``snapshot`` (before ``build``), on rows loaded once."""
    from edgecloud.services import migrations
    from edgecloud.services.chain_paths import host_steering
    from edgecloud.store import instances

    placed = [i for i in await instances.on_host(s, host.id) if i.desired_state != "deleted"]
    outgoing, incoming = await migrations.snapshot_marks(s, host)
    placed += [i for i, _mark in incoming]
    marks = outgoing | {i.id: mark for i, mark in incoming}
    steering = await host_steering(s, host.id)
    old: Any = desired

    def build() -> dict[str, Any]:
        networks = {v.network.name: v.network for i in placed for v in i.vnics}
        return {
            "steering": steering,
            "version": host.desired_version,
            "host": host.name,
            "networks": [
                {
                    "name": n.name,
                    "id": n.id,
                    "kind": n.kind,
                    "segmentation_id": n.segmentation_id,
                    "dhcp": old.dhcp_subnets(placed, n.id),
                }
                for n in sorted(networks.values(), key=lambda n: n.name)
            ],
            "instances": [old._with_mark(old._instance_spec(i), marks.get(i.id)) for i in placed],
        }

    return build


async def main(runs: int) -> None:
    site = _site_builder()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp)))
        await migrate(engine)
        sessions = session_factory(engine)
        async with transaction(sessions) as s:
            await site._site(s)
        samples = []
        for _ in range(max(runs // 10, 50)):
            start = time.perf_counter()
            async with transaction(sessions) as s:
                host = await s.get(Host, site._id(1))
                assert host is not None
                state = await desired.snapshot(s, host)
            samples.append(time.perf_counter() - start)
        print(f"snapshot (store reads + build): {_median_us(samples):8.1f} us")
        to_wire: Callable[[Any], dict[str, Any]] = lambda x: x  # noqa: E731
        read: Callable[[dict[str, Any]], Any] | None = None
        if hasattr(desired, "build"):
            from edgecloud.protocol import desired as wire

            to_wire, read = wire.to_wire, wire.read
            async with transaction(sessions) as s:
                host = await s.get(Host, site._id(1))
                assert host is not None
                rows = await desired.load(s, host)
                print(
                    f"build (pure, from rows):        {_time(lambda: desired.build(rows), runs):8.1f} us"
                )
        else:  # the old code: its dict building, from the rows its snapshot reads
            async with transaction(sessions) as s:
                host = await s.get(Host, site._id(1))
                assert host is not None
                old_build = await _old_build(s, host)
                print(f"build (dicts, from rows):       {_time(old_build, runs):8.1f} us")
        await engine.dispose()
    print(
        f"to wire + json.dumps:           {_time(lambda: json.dumps(to_wire(state)), runs):8.1f} us"
    )
    text = json.dumps(to_wire(state))
    print(f"json.loads:                     {_time(lambda: json.loads(text), runs):8.1f} us")
    if read is not None:
        parse = read
        print(
            f"agent json.loads + read:        {_time(lambda: parse(json.loads(text)), runs):8.1f} us"
        )
    print(f"wire size: {len(text)} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    asyncio.run(main(parser.parse_args().runs))
