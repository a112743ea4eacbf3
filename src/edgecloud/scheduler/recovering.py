"""What to do with the VNFs of a failed host: where each recoverable one goes, which wait.

services/recovery.py asks this when the gateway judges a host failed. Each VNF carries its
recovery policy: ``recover`` (rebuilt on another host: placed here like an evacuation,
scheduler/evacuating.py, with the failed host excluded), ``restart`` (stays placed on the
failed host and starts there when it returns), ``none`` (stays, and is not started again).
Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecloud.scheduler.evacuating import plan_evacuation
from edgecloud.scheduler.snapshots import ClusterSnapshot, PlacementRequest

POLICIES = ("recover", "restart", "none")
DEFAULT_POLICY = "recover"


@dataclass(frozen=True)
class RecoveryPlan:
    """``moves``: instance -> the host it is rebuilt on; ``waiting``: instances left on the
    failed host (policy restart); ``left``: policy none; ``failures``: recoverable instances
    no other host can take, with the reason."""

    moves: dict[str, str]
    waiting: tuple[str, ...]
    left: tuple[str, ...]
    failures: dict[str, str]


def plan_recovery(
    snapshot: ClusterSnapshot, failed: str, candidates: list[tuple[PlacementRequest, str]]
) -> RecoveryPlan:
    """Plan the instances on host ``failed``: (placement request, recovery policy) each;
    recoverable ones are placed in turn on the other hosts (each seeing the ones before)."""
    for _, policy in candidates:
        if policy not in POLICIES:
            raise ValueError(f"unknown recovery policy {policy!r}")
    recoverable = [r for r, policy in candidates if policy == "recover"]
    plan = plan_evacuation(snapshot, failed, recoverable)
    return RecoveryPlan(
        moves={p.instance: p.host for p in plan.placements},
        waiting=tuple(r.instance for r, policy in candidates if policy == "restart"),
        left=tuple(r.instance for r, policy in candidates if policy == "none"),
        failures=dict(plan.failures),
    )
