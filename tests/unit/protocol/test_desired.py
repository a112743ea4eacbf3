"""protocol/desired.py: the typed snapshot reads a wire dict strictly and says which field
does not fit; it ignores what a newer controller adds and fills in what an older one did not
send; it is frozen; ``to_wire`` leaves out only what the wire never carried when absent (a
migration, steering) and round-trips what it read. The golden wire form itself:
tests/unit/services/test_desired_golden.py."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from edgecloud.errors import ProtocolError
from edgecloud.protocol.desired import DesiredState, read, to_wire

INSTANCE: dict[str, Any] = {
    "id": "i-1",
    "name": "v1",
    "domain": "ec-v1-i-1",
    "desired_state": "running",
    "reboots": 0,
    "vcpus": 1,
    "memory_mib": 64,
    "disk_gib": 0,
    "image": {"name": "k", "format": "qcow2", "sha256": "0" * 64, "size": 1},
    "vnics": [
        {"index": 0, "network": "lan", "model": "virtio", "mac": "52:54:00:00:00:01", "pci_slot": 3}
    ],
}
NETWORK = {"name": "lan", "id": "n-1", "kind": "vlan", "segmentation_id": 100}


def _spec(**instance: Any) -> dict[str, Any]:
    return {
        "version": 3,
        "host": "n1",
        "networks": [NETWORK],
        "instances": [copy.deepcopy(INSTANCE) | instance],
    }


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"vcpus": "1"}, "instances.0.vcpus"),
        ({"vcpus": 1.0}, "instances.0.vcpus"),
        ({"image": {"name": "k"}}, "instances.0.image.format"),
        ({"vnics": [{"index": 0}]}, "instances.0.vnics.0.network"),
        (
            {"migration": {"id": "m", "kind": "live", "role": "sideways"}},
            "instances.0.migration.role",
        ),
        ({"user_data": 7}, "instances.0.user_data"),
    ],
)
def test_a_field_that_does_not_fit_is_named(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ProtocolError, match=rf"^desired state: {where}: "):
        read(_spec(**change))


@pytest.mark.parametrize("spec", [None, [], "x", {"instances": []}])
def test_what_is_no_snapshot_at_all_is_refused(spec: Any) -> None:
    with pytest.raises(ProtocolError, match=r"^desired state: "):
        read(spec)


def test_an_older_controllers_snapshot_reads_with_defaults() -> None:
    """What the agent read with ``.get`` before: absent means as before."""
    old = {"version": 1, "instances": [copy.deepcopy(INSTANCE)], "networks": [NETWORK]}
    del old["instances"][0]["reboots"]
    state = read(old)
    (instance,) = state.instances
    assert state.steering is None and state.host == "" and state.networks[0].dhcp == ()
    assert instance.migration is None and instance.recovery is None
    assert (instance.hostname, instance.public_keys, instance.metadata) == ("", {}, {})
    assert instance.vnics[0].fixed_ips == () and instance.vnics[0].tag is None
    assert "steering" not in to_wire(state) and "migration" not in to_wire(state)["instances"][0]


def test_a_newer_controllers_fields_are_ignored() -> None:
    spec = _spec(colour="blue") | {"priority": 1}
    spec["networks"][0] = NETWORK | {"mtu": 9000}
    state = read(spec)
    assert to_wire(state) == to_wire(read(_spec()))


def test_it_is_frozen() -> None:
    state = read(_spec())
    with pytest.raises(pydantic.ValidationError):
        state.version = 4  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        state.instances[0].vcpus = 8  # type: ignore[misc]


def test_migration_marks_go_as_they_came() -> None:
    out = {"id": "m", "kind": "live", "role": "outgoing",
           "destination": {"host": "n2", "address": None}}  # fmt: skip
    into = {"id": "m", "kind": "cold", "role": "incoming", "source": "n2"}
    for mark in (out, into):
        state = read(_spec(migration=mark))
        assert to_wire(state)["instances"][0]["migration"] == mark
    assert read(_spec(migration=into)).instances[0].incoming
    assert read(_spec(migration=out)).instances[0].outgoing


def test_steering_keeps_single_and_listed_outputs() -> None:
    flows = {"cust0": "vnic:i-1:0", "vnic:i-1:1": ["net0", "vlan:3001"]}
    state = read(_spec() | {"steering": flows})
    assert to_wire(state)["steering"] == flows
    assert isinstance(state, DesiredState) and state.by_id()["i-1"].name == "v1"
