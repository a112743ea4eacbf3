"""The nodes of a multi-node site on one machine: where each lives, and taking them down.

`edgecloud up --nodes N` (N >= 2) runs N ordinary agents on this machine. Node i:

- host name ``<site host>-n<i>``, agent state STATE/nodes/n<i>/agent, log STATE/agent-n<i>.log;
- with real VMs: its own libvirtd + virtlogd (allinone/hypervisors.py, folders under
  STATE/nodes/n<i>/hypervisor), internal address 127.<a>.<b>.<i> (a loopback address of the
  site's own, fabric.node_address), its own bridge and a trunk to the
  site switch (allinone/fabric.py).

``Layout`` is all of that, computed from the options alone; the supervisor writes it to
STATE/nodes/layout.json before it creates anything and removes it after it took everything
down, so ``teardown`` (what `edgecloud down` runs when the supervisor is gone, e.g. killed)
finds every daemon, bridge and namespace from that file. allinone/supervisor.py and cli/site.py
are its callers.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.agent import tls_files
from edgecloud.allinone.fabric import Fabric, node_address, site_short
from edgecloud.allinone.hypervisors import NodeHypervisor
from edgecloud.allinone.processes import alive

LAYOUT_FILE = Path("nodes") / "layout.json"
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Node:
    """One node of the site: what its agent is started with."""

    index: int
    host: str
    state_dir: Path
    address: str
    bridge: str | None = None  # None: fake drivers
    uplink: str | None = None
    hypervisor_root: Path | None = None

    @property
    def child(self) -> str:
        """The supervisor's name for the node's agent process (and its log file)."""
        return f"agent-n{self.index}"

    def hypervisor(self) -> NodeHypervisor | None:
        if self.hypervisor_root is None:
            return None
        return NodeHypervisor(
            f"n{self.index}", self.hypervisor_root, self.address, tls_files.tls_dir(self.state_dir)
        )

    def libvirt_uri(self) -> str | None:
        hypervisor = self.hypervisor()
        return hypervisor.uri if hypervisor else None

    def as_json(self) -> dict[str, Any]:
        raw = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in raw.items()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Node:
        paths = {k: Path(raw[k]) if raw.get(k) else None for k in ("hypervisor_root",)}
        return cls(**{**raw, "state_dir": Path(raw["state_dir"]), **paths})


@dataclass(frozen=True)
class Layout:
    """Every node of a site, and its switch (None with fake drivers)."""

    nodes: tuple[Node, ...]
    fabric: Fabric | None

    @classmethod
    def plan(cls, state_dir: Path, host: str, count: int, real: bool) -> Layout:
        fabric = Fabric(site_short(state_dir), count)  # refuses a count out of range
        nodes = tuple(
            Node(
                index=i,
                host=f"{host}-n{i}",
                state_dir=state_dir / "nodes" / f"n{i}" / "agent",
                address=node_address(fabric.short, i),
                bridge=fabric.node_bridge(i) if real else None,
                uplink=fabric.uplink(i) if real else None,
                hypervisor_root=state_dir / "nodes" / f"n{i}" / "hypervisor" if real else None,
            )
            for i in range(1, count + 1)
        )
        return cls(nodes, fabric if real else None)

    def save(self, state_dir: Path) -> None:
        path = state_dir / LAYOUT_FILE
        files.private_dir(path.parent)
        raw = {
            "nodes": [n.as_json() for n in self.nodes],
            "fabric": asdict(self.fabric) if self.fabric else None,
        }
        files.write_atomic(path, json.dumps(raw, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Layout | None:
        try:
            raw = json.loads((state_dir / LAYOUT_FILE).read_text())
        except (OSError, ValueError):
            return None
        fabric = Fabric(**raw["fabric"]) if raw.get("fabric") else None
        return cls(tuple(Node.from_json(n) for n in raw["nodes"]), fabric)

    def take_down(self, state_dir: Path) -> None:
        """Stop every node's hypervisor (and its guests), remove the switch, the bridges and
        the DHCP namespaces, then forget the layout. Idempotent."""
        for node in self.nodes:
            hypervisor = node.hypervisor()
            if hypervisor is not None:
                hypervisor.stop()
        if self.fabric is not None:
            self.fabric.delete()
        (state_dir / LAYOUT_FILE).unlink(missing_ok=True)


def teardown(state_dir: Path, pids: dict[str, int]) -> bool:
    """After a supervisor died without cleaning up: stop its children (``pids`` from
    site.json, only processes that are still edgecloud's), then take the nodes down.
    True when there was anything to do."""
    leftovers = [pid for name, pid in pids.items() if name != "supervisor" and _ours(pid)]
    for pid in leftovers:
        _stop(pid)
    layout = Layout.load(state_dir)
    if layout is not None:
        layout.take_down(state_dir)
    return bool(leftovers) or layout is not None


def _ours(pid: int) -> bool:
    """An edgecloud process (a stale pid in site.json may have been reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"edgecloud" in cmdline and alive(pid)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
        time.sleep(0.05)
