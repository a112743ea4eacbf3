"""The site channel: what a site's controller and central say on their one connection.

Framed as the agent channel (protocol/framing.py, ``{"v", "t", ...}``; messages.py ``make``
and ``check``), on central's own port. The site dials out (controller/central_link.py);
central answers (central/site_gateway.py):

Site -> central                         Central -> site
  get_ca      (no cert)                   ca        {cert}
  enroll      {host: site name, secret, csr}  enrolled {cert, ca}   (site join token)
  hello       {site, release, protocols, report}  welcome {release, protocol, heartbeat_interval}
  report      {report}   (when it changed)
  hb          {seq, ts}                   hb        {seq}   (echo: the site sees central alive)

The report is a site's summary as central shows it in its fleet view: release, inventory
counts and alarm counts by severity (``SiteReport``). Every field is bounded; unknown fields
are kept (a newer site's additions are ignored), a missing one has its default.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgecloud.errors import ProtocolError
from edgecloud.protocol import messages
from edgecloud.protocol.schemas import Count, Name, Short, parsed

SITE_PROTOCOL = 1  # the newest site channel version this release speaks
SITE_TYPES = frozenset({"get_ca", "enroll", "hello", "report", "hb"})
CENTRAL_TYPES = frozenset({"ca", "enrolled", "welcome", "hb", "error", "retry"})
SEVERITIES = ("critical", "major", "minor", "warning")


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class AlarmCounts(_Part):
    """A site's active alarms by severity."""

    critical: Count = 0
    major: Count = 0
    minor: Count = 0
    warning: Count = 0


class Inventory(_Part):
    """What a site runs, counted."""

    hosts: Count = 0
    hosts_online: Count = 0
    vnfs: Count = 0
    vnfs_running: Count = 0
    chains: Count = 0
    stacks: Count = 0


class SiteReport(_Part):
    """A site's summary, sent at hello and whenever it changes."""

    release: Annotated[str, StringConstraints(max_length=64)] = ""
    inventory: Inventory = Field(default_factory=Inventory)
    alarms: AlarmCounts = Field(default_factory=AlarmCounts)


class SiteHello(_Part):
    v: int
    t: Short
    site: Name
    release: Annotated[str, StringConstraints(max_length=64)]
    protocols: Annotated[list[int], Field(max_length=16)]
    report: SiteReport


class ReportMessage(_Part):
    v: int
    t: Short
    report: SiteReport


class SiteWelcome(BaseModel):
    """Central's answer to a site's hello."""

    model_config = ConfigDict(extra="allow")

    release: Annotated[str, StringConstraints(max_length=64)]
    protocol: int = SITE_PROTOCOL
    heartbeat_interval: Annotated[float, Field(gt=0)] = 10.0

    def frame(self) -> dict[str, Any]:
        return messages.make("welcome", **self.model_dump(mode="json"))


def hello(site: str, release: str, report: SiteReport) -> dict[str, Any]:
    return messages.make(
        "hello", site=site, release=release, protocols=[SITE_PROTOCOL],
        report=report.model_dump(mode="json"),
    )  # fmt: skip


def report(summary: SiteReport) -> dict[str, Any]:
    return messages.make("report", report=summary.model_dump(mode="json"))


def read_hello(message: dict[str, Any]) -> SiteHello:
    hello = parsed(SiteHello, message, "site hello")
    if SITE_PROTOCOL not in hello.protocols:
        raise _no_common_version(hello.protocols)
    return hello


def read_report(message: dict[str, Any]) -> SiteReport:
    return parsed(ReportMessage, message, "site report").report


def read_welcome(message: dict[str, Any]) -> SiteWelcome:
    return parsed(SiteWelcome, {k: v for k, v in message.items() if k not in ("v", "t")},
                  "central's welcome")  # fmt: skip


def _no_common_version(offered: list[int]) -> ProtocolError:
    return ProtocolError(
        f"no site channel version in common: the site speaks {offered[:8]}, central "
        f"speaks [{SITE_PROTOCOL}]"
    )
