"""Host filters: which hosts may take a request, one small named rule each.

scheduler/placing.py runs ``default_filters()`` in order and weighs the hosts left; the data
types are in scheduler/snapshots.py. Pure functions, no I/O.

Capacity allows overcommit through allocation ratios: a host with 8 vCPUs and a CPU ratio of
4.0 can hold instances totalling 32 vCPUs. RAM and disk are not overcommitted by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from edgecloud.scheduler.snapshots import HostView, PlacementRequest

CPU_ALLOCATION_RATIO = 4.0
RAM_ALLOCATION_RATIO = 1.0
DISK_ALLOCATION_RATIO = 1.0


@dataclass(frozen=True)
class AllocationRatios:
    """How far each resource may be overcommitted (1.0 = not at all)."""

    cpu: float = CPU_ALLOCATION_RATIO
    ram: float = RAM_ALLOCATION_RATIO
    disk: float = DISK_ALLOCATION_RATIO


DEFAULT_RATIOS = AllocationRatios()


@dataclass(frozen=True)
class HostFilter:
    """A named rule; ``explain`` says what the request needed when the rule left no host."""

    name: str
    passes: Callable[[HostView, PlacementRequest], bool]
    explain: Callable[[PlacementRequest], str]


def state_ok(host: HostView, request: PlacementRequest) -> bool:
    """Only hosts that are enabled and whose agent is online take new instances."""
    return host.state == "enabled" and host.online


def capacity_ok(
    host: HostView, request: PlacementRequest, ratios: AllocationRatios = DEFAULT_RATIOS
) -> bool:
    """The host has room for the request's vCPUs, memory and disk, with overcommit."""
    return (
        host.used_vcpus + request.vcpus <= host.vcpus * ratios.cpu
        and host.used_memory_mib + request.memory_mib <= host.memory_mib * ratios.ram
        and host.used_disk_gib + request.disk_gib <= host.disk_gib * ratios.disk
    )


def anti_affinity_ok(host: HostView, request: PlacementRequest) -> bool:
    """No other member of the request's anti-affinity group is on the host."""
    group = request.anti_affinity_group
    return group is None or group not in host.groups


def pci_devices_ok(host: HostView, request: PlacementRequest) -> bool:
    """Every PCI device the request's vNICs take is on the host's allowlist, of the right kind,
    and not given to another instance (devices are a resource: one instance each)."""
    return set(request.pci_devices) <= host.free_pci


def default_filters(ratios: AllocationRatios = DEFAULT_RATIOS) -> tuple[HostFilter, ...]:
    """The filters placing runs, in order."""
    return (
        HostFilter("state", state_ok, _explain_state),
        HostFilter("capacity", partial(capacity_ok, ratios=ratios), _explain_capacity),
        HostFilter("anti-affinity", anti_affinity_ok, _explain_anti_affinity),
        HostFilter("pci-devices", pci_devices_ok, _explain_pci_devices),
    )


def _explain_state(request: PlacementRequest) -> str:
    return "needs a host that is enabled and online"


def _explain_capacity(request: PlacementRequest) -> str:
    return f"needs {request.vcpus} vCPU, {request.memory_mib} MiB RAM, {request.disk_gib} GiB disk"


def _explain_anti_affinity(request: PlacementRequest) -> str:
    return f"anti-affinity group {request.anti_affinity_group} already has a member on each"


def _explain_pci_devices(request: PlacementRequest) -> str:
    wanted = ", ".join(f"{address} ({kind})" for address, kind in request.pci_devices)
    return f"needs PCI device(s) {wanted} on the host's allowlist and free"
