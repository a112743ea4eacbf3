"""Benchmark: live vs cold migration of a chain service under a 1,000 pps probe.

One real two-node site on this machine (`edgecloud up --nodes 2`: each node its own libvirtd
and bridge, trunked to a site switch), one chain customer -> svc -> network between two
namespaces on node 1's bridge, the service a bump-in-the-wire TCG guest. In ONE run, with a
UDP probe at 1,000 pps throughout each move, the service is moved to the other node and back:

  (a) live (`vnf migrate`): libvirt peer-to-peer over TLS, the chain feeding both copies
      while it moves;
  (b) cold (`vnf migrate --cold`): stopped on the source, started on the destination (the
      way a VNF that cannot move live is moved).

For each: packets sent and lost, the longest gap between two packets, QEMU's own downtime
(live), and the migration's total time from the request to done.

    sudo .venv/bin/python benchmarks/migration.py [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chain_switch import Bench
from sites import multinode_site, write_section

from edgecloud.client import Client
from edgecloud.images.building import build_bump_in_the_wire

SECTION = "## Live vs cold migration of a chain service (issue 10)"
RATE = 1000
PROBE_LIVE_S = 15.0
PROBE_COLD_S = 60.0


async def run(
    client: Client, nodes: list[dict[str, str]], workdir: Path, kinds: tuple[bool, ...]
) -> list[dict[str, Any]]:
    token = secrets.token_hex(3)
    bench = Bench(client, {}, str(nodes[0]["bridge"]), token, workdir)
    files = build_bump_in_the_wire(workdir / "images")
    client.create_flavor("small", 1, 256)
    client.upload_image("bitw-ramdisk", files.initrd, "ramdisk")
    client.upload_image(
        "bitw", files.kernel, "kernel", ramdisk="bitw-ramdisk", cmdline=files.cmdline
    )
    rows: list[dict[str, Any]] = []
    await bench.endpoints()
    try:
        client.create_chain(
            "c1", "acme", nodes[0]["host"], bench.cns, bench.nns, [bench.service("svc")]
        )
        await bench.settled()
        steady = await bench.probe(3.0, RATE)
        print(f"steady {RATE} pps: {steady.stats.summary()}", flush=True)
        for cold in kinds:
            for _ in range(2):  # there and back
                rows.append(await move(bench, client, cold))
    finally:
        await bench.cleanup_endpoints()
    return rows


async def move(bench: Bench, client: Client, cold: bool) -> dict[str, Any]:
    chain = await bench.call(client.get_chain, "c1")
    instance = chain["services"][0]["instance_id"]
    vnf = next(v for v in await bench.call(client.list_vnfs) if v["id"] == instance)
    target = next(
        h["name"] for h in await bench.call(client.list_hosts) if h["name"] != vnf["host"]
    )
    probing = asyncio.create_task(bench.probe(PROBE_COLD_S if cold else PROBE_LIVE_S, RATE))
    await asyncio.sleep(3.0)
    started = time.monotonic()
    migration = await bench.call(client.migrate_vnf, vnf["name"], target, cold)
    while (found := await bench.call(client.get_migration, migration["id"]))["status"] not in (
        "done",
        "failed",
    ):
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    result = await probing
    stats = found.get("stats") or {}
    row = {
        "kind": "cold" if cold else "live",
        "from_to": f"{vnf['host']} -> {target}",
        "status": found["status"],
        "sent": result.stats.sent,
        "lost": result.stats.lost,
        "gap_ms": round(result.stats.longest_gap_ms or 0.0, 1),
        "downtime_ms": stats.get("downtime_ms", "-"),
        "total_s": round(elapsed, 2),
        "error": found.get("error"),
    }
    print(f"{row['kind']} {row['from_to']}: {result.stats.summary()}; {stats}", flush=True)
    return row


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()}, {os.cpu_count()} cores; QEMU TCG guest (bump-in-the-wire, 256 MiB), OVS userspace datapath, two nodes on one machine (`edgecloud up --nodes 2`).  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Probe: {RATE} pps UDP through the chain (customer -> svc -> network), attachment on node 1.",
        "",
        "| migration | hosts | result | sent | lost | longest gap (ms) | QEMU downtime (ms) | total (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['from_to']} | {r['status']} | {r['sent']} | {r['lost']} | {r['gap_ms']} | {r['downtime_ms']} | {r['total_s']} |"
        )
    lines += [
        "",
        "Total: from the API request to the migration's `done` (live: the destination prepares",
        "its overlay, config drive and ports, every host of the chain applies the flows that feed",
        "both copies, then libvirt moves the guest peer to peer over TLS; cold: the guest is shut",
        "down, the destination starts it from a fresh overlay). The longest gap is the probe's own",
        "measure on the wire; QEMU's downtime is from libvirt's job statistics (limit 100 ms).",
        "",
        "Live: about 1,000 packets arrive twice. While the guest moves, the chain feeds both copies",
        "(so it never points at neither); the paused destination's taps queue what they get (about a",
        "second at this rate) and the guest forwards that queue when it resumes, which delays the",
        "fresh packets: the longest gap (137-146 ms) is QEMU's downtime (109-122 ms, above the 100 ms",
        "limit on this busy TCG machine) plus that queue, and the loss (107-119) is what the queue",
        "pushed out. Not yet met: the issue's goal of a gap under 100 ms; feeding the destination",
        "only from its resume, or a short tap queue, are the next things to try. Cold: `done` comes",
        "when the destination has started the guest; traffic flows again once it has booted (the",
        "11-12 s gap), and the disk starts from a fresh overlay.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument(
        "--live-only", action="store_true", help="only the live moves (not written to --out)"
    )
    args = parser.parse_args()
    kinds = (False,) if args.live_only else (False, True)
    with tempfile.TemporaryDirectory(prefix="ec-migrate-") as tmp:
        workdir = Path(tmp)
        with multinode_site(workdir, 2, "--resync-interval", "0.5") as (client, _info, nodes):
            rows = asyncio.run(run(client, nodes, workdir, kinds))
    section = markdown(rows, "sudo .venv/bin/python benchmarks/migration.py")
    if not args.live_only:
        write_section(args.out, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
