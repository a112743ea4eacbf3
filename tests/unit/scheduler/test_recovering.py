"""plan_recovery: a failed host's VNFs by policy; recoverable ones placed on survivors only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecloud.scheduler.recovering import POLICIES, plan_recovery
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, PlacementRequest


def host(name: str, **kw: object) -> HostView:
    values: dict[str, object] = {
        "state": "enabled", "online": True, "vcpus": 4, "memory_mib": 1024, "disk_gib": 10
    }  # fmt: skip
    values.update(kw)
    return HostView(name=name, **values)  # type: ignore[arg-type]


def request(name: str, memory: int = 256) -> PlacementRequest:
    return PlacementRequest(name, vcpus=1, memory_mib=memory)


def test_each_policy_has_its_own_outcome() -> None:
    snapshot = ClusterSnapshot((host("a", online=False), host("b")))
    plan = plan_recovery(
        snapshot,
        "a",
        [(request("r"), "recover"), (request("w"), "restart"), (request("n"), "none")],
    )
    assert plan.moves == {"r": "b"}
    assert (plan.waiting, plan.left, plan.failures) == (("w",), ("n",), {})


def test_the_survivor_is_never_the_failed_host_nor_an_offline_or_locked_one() -> None:
    snapshot = ClusterSnapshot(
        (host("a"), host("b", online=False), host("c", state="locked"), host("d"))
    )
    plan = plan_recovery(snapshot, "a", [(request("v1"), "recover"), (request("v2"), "recover")])
    assert plan.moves == {"v1": "d", "v2": "d"}


def test_what_no_survivor_can_take_is_a_failure_with_the_reason() -> None:
    snapshot = ClusterSnapshot((host("a"), host("b", memory_mib=512)))
    plan = plan_recovery(
        snapshot, "a", [(request("v1", 384), "recover"), (request("v2", 384), "recover")]
    )
    assert plan.moves == {"v1": "b"}
    assert list(plan.failures) == ["v2"] and "capacity" in plan.failures["v2"]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown recovery policy"):
        plan_recovery(ClusterSnapshot((host("a"),)), "a", [(request("v"), "evacuate")])


@given(st.lists(st.sampled_from(POLICIES), max_size=8), st.integers(1, 4))
def test_every_vnf_has_exactly_one_outcome(policies: list[str], survivors: int) -> None:
    hosts = (host("failed", online=False), *(host(f"s{i}") for i in range(survivors)))
    candidates = [(request(f"v{i}"), p) for i, p in enumerate(policies)]
    plan = plan_recovery(ClusterSnapshot(hosts), "failed", candidates)
    outcomes = [*plan.moves, *plan.waiting, *plan.left, *plan.failures]
    assert sorted(outcomes) == sorted(r.instance for r, _ in candidates)
    assert "failed" not in plan.moves.values()
    assert set(plan.moves) | set(plan.failures) == {
        r.instance for r, p in candidates if p == "recover"
    }
