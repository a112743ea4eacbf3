"""Whether a VNF's vNIC binding is verified from inside its guest: the one predicate.

A binding is ``verified`` when the guest of the current boot reported every declared vNIC
with its declared MAC at its declared PCI address, the k-th NIC the guest found being the k-th
declared vNIC (obstacle 1). The guest reports on its serial console (edgecloud's own VNFs) or
through its QEMU guest agent; the node reads either (agent/applying.py) and
services/reports.py stores what was seen. A guest that does neither within a bounded time
after boot is ``unverifiable`` (the node says so): shown as such, it raises no mismatch alarm,
while ``not_verified`` means no complete report yet or a report that does not match. The API
view (api/views.py), the mismatch alarm (reports.py) and chain bring-up (reconcile/chains.py)
all ask here.
"""

from __future__ import annotations

import enum

from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store.models import Instance, Vnic

UNVERIFIABLE = "unverifiable"  # Instance.guest_check, as the node reports it


class Binding(enum.StrEnum):
    """What is known of a VNF's vNIC binding in its current boot."""

    VERIFIED = "verified"
    NOT_VERIFIED = "not_verified"
    UNVERIFIABLE = "unverifiable"


def vnic_matches(vnic: Vnic) -> bool:
    """The guest saw this vNIC at its position with its declared MAC at its declared slot."""
    return vnic.guest_mac == vnic.mac and vnic.guest_pci == pci_address(vnic.pci_slot)


def binding_verified(instance: Instance) -> bool:
    """True only when the guest reported every declared vNIC at its declared MAC and slot
    (the guest's k-th NIC is the k-th declared vNIC)."""
    return bool(instance.vnics) and all(vnic_matches(v) for v in instance.vnics)


def binding_state(instance: Instance) -> Binding:
    """Verified, unverifiable (the guest cannot tell), or not (yet) verified."""
    if binding_verified(instance):
        return Binding.VERIFIED
    if instance.guest_check == UNVERIFIABLE:
        return Binding.UNVERIFIABLE
    return Binding.NOT_VERIFIED
