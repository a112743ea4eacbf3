"""The site channel: what a site's controller and central say on their one connection.

Framed as the agent channel (protocol/framing.py, ``{"v", "t", ...}``; messages.py ``make``
and ``check``), on central's own port. The site dials out (controller/central_link.py);
central answers (central/site_gateway.py):

Site -> central                         Central -> site
  get_ca      (no cert)                   ca        {cert}
  enroll      {host: site name, secret, csr}  enrolled {cert, ca}   (site join token)
  hello       {site, release, protocols, report, applied_version}
                                          welcome   {release, protocol, heartbeat_interval,
                                                     in_sync}
                                          desired   {version, deployments} (when not in sync)
  applied     {version, results}  (per deployment: in-sync | failed | conflict, message)
  report      {report}   (when it changed)
  hb          {seq, ts}                   hb        {seq}   (echo: the site sees central alive)

Desired state is resumed by version as a node's is: central bumps a site's version with every
change of what it should run and pushes the whole of it (``SiteDesired``) to a connected site
whose applied version is not current; a site that says hello with the current version is sent
nothing.

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
SITE_TYPES = frozenset({"get_ca", "enroll", "hello", "report", "hb", "applied"})
CENTRAL_TYPES = frozenset({"ca", "enrolled", "welcome", "desired", "hb", "error", "retry"})
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
    applied_version: Count = 0  # the desired version it last applied: resumed by version


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
    in_sync: bool = False

    def frame(self) -> dict[str, Any]:
        return messages.make("welcome", **self.model_dump(mode="json"))


def hello(site: str, release: str, report: SiteReport, applied_version: int) -> dict[str, Any]:
    return messages.make(
        "hello", site=site, release=release, protocols=[SITE_PROTOCOL],
        report=report.model_dump(mode="json"), applied_version=applied_version,
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
    return parsed(SiteWelcome, _fields(message), "central's welcome")


def _no_common_version(offered: list[int]) -> ProtocolError:
    return ProtocolError(
        f"no site channel version in common: the site speaks {offered[:8]}, central "
        f"speaks [{SITE_PROTOCOL}]"
    )


# desired state: what central deploys to a site, versioned like a node's ------------------------
Text = Annotated[str, StringConstraints(max_length=1_000_000)]
MAX_DEPLOYMENTS = 1024


class DeploymentSpec(_Part):
    """One service central deploys to the site, under ``name``: a stack from ``template`` and
    ``parameters`` (kind ``stack``), or a service chain (kind ``chain``: ``chain`` is the
    site API's chain request, its services' templates included)."""

    name: Name
    kind: Annotated[str, StringConstraints(max_length=16)] = "stack"
    template: Text = ""
    parameters: Annotated[dict[Short, Any], Field(max_length=256)] = Field(default_factory=dict)
    chain: dict[Short, Any] | None = None


class SiteDesired(_Part):
    """Everything central wants at the site, at a version (``desired``)."""

    version: Count
    deployments: Annotated[list[DeploymentSpec], Field(max_length=MAX_DEPLOYMENTS)]


class DeploymentResult(_Part):
    status: Annotated[str, StringConstraints(max_length=16)]  # in-sync | failed | conflict
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None


class Applied(_Part):
    """What the site made of a desired version (``applied``), per deployment."""

    version: Count
    results: Annotated[dict[Name, DeploymentResult], Field(max_length=MAX_DEPLOYMENTS)]


def desired(state: SiteDesired) -> dict[str, Any]:
    return messages.make("desired", **state.model_dump(mode="json"))


def applied(result: Applied) -> dict[str, Any]:
    return messages.make("applied", **result.model_dump(mode="json"))


def read_desired(message: dict[str, Any]) -> SiteDesired:
    return parsed(SiteDesired, _fields(message), "central's desired state")


def read_applied(message: dict[str, Any]) -> Applied:
    return parsed(Applied, _fields(message), "site applied")


def _fields(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("v", "t")}
