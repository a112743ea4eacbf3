"""Placement: pick a host for a request, or for several requests in turn.

The entry points of the scheduler. services/ calls ``place`` / ``place_many`` with a snapshot
from scheduler/snapshots.py; hosts are narrowed by scheduler/filtering.py and the survivors
weighed to spread load: most free RAM first, then fewest used vCPUs, then name, so the answer
is deterministic. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NoReturn

from edgecloud.errors import NotFound, NoValidHost
from edgecloud.scheduler.filtering import (
    DEFAULT_RATIOS,
    AllocationRatios,
    HostFilter,
    default_filters,
)
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, Placement, PlacementRequest


def place(
    snapshot: ClusterSnapshot,
    request: PlacementRequest,
    ratios: AllocationRatios = DEFAULT_RATIOS,
) -> Placement:
    """The best host for the request; NoValidHost saying which filter left none."""
    hosts = list(snapshot.hosts)
    steps = [f"{len(hosts)} hosts"]
    for host_filter in default_filters(ratios):
        hosts = [host for host in hosts if host_filter.passes(host, request)]
        steps.append(f"{host_filter.name} filter left {len(hosts)}")
        if not hosts:
            _no_valid_host(request, steps, host_filter)
    return Placement(instance=request.instance, host=min(hosts, key=_spread_key).name)


def place_many(
    snapshot: ClusterSnapshot,
    requests: list[PlacementRequest],
    ratios: AllocationRatios = DEFAULT_RATIOS,
) -> tuple[list[Placement], dict[str, str]]:
    """Place requests in order, each seeing the ones before: (placements, {instance: error})."""
    placements: list[Placement] = []
    failures: dict[str, str] = {}
    for request in requests:
        try:
            placement = place(snapshot, request, ratios)
        except NoValidHost as exc:
            failures[request.instance] = str(exc)
            continue
        placements.append(placement)
        snapshot = consume(snapshot, placement, request)
    return placements, failures


def consume(
    snapshot: ClusterSnapshot, placement: Placement, request: PlacementRequest
) -> ClusterSnapshot:
    """The snapshot after the placed request took its share of its host."""
    if all(host.name != placement.host for host in snapshot.hosts):
        raise NotFound(f"host {placement.host} is not in the snapshot")
    hosts = tuple(
        _charge(host, request) if host.name == placement.host else host for host in snapshot.hosts
    )
    return ClusterSnapshot(hosts=hosts)


def _charge(host: HostView, request: PlacementRequest) -> HostView:
    taken = {address for address, _kind in request.pci_devices}  # a device, whatever its kind
    groups = host.groups
    if request.anti_affinity_group is not None:
        groups = groups | {request.anti_affinity_group}
    return replace(
        host,
        used_vcpus=host.used_vcpus + request.vcpus,
        used_memory_mib=host.used_memory_mib + request.memory_mib,
        used_disk_gib=host.used_disk_gib + request.disk_gib,
        groups=groups,
        free_pci=frozenset(d for d in host.free_pci if d[0] not in taken),
    )


def _spread_key(host: HostView) -> tuple[int, int, str]:
    """Sort key: most free RAM first, then fewest used vCPUs, then name."""
    return (-(host.memory_mib - host.used_memory_mib), host.used_vcpus, host.name)


def _no_valid_host(request: PlacementRequest, steps: list[str], last: HostFilter) -> NoReturn:
    detail = last.explain(request)
    raise NoValidHost(f"no valid host for vnf {request.instance}: {', '.join(steps)} ({detail})")
