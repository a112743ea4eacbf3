"""Stable vNIC identity: MAC addresses and guest PCI slots that reflect the declared order.

Guests name NICs in PCI slot order, not in the order of the domain's interface list
(obstacle 1). So every vNIC gets an explicit slot: explicit slots are honoured, and the others
get, in declared order, a free slot above the previous vNIC's, leaving one free slot between
neighbours while all fit (up to 14 vNICs) so a vNIC can later be hot-added at any position
without moving the others. The result is stored with the vNIC and never recomputed, so it
survives reboot, rebuild, agent restart and migration.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from edgecloud.errors import InvalidInput

FIRST_SLOT = 0x03  # 0: host bridge, 1: ISA/IDE/USB bridge, 2: kept free (video on some machines)
LAST_SLOT = 0x1F
MAC_PREFIX = "52:54:00"  # QEMU's locally administered range
SPACED_UP_TO = (LAST_SLOT - FIRST_SLOT) // 2  # vNICs that fit with a free slot between each


def pci_address(slot: int) -> str:
    """The guest PCI address of a slot on bus 0."""
    return f"0000:00:{slot:02x}.0"


def assign_slots(requested: Sequence[int | None]) -> list[int]:
    """One slot per vNIC, increasing in declared order wherever the caller left it free."""
    taken: set[int] = set()
    for i, slot in enumerate(requested):
        if slot is None:
            continue
        if not FIRST_SLOT <= slot <= LAST_SLOT:
            raise InvalidInput(
                f"PCI slot {slot} is outside {FIRST_SLOT}..{LAST_SLOT}", field=f"nics[{i}].pci_slot"
            )
        if slot in taken:
            raise InvalidInput(f"PCI slot {slot} is given twice", field=f"nics[{i}].pci_slot")
        taken.add(slot)
    slots: list[int] = []
    previous = FIRST_SLOT - 2 if len(requested) <= SPACED_UP_TO else FIRST_SLOT - 1
    stride = 2 if len(requested) <= SPACED_UP_TO else 1
    for i, slot in enumerate(requested):
        if slot is None:
            slot = _free_from(previous + stride, previous + 1, taken)
            if slot is None:
                raise InvalidInput(
                    "no free PCI slot after the previous vNIC's; declare fewer vNICs or "
                    "give explicit pci_slot values",
                    field=f"nics[{i}].pci_slot",
                )
            taken.add(slot)
        slots.append(slot)
        previous = slot
    return slots


def new_mac(rng: random.Random | None = None) -> str:
    """A random MAC in QEMU's 52:54:00 range."""
    r = rng or random.SystemRandom()
    return MAC_PREFIX + "".join(f":{r.randrange(256):02x}" for _ in range(3))


def slot_for_position(
    existing: Sequence[tuple[int, int]], position: int, requested: int | None, field: str
) -> int:
    """The slot for a vNIC hot-added at ``position`` among ``existing`` (index, slot) pairs.

    A free slot between the neighbours' slots keeps every other vNIC where it is and the guest
    order equal to the declared order.
    """
    used = {slot for _, slot in existing}
    if requested is not None:
        if requested in used:
            raise InvalidInput(f"PCI slot {requested} is already used by another vNIC", field=field)
        return requested
    before = max((s for i, s in existing if i < position), default=FIRST_SLOT - 1)
    after = min((s for i, s in existing if i > position), default=None)
    if after is None:  # appended: keep a free slot behind the previous vNIC when possible
        free = _free_from(before + 2, before + 1, used)
    else:  # between neighbours: the middle free slot keeps room on both sides
        candidates = [s for s in range(before + 1, after) if s not in used]
        free = candidates[(len(candidates) - 1) // 2] if candidates else None
    if free is None:
        raise InvalidInput(
            f"no free PCI slot between the neighbours of position {position} "
            f"(after slot {before:#04x}); give pci_slot explicitly",
            field=field,
        )
    return free


def _free_from(preferred: int, lowest: int, taken: set[int]) -> int | None:
    """``preferred`` if free, else the lowest free slot from ``lowest`` up (None if none)."""
    if FIRST_SLOT <= preferred <= LAST_SLOT and preferred not in taken:
        return preferred
    return next((s for s in range(max(lowest, FIRST_SLOT), LAST_SLOT + 1) if s not in taken), None)
