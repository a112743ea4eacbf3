"""Cut one node of a one-machine site off from the rest, its processes alive (issue 11 (c)).

The nodes of `edgecloud up --nodes 2` share the machine's loopback: each node's controller
listens on the node's own address (127.a.b.i), the database nodes and the monitor on
127.0.0.1 with ports of their own. A partition between node A and the rest (node B and the
monitor, the witness) is made of real dropped packets: A's processes (controller, agent,
database node: pg_autoctl and every PostgreSQL process; libvirtd and QEMU too) are moved into
a net_cls cgroup (its class id is stamped on their sockets, existing ones included, and
inherited by their children), and an nftables table drops, on output:

- from A's processes: anything to B's address, to B's database port or to the monitor's;
- from every other process: anything to A's address or to A's database port.

Nothing is closed or reset: connections stall, as on a cut cable. The data plane (the
guests' traffic over the nodes' OVS bridges and trunk) is not IP on loopback and stays up,
so two copies of a VNF would both forward: what the probe and the OVS counters must never
see. ``mend`` deletes the table and moves the processes back. Needs root, nftables
(scripts/bootstrap-host installs it) and the net_cls controller (mounted here if it is not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

NET_CLS = Path("/sys/fs/cgroup/net_cls")
TABLE = "edgecloud_partition"
CLASS_ID = 0x00EC0001


def descendants(roots: Iterable[int]) -> set[int]:
    """The processes and every process below them (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [p for p in roots if p]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


class Partition:
    """Node A (``pids``, its ``address`` and database ``port``) cut off from ``other_address``
    and ``other_ports`` (node B's database, the monitor)."""

    def __init__(
        self,
        pids: Iterable[int],
        address: str,
        port: int,
        other_address: str,
        other_ports: list[int],
    ) -> None:
        self.pids = sorted(descendants(pids))
        self.address, self.port = address, port
        self.other_address, self.other_ports = other_address, other_ports
        self.group = NET_CLS / TABLE
        self._mounted = False
        self.cut_at: float | None = None

    @staticmethod
    def problem() -> str | None:
        """Why a partition cannot be made here (None: it can)."""
        if os.geteuid() != 0:
            return "cutting a node off needs root"
        if shutil.which("nft") is None:
            return "nft is missing (scripts/bootstrap-host installs nftables)"
        if "net_cls" not in Path("/proc/cgroups").read_text():
            return "the kernel has no net_cls cgroup controller"
        return None

    def cut(self) -> None:
        if not (NET_CLS / "cgroup.procs").exists():
            NET_CLS.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "cgroup", "-o", "net_cls", "net_cls", str(NET_CLS)],
                           check=True)  # fmt: skip
            self._mounted = True
        self.group.mkdir(exist_ok=True)
        (self.group / "net_cls.classid").write_text(f"{CLASS_ID:#010x}")
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, OSError):
                (self.group / "cgroup.procs").write_text(str(pid))
        others = ", ".join(str(p) for p in self.other_ports)
        cls = f"meta cgroup {CLASS_ID:#010x}"
        rules = f"""
table inet {TABLE} {{
  chain out {{
    type filter hook output priority 0; policy accept;
    {cls} ip daddr {self.other_address} drop
    {cls} tcp dport {{ {others} }} drop
    meta cgroup != {CLASS_ID:#010x} ip daddr {self.address} drop
    meta cgroup != {CLASS_ID:#010x} tcp dport {self.port} drop
  }}
}}
"""
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)

    def mend(self) -> None:
        """Undo everything (idempotent; also after a failed ``cut``)."""
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)
        if self.group.exists():
            root = NET_CLS / "cgroup.procs"
            for pid in (self.group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, OSError):
                    root.write_text(pid)
            with contextlib.suppress(OSError):
                self.group.rmdir()
        if self._mounted:
            subprocess.run(["umount", str(NET_CLS)], check=False)
            self._mounted = False
