"""Placement properties, checked with Hypothesis against an independent oracle."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.errors import NoValidHost
from edgecloud.scheduler.filtering import AllocationRatios
from edgecloud.scheduler.placing import place, place_many
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, Placement, PlacementRequest

GROUPS = ("g1", "g2", "g3")
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def hosts(draw: st.DrawFn, name: str) -> HostView:
    vcpus = draw(st.integers(1, 16))
    memory = draw(st.integers(256, 16384))
    disk = draw(st.integers(0, 200))
    return HostView(
        name=name,
        state=draw(st.sampled_from(("enabled", "enabled", "disabled", "locked"))),
        online=draw(st.booleans()) or draw(st.booleans()),
        vcpus=vcpus,
        memory_mib=memory,
        disk_gib=disk,
        used_vcpus=draw(st.integers(0, vcpus * 4)),
        used_memory_mib=draw(st.integers(0, memory)),
        used_disk_gib=draw(st.integers(0, disk)),
        groups=frozenset(draw(st.sets(st.sampled_from(GROUPS), max_size=2))),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> ClusterSnapshot:
    names = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=6))
    return ClusterSnapshot(tuple(draw(hosts(name)) for name in names))


@st.composite
def requests(draw: st.DrawFn, instance: str = "vnf") -> PlacementRequest:
    return PlacementRequest(
        instance=instance,
        vcpus=draw(st.integers(1, 16)),
        memory_mib=draw(st.integers(1, 8192)),
        disk_gib=draw(st.integers(0, 50)),
        anti_affinity_group=draw(st.none() | st.sampled_from(GROUPS)),
    )


@st.composite
def request_lists(draw: st.DrawFn) -> list[PlacementRequest]:
    count = draw(st.integers(0, 10))
    return [draw(requests(f"vnf-{i}")) for i in range(count)]


ratio_values = st.builds(
    AllocationRatios,
    cpu=st.sampled_from((1.0, 2.0, 4.0, 16.0)),
    ram=st.sampled_from((1.0, 1.5)),
    disk=st.sampled_from((1.0, 2.0)),
)


def acceptable(host: HostView, request: PlacementRequest, ratios: AllocationRatios) -> bool:
    """The oracle: written apart from filtering.py, from the rules as stated."""
    return (
        host.state == "enabled"
        and host.online
        and host.used_vcpus + request.vcpus <= host.vcpus * ratios.cpu
        and host.used_memory_mib + request.memory_mib <= host.memory_mib * ratios.ram
        and host.used_disk_gib + request.disk_gib <= host.disk_gib * ratios.disk
        and request.anti_affinity_group not in host.groups
    )


def by_name(snapshot: ClusterSnapshot) -> dict[str, HostView]:
    return {host.name: host for host in snapshot.hosts}


@PROPERTY_SETTINGS
@given(snapshots(), requests(), ratio_values)
def test_place_picks_an_acceptable_host_or_none_exists(
    snapshot: ClusterSnapshot, request: PlacementRequest, ratios: AllocationRatios
) -> None:
    try:
        placement = place(snapshot, request, ratios)
    except NoValidHost as exc:
        assert not any(acceptable(host, request, ratios) for host in snapshot.hosts)
        assert str(exc).startswith(f"no valid host for vnf {request.instance}: ")
        return
    assert acceptable(by_name(snapshot)[placement.host], request, ratios)
    candidates = [host for host in snapshot.hosts if acceptable(host, request, ratios)]
    best = min(candidates, key=lambda h: (h.used_memory_mib - h.memory_mib, h.used_vcpus, h.name))
    assert placement.host == best.name


@PROPERTY_SETTINGS
@given(snapshots(), request_lists(), ratio_values)
def test_place_many_respects_capacity_state_and_anti_affinity(
    snapshot: ClusterSnapshot, wanted: list[PlacementRequest], ratios: AllocationRatios
) -> None:
    placements, failures = place_many(snapshot, wanted, ratios)
    assert {p.instance for p in placements}.isdisjoint(failures)
    assert len(placements) + len(failures) == len(wanted)
    hosts = by_name(snapshot)
    requested = {r.instance: r for r in wanted}
    for name, placed in _placed_by_host(placements, requested).items():
        host = hosts[name]
        assert host.state == "enabled" and host.online
        assert host.used_vcpus + sum(r.vcpus for r in placed) <= host.vcpus * ratios.cpu
        assert host.used_memory_mib + sum(r.memory_mib for r in placed) <= (
            host.memory_mib * ratios.ram
        )
        assert host.used_disk_gib + sum(r.disk_gib for r in placed) <= host.disk_gib * ratios.disk
        groups = Counter(r.anti_affinity_group for r in placed if r.anti_affinity_group)
        assert all(count == 1 for count in groups.values())
        assert host.groups.isdisjoint(groups)


def _placed_by_host(
    placements: list[Placement], requested: dict[str, PlacementRequest]
) -> dict[str, list[PlacementRequest]]:
    placed: dict[str, list[PlacementRequest]] = {}
    for placement in placements:
        placed.setdefault(placement.host, []).append(requested[placement.instance])
    return placed


@PROPERTY_SETTINGS
@given(snapshots(), request_lists(), st.randoms(use_true_random=False))
def test_place_many_is_deterministic(
    snapshot: ClusterSnapshot, wanted: list[PlacementRequest], rng: random.Random
) -> None:
    first = place_many(snapshot, wanted)
    assert place_many(snapshot, wanted) == first
    shuffled = list(snapshot.hosts)
    rng.shuffle(shuffled)
    assert place_many(ClusterSnapshot(tuple(shuffled)), wanted) == first
