"""The site's network on one machine: a switch bridge and each node's bridge trunked to it.

On real hardware each node's integration bridge has an uplink NIC plugged into the site's
switch, a trunk carrying every network's VLAN. `edgecloud up --nodes N` builds the same on one
machine with Open vSwitch alone:

    ecn1-<site> ──ecu1-<site> ═patch═ ecd1-<site>──┐
    ecn2-<site> ──ecu2-<site> ═patch═ ecd2-<site>──┤ ecsw-<site> (NORMAL: a learning switch)
    ...                                            ┘

- ``ecsw-<site>``: the site switch, a plain VLAN-aware learning bridge (OVS's NORMAL action);
- ``ecn<i>-<site>``: node i's bridge, created here (the node's agent then runs its own
  idempotent ``setup`` on it: secure fail mode, base flow, and its ``--uplink``);
- ``ecu<i>-<site>`` / ``ecd<i>-<site>``: a patch-port pair with no tag, so a trunk of every
  VLAN, from node i's bridge to the switch.

``<site>`` is 6 hex digits of the site's state folder, so two sites on one machine never share
a name, and every name fits in 15 characters. ``create`` is idempotent (``--may-exist``);
``delete`` removes the bridges (and with them every port on them) and the nodes' DHCP
namespaces with the dnsmasq processes in them, from the names alone: it works after a crash.
allinone/supervisor.py is the only caller; the agents see a bridge and an uplink port name,
as on separate machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecloud.drivers.network.ovs import (
    DHCP_NAMESPACE_PREFIX,
    default_datapath_type,
    delete_devices_now,
    taps_on,
)

MAX_NODES = 8  # one digit in every name
COMMAND_TIMEOUT = 15


class FabricError(RuntimeError):
    """The site's bridges could not be created or removed."""


def site_short(state_dir: Path) -> str:
    """6 hex digits naming a site's bridges and ports (from its state folder)."""
    return hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:6]


def node_address(short: str, index: int) -> str:
    """Node ``index``'s internal address on the site ``short``: a loopback address of its
    own, 127.<a>.<b>.<index> with a (2-254) and b from the site's name, so two sites on one
    machine do not both listen on one address (libvirtd's TLS port, QEMU's migration ports)."""
    digest = hashlib.sha256(short.encode()).digest()
    return f"127.{2 + digest[0] % 253}.{digest[1]}.{index}"


@dataclass(frozen=True)
class Fabric:
    """The switch bridge and ``nodes`` node bridges of the site ``short``."""

    short: str
    nodes: int

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise FabricError(f"a site on one machine has 1 to {MAX_NODES} nodes, not {self.nodes}")

    @property
    def switch(self) -> str:
        return f"ecsw-{self.short}"

    def node_bridge(self, node: int) -> str:
        return f"ecn{node}-{self.short}"

    def uplink(self, node: int) -> str:
        """The trunk port on node ``node``'s bridge (the agent's ``--uplink``)."""
        return f"ecu{node}-{self.short}"

    def downlink(self, node: int) -> str:
        """The uplink's peer on the switch."""
        return f"ecd{node}-{self.short}"

    def bridges(self) -> list[str]:
        return [self.switch, *(self.node_bridge(i) for i in range(1, self.nodes + 1))]

    # lifecycle -----------------------------------------------------------------------------
    def create(self) -> None:
        """Make the switch, each node's bridge and their trunk (idempotent, one transaction)."""
        datapath = f"datapath_type={default_datapath_type()}"
        args = ["--may-exist", "add-br", self.switch, "--", "set", "Bridge", self.switch, datapath]
        args += [f"external_ids:edgecloud-role=site-switch-{self.short}"]
        for i in range(1, self.nodes + 1):
            bridge, up, down = self.node_bridge(i), self.uplink(i), self.downlink(i)
            args += ["--", "--may-exist", "add-br", bridge]
            args += ["--", "set", "Bridge", bridge, datapath, "fail_mode=secure"]
            args += ["--", "--may-exist", "add-port", bridge, up]
            args += ["--", "set", "Interface", up, "type=patch", f"options:peer={down}"]
            args += ["--", "--may-exist", "add-port", self.switch, down]
            args += ["--", "set", "Interface", down, "type=patch", f"options:peer={up}"]
        _vsctl(f"create the site switch {self.switch}", *args)

    def delete(self) -> None:
        """Remove the nodes' DHCP namespaces (and the dnsmasq in them), every bridge and the
        vNIC taps on them; nothing absent is an error."""
        for namespace in _namespaces():
            if any(namespace.startswith(self._dhcp_prefix(i)) for i in range(1, self.nodes + 1)):
                _delete_namespace(namespace)
        args: list[str] = []
        taps: list[str] = []
        for bridge in self.bridges():
            taps += taps_on(bridge)
            args += ["--", "--if-exists", "del-br", bridge]
        _vsctl(f"remove the site switch {self.switch}", *args)
        delete_devices_now(taps)

    def existing(self) -> list[str]:
        """Which of the site's bridges exist (tests, status)."""
        present = set(_vsctl("list bridges", "list-br").split())
        return [b for b in self.bridges() if b in present]

    def _dhcp_prefix(self, node: int) -> str:
        return f"{DHCP_NAMESPACE_PREFIX}{self.node_bridge(node)}-"


def _vsctl(what: str, *args: str) -> str:
    argv = ["ovs-vsctl", f"--timeout={COMMAND_TIMEOUT}", *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT + 5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FabricError(f"could not {what}: {exc}") from exc
    if done.returncode != 0:
        raise FabricError(f"could not {what}: {done.stderr.strip()}")
    return done.stdout


def _namespaces() -> list[str]:
    done = subprocess.run(
        ["ip", "-json", "netns", "list"], capture_output=True, text=True, check=False
    )
    return [entry["name"] for entry in json.loads(done.stdout or "[]")]


def _delete_namespace(namespace: str) -> None:
    """Kill what runs in the namespace (a node's dnsmasq), then delete it."""
    done = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    for pid in done.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
