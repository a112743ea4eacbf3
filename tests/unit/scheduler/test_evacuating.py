"""plan_evacuation: a host's instances placed on the other hosts, or the reason they cannot be."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecloud.scheduler.evacuating import plan_evacuation
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, PlacementRequest


def host(name: str, **kw: object) -> HostView:
    values: dict[str, object] = {
        "state": "enabled", "online": True, "vcpus": 4, "memory_mib": 1024, "disk_gib": 10
    }  # fmt: skip
    values.update(kw)
    return HostView(name=name, **values)  # type: ignore[arg-type]


def request(name: str, memory: int = 256, group: str | None = None) -> PlacementRequest:
    return PlacementRequest(name, vcpus=1, memory_mib=memory, anti_affinity_group=group)


def test_instances_go_to_other_hosts_never_the_emptied_one() -> None:
    snapshot = ClusterSnapshot((host("a", used_memory_mib=512), host("b"), host("c")))
    plan = plan_evacuation(snapshot, "a", [request("v1"), request("v2")])
    assert plan.feasible
    assert {p.host for p in plan.placements} <= {"b", "c"}
    assert [p.instance for p in plan.placements] == ["v1", "v2"]


def test_capacity_left_on_the_others_is_counted_in_turn() -> None:
    snapshot = ClusterSnapshot((host("a"), host("b", memory_mib=512)))
    plan = plan_evacuation(snapshot, "a", [request("v1", 384), request("v2", 384)])
    assert not plan.feasible
    assert [p.instance for p in plan.placements] == ["v1"]
    assert "v2" in plan.failures and "capacity" in plan.failures["v2"]


def test_anti_affinity_members_need_distinct_other_hosts() -> None:
    snapshot = ClusterSnapshot(
        (host("a", groups=frozenset({"g"})), host("b", groups=frozenset({"g"})))
    )
    plan = plan_evacuation(snapshot, "a", [request("v1", group="g")])
    assert plan.failures and "anti-affinity" in plan.failures["v1"]


def test_a_lone_host_cannot_be_emptied() -> None:
    plan = plan_evacuation(ClusterSnapshot((host("a"),)), "a", [request("v1")])
    assert "v1" in plan.failures and "state" in plan.failures["v1"]


@given(
    hosts=st.integers(1, 4),
    memories=st.lists(st.sampled_from([128, 256, 512]), min_size=0, max_size=6),
)
def test_a_plan_never_overfills_a_host_nor_uses_the_emptied_one(
    hosts: int, memories: list[int]
) -> None:
    snapshot = ClusterSnapshot(tuple(host(f"h{i}") for i in range(hosts)))
    requests = [request(f"v{i}", m) for i, m in enumerate(memories)]
    plan = plan_evacuation(snapshot, "h0", requests)
    assert len(plan.placements) + len(plan.failures) == len(requests)
    used: dict[str, int] = {}
    by_name = {r.instance: r for r in requests}
    for p in plan.placements:
        assert p.host != "h0"
        used[p.host] = used.get(p.host, 0) + by_name[p.instance].memory_mib
    assert all(total <= 1024 for total in used.values())
