"""Placement by example: filters, spreading, error messages, place_many and consume."""

from __future__ import annotations

import pytest

from edgecloud.errors import InvalidInput, NotFound, NoValidHost
from edgecloud.scheduler.filtering import (
    AllocationRatios,
    anti_affinity_ok,
    capacity_ok,
    state_ok,
)
from edgecloud.scheduler.placing import consume, place, place_many
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, Placement, PlacementRequest


def host(name: str, **kwargs: object) -> HostView:
    fields: dict[str, object] = {
        "state": "enabled",
        "online": True,
        "vcpus": 8,
        "memory_mib": 8192,
        "disk_gib": 100,
        **kwargs,
    }
    return HostView(name=name, **fields)  # type: ignore[arg-type]


def request(instance: str = "vnf-1", **kwargs: object) -> PlacementRequest:
    fields: dict[str, object] = {"vcpus": 2, "memory_mib": 512, **kwargs}
    return PlacementRequest(instance=instance, **fields)  # type: ignore[arg-type]


def test_state_filter_needs_enabled_and_online() -> None:
    assert state_ok(host("a"), request())
    assert not state_ok(host("a", state="disabled"), request())
    assert not state_ok(host("a", state="locked"), request())
    assert not state_ok(host("a", online=False), request())


def test_capacity_filter_overcommits_cpu_only() -> None:
    assert capacity_ok(host("a", vcpus=1), request(vcpus=4))
    assert not capacity_ok(host("a", vcpus=1), request(vcpus=5))
    assert not capacity_ok(host("a", vcpus=1), request(vcpus=2), AllocationRatios(cpu=1.0))
    assert capacity_ok(host("a", used_memory_mib=7680), request(memory_mib=512))
    assert not capacity_ok(host("a", used_memory_mib=7681), request(memory_mib=512))
    assert not capacity_ok(host("a", disk_gib=10), request(disk_gib=11))


def test_anti_affinity_filter() -> None:
    assert anti_affinity_ok(host("a", groups=frozenset({"g"})), request())
    assert not anti_affinity_ok(
        host("a", groups=frozenset({"g"})), request(anti_affinity_group="g")
    )
    assert anti_affinity_ok(host("a", groups=frozenset({"h"})), request(anti_affinity_group="g"))


def test_spreads_to_most_free_ram_then_fewest_vcpus_then_name() -> None:
    snapshot = ClusterSnapshot(
        (host("c", used_memory_mib=1024), host("b", used_vcpus=3), host("a", used_vcpus=3))
    )
    assert place(snapshot, request()) == Placement("vnf-1", "a")
    snapshot = ClusterSnapshot((host("b", used_vcpus=1), host("a", used_vcpus=2)))
    assert place(snapshot, request()).host == "b"
    snapshot = ClusterSnapshot((host("a"), host("b", memory_mib=16384)))
    assert place(snapshot, request()).host == "b"


def test_no_valid_host_names_the_filter_that_left_none() -> None:
    snapshot = ClusterSnapshot(
        (host("a", memory_mib=256), host("b", memory_mib=256), host("c", state="locked"))
    )
    with pytest.raises(NoValidHost) as caught:
        place(snapshot, request("X"))
    assert str(caught.value) == (
        "no valid host for vnf X: 3 hosts, state filter left 2, capacity filter left 0 "
        "(needs 2 vCPU, 512 MiB RAM, 0 GiB disk)"
    )


def test_no_valid_host_for_anti_affinity_and_empty_cluster() -> None:
    snapshot = ClusterSnapshot((host("a", groups=frozenset({"g"})),))
    with pytest.raises(NoValidHost, match=r"anti-affinity filter left 0 .*group g"):
        place(snapshot, request(anti_affinity_group="g"))
    with pytest.raises(NoValidHost, match="0 hosts, state filter left 0"):
        place(ClusterSnapshot(()), request())


def test_place_many_sees_earlier_placements() -> None:
    snapshot = ClusterSnapshot((host("a"), host("b")))
    requests = [request(f"v{i}", memory_mib=3000, anti_affinity_group="g") for i in range(3)]
    placements, failures = place_many(snapshot, requests)
    assert placements == [Placement("v0", "a"), Placement("v1", "b")]
    assert list(failures) == ["v2"]
    assert "anti-affinity filter left 0" in failures["v2"]


def test_place_many_fills_by_capacity() -> None:
    snapshot = ClusterSnapshot((host("a", memory_mib=1024),))
    placements, failures = place_many(snapshot, [request(f"v{i}") for i in range(3)])
    assert [p.instance for p in placements] == ["v0", "v1"]
    assert "capacity filter left 0" in failures["v2"]


def test_consume_charges_the_host() -> None:
    snapshot = ClusterSnapshot((host("a"), host("b")))
    wanted = request(disk_gib=5, anti_affinity_group="g")
    after = consume(snapshot, Placement("vnf-1", "b"), wanted)
    assert after.hosts[0] == snapshot.hosts[0]
    charged = after.hosts[1]
    assert (charged.used_vcpus, charged.used_memory_mib, charged.used_disk_gib) == (2, 512, 5)
    assert charged.groups == frozenset({"g"})
    with pytest.raises(NotFound):
        consume(snapshot, Placement("vnf-1", "nowhere"), wanted)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInput):
        request(vcpus=0)
    with pytest.raises(InvalidInput):
        request(memory_mib=0)
    with pytest.raises(InvalidInput):
        host("a", state="maintenance")
