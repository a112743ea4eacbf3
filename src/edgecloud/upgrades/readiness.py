"""`edgecloud upgrade check`: whether the site can upgrade to a release, and why not, decided
before anything changes (Nova's ``nova-status upgrade check``, StarlingX's health query).

``assess(facts, to)`` runs every check on a snapshot of the site (``SiteFacts``, gathered by
services/upgrades.py) and returns each one's result: ``ok``, ``warning`` (the upgrade can go
on; the operator should know) or ``failure`` (it must not start). Pure functions, no I/O.

The checks, in the order they are shown:

- **release**: the target is a release, newer than the site's, and at most one train ahead of
  its oldest controller or agent (upgrades go one train at a time).
- **software**: the target's package is uploaded (services/software.py); a patch fixes the
  train the site runs. Its manifest says whether hosts reboot (``reboot`` below).
- **upgrade in progress**: every controller and host runs the same release (else an upgrade
  is half done: finish or abort it first).
- **controllers**: every controller is up; one controller alone is a warning (its API is away
  while it restarts; agents and VNFs go on).
- **hosts**: every host is online; locked ones (no VNFs placed) are a warning; one being
  emptied for maintenance, or a VNF migration under way, is a failure.
- **alarms**: no active critical or major alarm (minor and warning ones are a warning).
- **room to empty hosts**: each host with VNFs could be emptied by live migration (capacity,
  anti-affinity, PCI devices), which a release that needs a reboot does host by host. A
  failure when ``reboot`` is asked (the release declares it); else a warning, since an
  in-service upgrade moves nothing: a one-node site upgrades in service only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edgecloud.upgrades.releases import Release, compatible, parse

Result = Literal["ok", "warning", "failure"]
RANK: dict[Result, int] = {"ok": 0, "warning": 1, "failure": 2}
SHOWN = 3  # names listed in one detail before "and N more"


@dataclass(frozen=True)
class HostFacts:
    name: str
    state: str  # enabled|disabled|locked
    availability: str  # online|offline|...
    release: str | None  # None: an agent before 0.2.0 (or one never connected)
    connected: bool  # whether its agent ever said hello (a protocol is stored)
    evacuating: bool = False
    cannot_empty: str | None = None  # why its VNFs could not all be moved elsewhere
    vnfs: int = 0


@dataclass(frozen=True)
class ControllerFacts:
    id: str
    release: str | None
    up: bool


@dataclass(frozen=True)
class AlarmFacts:
    alarm_id: str
    severity: str
    entity: str


@dataclass(frozen=True)
class PackageFacts:
    release: str
    kind: str  # release | patch
    applies_to: str | None  # a patch's train, "0.2"
    reboot_required: bool


@dataclass(frozen=True)
class SiteFacts:
    controllers: tuple[ControllerFacts, ...]
    hosts: tuple[HostFacts, ...]
    alarms: tuple[AlarmFacts, ...] = ()
    migrating: tuple[str, ...] = ()  # VNFs with a live migration under way
    packages: tuple[PackageFacts, ...] = ()  # software uploaded to the site

    def package(self, release: str) -> PackageFacts | None:
        return next((p for p in self.packages if p.release == release), None)


@dataclass(frozen=True)
class Check:
    name: str
    result: Result
    detail: str


@dataclass(frozen=True)
class Assessment:
    current: str  # the site's release (its controllers'; the oldest when they differ)
    to: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def result(self) -> Result:
        return max((c.result for c in self.checks), key=RANK.__getitem__, default="ok")


def assess(facts: SiteFacts, to: str, reboot: bool = False) -> Assessment:
    """Every check on ``facts`` for an upgrade to ``to`` (ValueError when ``to`` is no release);
    ``reboot``: the release needs hosts rebooted, so each must be emptied first (also when its
    package says so)."""
    target = parse(to)
    current = min((parse(c.release) for c in facts.controllers), default=target)
    package = facts.package(str(target))
    reboot = reboot or (package is not None and package.reboot_required)
    checks = tuple(
        check(facts)
        for check in (
            _release(target),
            _software(target),
            _mixed,
            _controllers,
            _hosts,
            _alarms,
            _room(reboot),
        )
    )
    return Assessment(str(current), str(target), checks)


def _release(target: Release) -> Callable[[SiteFacts], Check]:
    def check(facts: SiteFacts) -> Check:
        releases = [parse(c.release) for c in facts.controllers]
        releases += [parse(h.release) for h in facts.hosts if h.connected]
        if not releases:
            return Check("release", "failure", "no controller has recorded its release")
        oldest, newest = min(releases), max(releases)
        if target <= newest:
            return Check(
                "release", "failure", f"the site already runs {newest}: {target} is no upgrade"
            )
        if not compatible(target, oldest):
            return Check(
                "release",
                "failure",
                f"{target} does not serve {oldest}, the site's oldest release: upgrade one "
                f"train at a time ({oldest.major}.{oldest.minor + 1}.x first)",
            )
        return Check("release", "ok", f"{oldest} -> {target}")

    return check


def _software(target: Release) -> Callable[[SiteFacts], Check]:
    def check(facts: SiteFacts) -> Check:
        package = facts.package(str(target))
        if package is None:
            return Check(
                "software",
                "failure",
                f"no software package of {target}: upload its wheel first "
                f"(edgecloud software upload edgecloud-{target}-py3-none-any.whl)",
            )
        how = "reboots hosts" if package.reboot_required else "in service"
        if package.kind == "patch":
            trains = {parse(c.release).train for c in facts.controllers}
            trains |= {parse(h.release).train for h in facts.hosts if h.connected}
            wrong = sorted(f"{major}.{minor}" for major, minor in trains)
            if package.applies_to is not None and wrong != [package.applies_to]:
                return Check(
                    "software",
                    "failure",
                    f"patch {target} fixes {package.applies_to}.x; the site runs "
                    f"{', '.join(w + '.x' for w in wrong)}",
                )
        return Check("software", "ok", f"{target} uploaded ({package.kind}, {how})")

    return check


def _mixed(facts: SiteFacts) -> Check:
    running: dict[str, list[str]] = {}
    for c in facts.controllers:
        running.setdefault(str(parse(c.release)), []).append(f"controller {c.id}")
    for h in facts.hosts:
        if h.connected:
            running.setdefault(str(parse(h.release)), []).append(f"host {h.name}")
    if len(running) <= 1:
        return Check("upgrade in progress", "ok", "every controller and host runs one release")
    parts = [f"{release}: {_names(who)}" for release, who in sorted(running.items())]
    return Check(
        "upgrade in progress",
        "failure",
        "the site runs more than one release (" + "; ".join(parts) + "): "
        "complete or abort the upgrade under way first",
    )


def _controllers(facts: SiteFacts) -> Check:
    down = [c.id for c in facts.controllers if not c.up]
    if down:
        return Check(
            "controllers",
            "failure",
            f"controller {_names(down)} is down: upgrading the other would leave the site "
            "without a working controller",
        )
    if len(facts.controllers) == 1:
        return Check(
            "controllers",
            "warning",
            "one controller: its API is away while it restarts (agents and VNFs go on)",
        )
    return Check("controllers", "ok", f"{len(facts.controllers)} controllers up")


def _hosts(facts: SiteFacts) -> Check:
    offline = [f"{h.name} ({h.availability})" for h in facts.hosts if h.availability != "online"]
    evacuating = [h.name for h in facts.hosts if h.evacuating]
    if offline or evacuating or facts.migrating:
        why = []
        if offline:
            why.append(f"host {_names(offline)} is not online")
        if evacuating:
            why.append(f"host {_names(evacuating)} is being emptied for maintenance")
        if facts.migrating:
            why.append(f"vnf {_names(list(facts.migrating))} is migrating")
        return Check("hosts", "failure", "; ".join(why))
    locked = [h.name for h in facts.hosts if h.state == "locked"]
    if locked:
        return Check(
            "hosts",
            "warning",
            f"host {_names(locked)} is locked: it is upgraded as it is and stays locked",
        )
    return Check("hosts", "ok", f"{len(facts.hosts)} host(s) online")


def _alarms(facts: SiteFacts) -> Check:
    serious = [a for a in facts.alarms if a.severity in ("critical", "major")]
    others = [a for a in facts.alarms if a not in serious]
    if serious:
        named = [f"{a.alarm_id} {a.severity} on {a.entity}" for a in serious]
        return Check("alarms", "failure", f"active: {_names(named)}; clear them first")
    if others:
        named = [f"{a.alarm_id} {a.severity} on {a.entity}" for a in others]
        return Check("alarms", "warning", f"active: {_names(named)}")
    return Check("alarms", "ok", "no active alarm")


def _room(reboot: bool) -> Callable[[SiteFacts], Check]:
    def check(facts: SiteFacts) -> Check:
        stuck = [f"{h.name} ({h.cannot_empty})" for h in facts.hosts if h.cannot_empty]
        if not stuck:
            busy = sum(1 for h in facts.hosts if h.vnfs)
            said = f"each of the {busy} host(s) with VNFs can be" if busy else "no host has VNFs"
            return Check("room to empty hosts", "ok", said)
        if reboot:
            return Check(
                "room to empty hosts",
                "failure",
                f"host {_names(stuck)} cannot be emptied, and this release reboots hosts",
            )
        return Check(
            "room to empty hosts",
            "warning",
            f"host {_names(stuck)} cannot be emptied: only an in-service upgrade keeps its "
            "VNFs running",
        )

    return check


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"
