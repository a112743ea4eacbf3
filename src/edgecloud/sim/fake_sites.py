"""A fake site behind the real link: what controller/central_link.py ``SiteEnd`` asks of a site.

The simulator runs the real ``CentralLink`` for each simulated site (sim/site_worker.py); behind
it, instead of a site's store and services (``StoreSite``), a ``FakeSite`` answers: a summary of
so many hosts and VNFs (all up, no alarms) and an ``apply`` that records the desired version
and answers every deployment in sync, as a site whose stacks came up at once would.
"""

from __future__ import annotations

from edgecloud import __version__
from edgecloud.protocol import central as wire


class FakeSite:
    """One simulated site: ``hosts`` hosts and ``vnfs`` VNFs, applying whatever it is sent."""

    def __init__(self, hosts: int = 4, vnfs: int = 8) -> None:
        self.report = wire.SiteReport(
            release=__version__,
            inventory=wire.Inventory(
                hosts=hosts, hosts_online=hosts, vnfs=vnfs, vnfs_running=vnfs, stacks=0
            ),
        )
        self.applied = 0  # the newest desired version applied
        self.applies = 0  # how many desired states it was sent and applied

    async def summary(self) -> wire.SiteReport:
        return self.report  # the same object: the link sees no change and sends no report

    async def apply(self, desired: wire.SiteDesired) -> wire.Applied:
        self.applied = max(self.applied, desired.version)
        self.applies += 1
        results = {d.name: wire.DeploymentResult(status="in-sync") for d in desired.deployments}
        return wire.Applied(version=desired.version, results=results)
