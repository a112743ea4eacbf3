"""Host PCI devices a VNF may be given (SR-IOV VFs, whole functions): the allowlist vocabulary.

A node offers only the devices its operator allowlisted (``edgecloud agent --pci-device
ADDRESS=KIND``, as Nova's ``[pci] device_spec``); its agent reports them at hello, the
scheduler treats each as a resource one instance holds (scheduler/filtering.py
``pci_devices_ok``), and the agent refuses to hand a guest any device not on its list. Shared
by the agent, services and the CLI, so the words are spelled once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgecloud.errors import InvalidInput

PCI_KINDS = ("sriov-vf", "pci-passthrough")
PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


@dataclass(frozen=True)
class PciDevice:
    address: str  # "0000:03:00.1"
    kind: str  # one of PCI_KINDS

    def as_fact(self) -> dict[str, str]:
        return {"address": self.address, "kind": self.kind}


def parse_allowlist(items: tuple[str, ...] | list[str]) -> tuple[PciDevice, ...]:
    """``ADDRESS=KIND`` items (KIND defaults to sriov-vf) as devices; InvalidInput if wrong."""
    devices: dict[str, PciDevice] = {}
    for item in items:
        address, _, kind = item.strip().lower().partition("=")
        kind = kind or "sriov-vf"
        if not PCI_ADDRESS.match(address):
            raise InvalidInput(
                f"PCI device {item!r}: the address must look like 0000:03:00.1", "pci_device"
            )
        if kind not in PCI_KINDS:
            raise InvalidInput(
                f"PCI device {item!r}: the kind must be one of {', '.join(PCI_KINDS)}",
                "pci_device",
            )
        if address in devices:
            raise InvalidInput(f"PCI device {address} is listed twice", "pci_device")
        devices[address] = PciDevice(address, kind)
    return tuple(devices.values())
