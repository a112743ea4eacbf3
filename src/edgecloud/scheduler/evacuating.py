"""Emptying a host: where every instance on it would go, decided before anything moves.

`host lock` (services/maintenance.py) asks this first, so a host whose VNFs the other hosts
cannot take is refused up front with the reason, and nothing has moved. The plan places the
host's instances in turn (each seeing the ones before, as ``place_many`` does) on the other
hosts, the host itself counted as locked; capacity, anti-affinity and PCI devices are the
usual filters (scheduler/filtering.py). Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgecloud.scheduler.filtering import DEFAULT_RATIOS, AllocationRatios
from edgecloud.scheduler.placing import place_many
from edgecloud.scheduler.snapshots import ClusterSnapshot, Placement, PlacementRequest


@dataclass(frozen=True)
class EvacuationPlan:
    """Where each instance would go, and why the others could go nowhere."""

    placements: tuple[Placement, ...]
    failures: dict[str, str]

    @property
    def feasible(self) -> bool:
        return not self.failures


def plan_evacuation(
    snapshot: ClusterSnapshot,
    host: str,
    requests: list[PlacementRequest],
    ratios: AllocationRatios = DEFAULT_RATIOS,
) -> EvacuationPlan:
    """Place ``requests`` (the instances on ``host``) anywhere but ``host``."""
    others = ClusterSnapshot(
        hosts=tuple(replace(h, state="locked") if h.name == host else h for h in snapshot.hosts)
    )
    placements, failures = place_many(others, requests, ratios)
    return EvacuationPlan(tuple(placements), failures)
