"""Benchmark: what an idle edgecloud site costs the box it runs on (memory and CPU).

Customer-premises boxes are small; this measures the site's own processes with three VNFs
running and nothing happening: `edgecloud up` (one node on the host's libvirtd, or
``--nodes N [--redundant]``: each node its own libvirtd, and with --redundant a replicated
PostgreSQL and a second controller), three bump-in-the-wire TCG guests, then a quiet window.

Per kind of process: how many, their proportional set size (PSS, /proc/PID/smaps_rollup: shared
pages divided among the processes sharing them, so the sum is what they cost together) and their
CPU over the window (utime + stime from /proc/PID/stat, as % of one core). The site's processes
are the `edgecloud up` supervisor and everything it started; the guests (qemu-system-*) are
shown on their own line, and the host's shared daemons (Open vSwitch; the host's libvirtd and
virtlogd for a one-node site) on theirs, outside the site's total.

    sudo .venv/bin/python benchmarks/footprint.py [--nodes 2 --redundant] [--window 60]
        [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sites import bridge, multinode_site, real_site, write_section

from edgecloud.client import Client
from edgecloud.images.building import build_bump_in_the_wire

SECTION = "## What an idle site costs: memory and CPU (footprint)"
VNFS = 3
SETTLE_S = 20.0
HOST_DAEMONS = ("ovs-vswitchd", "ovsdb-server", "libvirtd", "virtlogd")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str


def processes() -> dict[int, Proc]:
    found: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        found[int(entry.name)] = Proc(int(entry.name), ppid, comm, cmdline)
    return found


def descendants(root: int, table: dict[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    seen, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def kind(p: Proc) -> str:
    """What a process is, for the table."""
    words = p.cmdline.split()
    if p.comm.startswith("qemu-system"):
        return "guests (qemu)"
    if "edgecloud.allinone.supervisor" in words:  # what `edgecloud up` execs
        return "supervisor (edgecloud up)"
    if "edgecloud" in p.cmdline and len(words) > 2:
        for role in ("controller", "agent", "up"):
            if role in words:
                return "supervisor (edgecloud up)" if role == "up" else f"edgecloud {role}"
    if p.comm in ("postgres", "pg_autoctl"):
        return "PostgreSQL + pg_auto_failover"
    return p.comm


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(supervisor: int, window: float) -> list[dict[str, Any]]:
    """One row per kind of process: count, PSS and CPU over ``window`` seconds."""
    table = processes()
    site = descendants(supervisor, table)
    host = {p.pid for p in table.values() if p.comm in HOST_DAEMONS and p.pid not in site}
    watched = site | host
    before = {pid: cpu_ticks(pid) for pid in watched}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    rows: dict[str, dict[str, Any]] = {}
    for pid in watched:
        p = table[pid]
        name = kind(p)
        group = "guest" if name == "guests (qemu)" else "site" if pid in site else "host"
        row = rows.setdefault(name, {"what": name, "group": group, "n": 0, "pss": 0, "cpu": 0})
        row["n"] += 1
        row["pss"] += pss_kib(pid)
        row["cpu"] += max(0, cpu_ticks(pid) - before[pid])
    for row in rows.values():
        row["pss_mib"] = round(row.pop("pss") / 1024, 1)
        row["cpu_pct"] = round(100 * row.pop("cpu") / TICKS / elapsed, 2)
    order = {"site": 0, "guest": 1, "host": 2}
    return sorted(rows.values(), key=lambda r: (order[r["group"]], -r["pss_mib"]))


def with_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    site = [r for r in rows if r["group"] == "site"]
    total = {
        "what": "**site total**",
        "group": "site",
        "n": sum(r["n"] for r in site),
        "pss_mib": round(sum(r["pss_mib"] for r in site), 1),
        "cpu_pct": round(sum(r["cpu_pct"] for r in site), 2),
    }
    return [*site, total, *(r for r in rows if r["group"] != "site")]


@contextmanager
def site(workdir: Path, nodes: int, redundant: bool) -> Iterator[tuple[Client, dict[str, Any]]]:
    if nodes == 1:
        with bridge(f"ecfp{secrets.token_hex(2)}") as br, real_site(workdir, br) as (c, info):
            yield c, dict(info)
        return
    extra = ("--redundant",) if redundant else ()
    with multinode_site(workdir, nodes, *extra) as (client, info, _nodes):
        yield client, dict(info)


def start_vnfs(client: Client, workdir: Path) -> None:
    files = build_bump_in_the_wire(workdir / "images")
    client.create_flavor("small", 1, 256)
    client.upload_image("bitw-ramdisk", files.initrd, "ramdisk")
    client.upload_image(
        "bitw", files.kernel, "kernel", ramdisk="bitw-ramdisk", cmdline=files.cmdline
    )
    client.create_network("lan", "flat")
    for k in range(VNFS):
        client.create_vnf(f"v{k}", "bitw", "small", [{"network": "lan"}])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        vnfs = client.list_vnfs()
        if all(v["status"] == "running" and v.get("binding") == "verified" for v in vnfs):
            return
        time.sleep(1.0)
    raise SystemExit(f"the VNFs did not all run verified within 300 s: {vnfs}")


def markdown(rows: list[dict[str, Any]], label: str, window: float, command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()}, {os.cpu_count()} cores. Measured: "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {label}, {VNFS} VNFs running "
        f"(bump-in-the-wire, 256 MiB, TCG), then {window:.0f} s with nothing happening.",
        "",
        "| process | count | PSS (MiB) | CPU (% of a core) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        where = {"guest": " (not the site's)", "host": " (host, shared)"}.get(r["group"], "")
        lines.append(f"| {r['what']}{where} | {r['n']} | {r['pss_mib']} | {r['cpu_pct']} |")
    lines += [
        "",
        "PSS divides shared pages among the processes that share them, so the site total is what",
        "the site's processes cost together. The guests' memory is their own (three 256 MiB",
        "TCG guests); Open vSwitch and (one node) the host's libvirtd are the host's.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--redundant", action="store_true")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="write the section into this file")
    args = parser.parse_args()
    label = f"{args.nodes} node(s)" + (", redundant" if args.redundant else "")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="ec-footprint-") as tmp:
        workdir = Path(tmp)
        with (
            console.status(f"starting a site ({label})"),
            site(workdir, args.nodes, args.redundant) as (client, info),
        ):
            with console.status(f"starting {VNFS} VNFs"):
                start_vnfs(client, workdir)
            with console.status(f"settling {SETTLE_S:.0f} s, then measuring {args.window:.0f} s"):
                time.sleep(SETTLE_S)
                rows = with_totals(measure(int(info["pids"]["supervisor"]), args.window))
    table = Table(title=f"idle site, {label}, {VNFS} VNFs")
    for column in ("process", "count", "PSS (MiB)", "CPU (% of a core)"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["what"], str(r["n"]), str(r["pss_mib"]), str(r["cpu_pct"]))
    Console().print(table)
    command = (
        "sudo .venv/bin/python benchmarks/footprint.py"
        + (f" --nodes {args.nodes}" if args.nodes > 1 else "")
        + (" --redundant" if args.redundant else "")
    )
    section = markdown(rows, label, args.window, command)
    if args.out is not None:
        write_section(args.out, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
