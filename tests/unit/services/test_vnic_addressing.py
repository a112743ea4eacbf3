"""vNIC PCI slots: declared order becomes guest order, and hot-adds never move a vNIC."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.errors import InvalidInput
from edgecloud.services.vnic_addressing import (
    FIRST_SLOT,
    LAST_SLOT,
    assign_slots,
    pci_address,
    slot_for_position,
)


def test_spaced_slots_while_they_fit() -> None:
    assert assign_slots([None, None, None]) == [3, 5, 7]
    assert assign_slots([None] * 15) == list(range(3, 18))


def test_explicit_slots_are_kept() -> None:
    assert assign_slots([None, 10, None]) == [3, 10, 12]
    with pytest.raises(InvalidInput) as bad:
        assign_slots([5, 5])
    assert bad.value.field == "nics[1].pci_slot"


@given(st.integers(min_value=0, max_value=28))
def test_automatic_slots_follow_declared_order(count: int) -> None:
    slots = assign_slots([None] * count)
    assert slots == sorted(set(slots))
    assert all(FIRST_SLOT <= s <= LAST_SLOT for s in slots)


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=12), st.data())
def test_hot_add_anywhere_keeps_guest_order(count: int, data: st.DataObject) -> None:
    """Detach any vNIC and add one back at that position: order holds, nothing else moves."""
    slots = assign_slots([None] * count)
    vnics = dict(enumerate(slots))
    gone = data.draw(st.integers(min_value=0, max_value=count - 1))
    del vnics[gone]
    vnics[count] = slot_for_position(sorted(vnics.items()), count, None, "nic")  # a new last one
    vnics[gone] = slot_for_position(sorted(vnics.items()), gone, None, "nic")
    ordered = [vnics[i] for i in sorted(vnics)]
    assert ordered == sorted(ordered), "guest order differs from declared order"
    assert all(vnics[i] == slots[i] for i in range(count) if i != gone)


def test_no_room_between_neighbours_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="no free PCI slot"):
        slot_for_position([(0, 3), (2, 4)], 1, None, "pci_slot")
    assert pci_address(0x0A) == "0000:00:0a.0"
