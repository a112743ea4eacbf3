"""PCI devices are a scheduled resource: only allowlisted, of the right kind, one instance each."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.errors import InvalidInput, NoValidHost
from edgecloud.pci import parse_allowlist
from edgecloud.scheduler.placing import place, place_many
from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView, PlacementRequest

VF1, VF2, PF = (
    ("0000:03:00.1", "sriov-vf"),
    ("0000:03:00.2", "sriov-vf"),
    ("0000:04:00.0", "pci-passthrough"),
)
ADDRESSES = ("0000:03:00.1", "0000:03:00.2", "0000:04:00.0", "0000:05:00.0")
KINDS = ("sriov-vf", "pci-passthrough")


def host(name: str, *devices: tuple[str, str]) -> HostView:
    return HostView(name, "enabled", True, 64, 65536, 1000, free_pci=frozenset(devices))


def request(name: str, *devices: tuple[str, str]) -> PlacementRequest:
    return PlacementRequest(name, 1, 64, pci_devices=devices)


def test_a_vnf_goes_only_where_its_devices_are_allowlisted_and_free() -> None:
    snapshot = ClusterSnapshot((host("a"), host("b", VF1, PF)))
    assert place(snapshot, request("v", VF1)).host == "b"
    with pytest.raises(NoValidHost, match=r"needs PCI device\(s\) 0000:03:00.2 \(sriov-vf\)"):
        place(snapshot, request("v", VF2))
    with pytest.raises(NoValidHost):  # listed, but as another kind
        place(snapshot, request("v", ("0000:04:00.0", "sriov-vf")))
    placed, failed = place_many(snapshot, [request("v1", VF1), request("v2", VF1)])
    assert [p.host for p in placed] == ["b"]
    assert "needs PCI device" in failed["v2"]  # no two VNFs on one device


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSnapshot:
    names = draw(st.lists(st.sampled_from("abcd"), unique=True, min_size=1, max_size=4))
    devices = st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(KINDS))
    return ClusterSnapshot(tuple(host(n, *draw(st.sets(devices, max_size=4))) for n in names))


@st.composite
def requests(draw: st.DrawFn) -> list[PlacementRequest]:
    devices = st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(KINDS))
    wanted = st.lists(devices, unique_by=lambda d: d[0], max_size=2)
    return [request(f"v{i}", *draw(wanted)) for i in range(draw(st.integers(0, 8)))]


@given(clusters(), requests())
@settings(max_examples=200, deadline=None)
def test_no_device_is_ever_given_twice_or_outside_its_allowlist(
    snapshot: ClusterSnapshot, wanted: list[PlacementRequest]
) -> None:
    allowlist = {h.name: h.free_pci for h in snapshot.hosts}
    placed, failed = place_many(snapshot, wanted)
    by_name = {r.instance: r for r in wanted}
    given_out: set[tuple[str, str]] = set()
    for placement in placed:
        devices = {
            (placement.host, address) for address, _ in by_name[placement.instance].pci_devices
        }
        assert set(by_name[placement.instance].pci_devices) <= allowlist[placement.host]
        assert not devices & given_out
        given_out |= devices
    for name in failed:  # refused only when no host had all its devices free
        assert by_name[name].pci_devices


def test_the_allowlist_is_parsed_strictly() -> None:
    devices = parse_allowlist(["0000:03:00.1", "0000:04:00.0=pci-passthrough"])
    assert [(d.address, d.kind) for d in devices] == [VF1, PF]
    for bad in ("03:00.1", "0000:03:00.1=gpu"):
        with pytest.raises(InvalidInput):
            parse_allowlist([bad])
    with pytest.raises(InvalidInput, match="listed twice"):
        parse_allowlist(["0000:03:00.1", "0000:03:00.1=sriov-vf"])
