"""What the scheduler sees: an immutable snapshot of hosts and a placement request.

services/ builds a ``ClusterSnapshot`` from the store and hands it, with a
``PlacementRequest``, to scheduler/placing.py, which returns a ``Placement``; the filters that
decide which hosts qualify are in scheduler/filtering.py. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecloud.errors import InvalidInput

HOST_STATES = ("enabled", "disabled", "locked")


@dataclass(frozen=True)
class HostView:
    """One compute host: its administrative state, liveness, capacity and what is used."""

    name: str
    state: str  # "enabled" | "disabled" | "locked"
    online: bool
    vcpus: int
    memory_mib: int
    disk_gib: int
    used_vcpus: int = 0
    used_memory_mib: int = 0
    used_disk_gib: int = 0
    groups: frozenset[str] = frozenset()  # anti-affinity groups that already have an instance here
    # host PCI devices a VNF may be given (the node's allowlist) and not given to one yet:
    # (address, kind), kind "sriov-vf" or "pci-passthrough"
    free_pci: frozenset[tuple[str, str]] = frozenset()

    def __post_init__(self) -> None:
        if self.state not in HOST_STATES:
            raise InvalidInput(f"host {self.name}: unknown state {self.state!r}", "state")


@dataclass(frozen=True)
class ClusterSnapshot:
    """Every host the scheduler may consider, at one moment."""

    hosts: tuple[HostView, ...]


@dataclass(frozen=True)
class PlacementRequest:
    """One instance (a VNF's VM) to place."""

    instance: str
    vcpus: int
    memory_mib: int
    disk_gib: int = 0
    anti_affinity_group: str | None = None
    pci_devices: tuple[tuple[str, str], ...] = ()  # (host address, kind) its vNICs take

    def __post_init__(self) -> None:
        if len(set(self.pci_devices)) != len(self.pci_devices):
            raise InvalidInput(f"vnf {self.instance}: a PCI device is asked for twice", "nics")
        if self.vcpus < 1:
            raise InvalidInput(f"vnf {self.instance}: vcpus must be at least 1", "vcpus")
        if self.memory_mib < 1:
            raise InvalidInput(f"vnf {self.instance}: memory must be at least 1 MiB", "memory_mib")
        if self.disk_gib < 0:
            raise InvalidInput(f"vnf {self.instance}: disk must not be negative", "disk_gib")


@dataclass(frozen=True)
class Placement:
    """The scheduler's answer: this instance goes on this host."""

    instance: str
    host: str
