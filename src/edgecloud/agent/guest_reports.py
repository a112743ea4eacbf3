"""What a guest says about its vNICs, read from its serial console.

edgecloud's VNF images (and any VNF that wants its binding verified) print one line per NIC
in the guest's own order, then a ready line:

    EDGECLOUD-VNIC index=0 name=eth0 mac=52:54:00:aa:bb:cc pci=0000:00:03.0
    EDGECLOUD-READY

Only the last complete report (the current boot) counts.
"""

from __future__ import annotations

import re

LINE = re.compile(
    r"EDGECLOUD-VNIC index=(?P<index>\d+) name=(?P<name>\S+) mac=(?P<mac>[0-9a-fA-F:]{17}) pci=(?P<pci>\S+)"
)
READY = "EDGECLOUD-READY"


def parse(console: str) -> list[dict[str, object]] | None:
    """The guest's vNICs from its last complete report, or None if it has not reported yet."""
    report: list[dict[str, object]] = []
    latest: list[dict[str, object]] | None = None
    for line in console.splitlines():
        match = LINE.search(line)
        if match:
            if match["index"] == "0":
                report = []
            report.append(
                {
                    "index": int(match["index"]),
                    "name": match["name"],
                    "mac": match["mac"].lower(),
                    "pci": match["pci"],
                }
            )
        elif READY in line:
            latest = report
            report = []
    return latest
