"""What each guest says of its own vNICs, for the observed report: verified, not yet, or never.

A guest's report comes from its serial console (guest_reports.py: edgecloud's own VNFs print
one line per vNIC) or, for a guest that prints none, from its QEMU guest agent (a compute driver
with the ``guest_agent`` capability lists the guest's interfaces with MAC and PCI address). A
complete report is kept for the rest of that boot. A guest that gives neither within
``UNVERIFIABLE_AFTER`` seconds of the node first seeing its boot is reported as
``guest_check: "unverifiable"`` (services/bindings.py); it is asked again at every
observation, so a late answer still verifies it.

Neighbours: agent/applying.py owns one ``GuestReports`` and tells it when a domain's vNICs
change or it goes (``forget``); drivers/compute/base.py is what it asks.
"""

from __future__ import annotations

import logging
import time

from edgecloud.agent import guest_reports
from edgecloud.drivers.compute.base import ComputeDriver, DomainInfo, PowerState
from edgecloud.errors import DriverError

log = logging.getLogger(__name__)
GUEST_AGENT_TIMEOUT = 3.0  # one guest agent query
# The debian-cloud guest (images/cloud_guest.py) answers through its agent about 44 s after
# start under TCG, a busybox VNF prints its console report in about 5 s; a guest silent for
# four times longer than the slow one is called unverifiable (still asked at every observation).
UNVERIFIABLE_AFTER = 180.0
UNVERIFIABLE = "unverifiable"  # the observed report's guest_check (services/bindings.py)

Report = list[dict[str, object]]


class GuestReports:
    """The guests' vNIC reports of one node, one per current boot."""

    def __init__(self, compute: ComputeDriver) -> None:
        self.compute = compute
        self.unverifiable_after = UNVERIFIABLE_AFTER
        self._kept: dict[str, tuple[str, Report]] = {}  # instance -> (boot id, report)
        self._booted: dict[str, tuple[str, float]] = {}  # boot id, monotonic time first seen

    async def report(
        self, instance_id: str, domain: DomainInfo | None
    ) -> tuple[Report | None, str | None]:
        """The guest's own vNIC report for its current boot, from its console or else its
        guest agent; and "unverifiable" when it gave neither in time."""
        if domain is None or domain.state != PowerState.RUNNING:
            return None, None
        kept = self._kept.get(instance_id)
        if kept and kept[0] == domain.boot_id:
            return kept[1], None
        reported = await self._console_report(domain)
        if reported is None:
            reported = await self._agent_report(domain)
        complete = reported is not None and {str(r["mac"]) for r in reported} == {
            m.lower() for m in domain.vnic_macs
        }
        if complete and reported is not None:  # a report of the current vNICs: keep it
            self._kept[instance_id] = (domain.boot_id, reported)
        if reported is None and self._silent_too_long(instance_id, domain.boot_id):
            return None, UNVERIFIABLE
        return reported, None

    def forget(self, instance_id: str) -> None:
        """The domain's vNICs changed, or it is gone: what its guest said no longer holds."""
        self._kept.pop(instance_id, None)
        self._booted.pop(instance_id, None)

    async def _console_report(self, domain: DomainInfo) -> Report | None:
        try:
            return guest_reports.parse(await self.compute.console_log(domain.name))
        except DriverError:
            return None

    async def _agent_report(self, domain: DomainInfo) -> Report | None:
        """The guest's PCI NICs as its guest agent lists them, in the guest's (PCI) order."""
        if not self.compute.capabilities.guest_agent:
            return None
        try:
            nics = await self.compute.guest_interfaces(domain.name, GUEST_AGENT_TIMEOUT)
        except DriverError as exc:
            log.info("guest agent of %s: %s", domain.name, exc)
            return None
        if nics is None:
            return None
        on_pci = [nic for nic in nics if nic.pci is not None]
        return [
            {"index": k, "name": nic.name, "mac": nic.mac, "pci": nic.pci}
            for k, nic in enumerate(on_pci)
        ]

    def _silent_too_long(self, instance_id: str, boot_id: str) -> bool:
        """Whether this boot has been running ``unverifiable_after`` s without a report."""
        first = self._booted.get(instance_id)
        if first is None or first[0] != boot_id:
            first = self._booted[instance_id] = (boot_id, time.monotonic())
        return time.monotonic() - first[1] >= self.unverifiable_after
