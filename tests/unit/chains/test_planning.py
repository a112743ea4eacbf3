"""Chain path planning: hops in both directions, and minimal flow changes per operation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecloud.chains.planning import Port, ServiceHop, apply, changes, steering

IN, OUT = Port(name="cust0"), Port(name="net0")


def hop(n: int) -> ServiceHop:
    return ServiceHop(instance_id=f"i{n}", customer_vnic=0, network_vnic=1)


def test_two_services_path_both_directions() -> None:
    flows = steering(IN, OUT, [hop(1), hop(2)])
    assert flows == {
        "cust0": "vnic:i1:0",
        "vnic:i1:0": "cust0",
        "vnic:i1:1": "vnic:i2:0",
        "vnic:i2:0": "vnic:i1:1",
        "vnic:i2:1": "net0",
        "net0": "vnic:i2:1",
    }


def test_insert_changes_two_flows_and_adds_two() -> None:
    before = steering(IN, OUT, [hop(1), hop(2)])
    after = steering(IN, OUT, [hop(1), hop(3), hop(2)])
    change = changes(before, after)
    assert change.remove == ()
    assert set(change.put) == {"vnic:i1:1", "vnic:i2:0", "vnic:i3:0", "vnic:i3:1"}
    assert len(change) == 4


def test_remove_and_replace_touch_only_the_neighbours() -> None:
    three = steering(IN, OUT, [hop(1), hop(3), hop(2)])
    removed = changes(three, steering(IN, OUT, [hop(1), hop(2)]))
    assert set(removed.put) == {"vnic:i1:1", "vnic:i2:0"}
    assert set(removed.remove) == {"vnic:i3:0", "vnic:i3:1"}
    replaced = changes(three, steering(IN, OUT, [hop(1), hop(4), hop(2)]))
    assert len(replaced) == 6  # two neighbours re-pointed, two new, two old gone


def test_port_keys_round_trip() -> None:
    for port in (IN, Port(instance_id="abc", vnic_index=3)):
        assert Port.parse(port.key()) == port


@given(
    st.lists(st.integers(min_value=1, max_value=30), unique=True, max_size=6),
    st.lists(st.integers(min_value=1, max_value=30), unique=True, max_size=6),
)
def test_changes_turn_any_path_into_any_other(a: list[int], b: list[int]) -> None:
    before = steering(IN, OUT, [hop(n) for n in a])
    after = steering(IN, OUT, [hop(n) for n in b])
    change = changes(before, after)
    assert apply(before, change) == after
    assert all(before.get(p) != o for p, o in change.put.items()), "a no-op flow in the bundle"
    for flows in (before, after):  # every hop is steered both ways
        assert all(flows[out] == port for port, out in flows.items())
