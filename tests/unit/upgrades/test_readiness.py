"""`upgrade check`'s rules on site snapshots: the release asked for, a half-done upgrade, the
controllers, hosts, alarms and the room to empty hosts, each naming what is wrong."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgecloud.upgrades.readiness import (
    AlarmFacts,
    ControllerFacts,
    HostFacts,
    PackageFacts,
    SiteFacts,
    assess,
)
from edgecloud.upgrades.releases import Release, compatible, parse

CTL_A = ControllerFacts("a:1/x", "0.2.0", up=True)
CTL_B = ControllerFacts("b:2/y", "0.2.0", up=True)
N1 = HostFacts("n1", "enabled", "online", "0.2.0", connected=True, vnfs=2)
N2 = HostFacts("n2", "enabled", "online", "0.2.0", connected=True, vnfs=1)
UPLOADED = (
    PackageFacts("0.3.0", "release", None, reboot_required=False),
    PackageFacts("0.2.1", "patch", "0.2", reboot_required=False),
    PackageFacts("0.1.5", "patch", "0.1", reboot_required=False),
)
SITE = SiteFacts(controllers=(CTL_A, CTL_B), hosts=(N1, N2), packages=UPLOADED)


def results(facts: SiteFacts, to: str = "0.3.0", reboot: bool = False) -> dict[str, str]:
    return {c.name: c.result for c in assess(facts, to, reboot).checks}


def detail(facts: SiteFacts, name: str, to: str = "0.3.0", reboot: bool = False) -> str:
    return next(c.detail for c in assess(facts, to, reboot).checks if c.name == name)


def test_releases_parse_and_neighbouring_trains_work_together() -> None:
    assert parse("0.2.0") == Release(0, 2, 0) and str(parse("10.0.3")) == "10.0.3"
    assert parse(None) == Release(0, 1, 0)  # a process before releases said none
    for bad in ("0.2", "v0.2.0", "0.02.0", "0.2.0-rc1", ""):
        with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
            parse(bad)
    assert compatible(parse("0.3.0"), parse("0.2.5")) and compatible(parse("0.2.0"), parse("0.3.1"))
    assert not compatible(parse("0.4.0"), parse("0.2.0"))
    assert not compatible(parse("1.0.0"), parse("0.9.0"))  # a major serves only its own


def test_a_healthy_redundant_site_can_upgrade_one_train() -> None:
    found = assess(SITE, "0.3.0")
    assert (found.current, found.to, found.result) == ("0.2.0", "0.3.0", "ok")
    assert [c.name for c in found.checks] == [
        "release",
        "software",
        "upgrade in progress",
        "controllers",
        "hosts",
        "alarms",
        "room to empty hosts",
    ]
    assert assess(SITE, "0.2.1").result == "ok"  # a patch release of the same train


def test_the_release_must_be_newer_and_at_most_one_train_ahead() -> None:
    assert results(SITE, "0.2.0")["release"] == "failure"
    assert "already runs 0.2.0" in detail(SITE, "release", "0.2.0")
    assert results(SITE, "0.1.9")["release"] == "failure"
    assert "0.3.x first" in detail(SITE, "release", "0.4.0")
    old_host = replace(SITE, hosts=(N1, replace(N2, release=None)))  # an agent at 0.1.0
    assert "does not serve 0.1.0" in detail(old_host, "release", "0.3.0")
    with pytest.raises(ValueError, match="not of the form"):
        assess(SITE, "latest")


def test_the_package_must_be_uploaded_and_a_patch_must_fix_the_site_s_train() -> None:
    bare = replace(SITE, packages=())
    assert results(bare)["software"] == "failure"
    assert "edgecloud software upload edgecloud-0.3.0-py3-none-any.whl" in detail(bare, "software")
    assert detail(SITE, "software") == "0.3.0 uploaded (release, in service)"
    assert results(SITE, "0.2.1")["software"] == "ok"
    # a patch of another train (here one the release check would refuse too)
    assert "patch 0.1.5 fixes 0.1.x; the site runs 0.2.x" in detail(SITE, "software", "0.1.5")


def test_a_package_that_reboots_hosts_needs_room_to_empty_them() -> None:
    stuck = replace(N1, cannot_empty="v1: no other host has room")
    rebooting = (PackageFacts("0.3.0", "release", None, reboot_required=True),)
    site = replace(SITE, hosts=(stuck, N2), packages=rebooting)
    assert detail(site, "software") == "0.3.0 uploaded (release, reboots hosts)"
    assert results(site)["room to empty hosts"] == "failure"  # reboot not asked: the package
    in_service = replace(site, packages=UPLOADED)
    assert results(in_service)["room to empty hosts"] == "warning"


def test_a_site_running_two_releases_is_an_upgrade_half_done() -> None:
    half = replace(SITE, controllers=(replace(CTL_A, release="0.3.0"), CTL_B))
    assert assess(half, "0.3.0").result == "failure"
    said = detail(half, "upgrade in progress")
    assert "0.2.0: controller b:2/y, host n1, host n2; 0.3.0: controller a:1/x" in said
    # a host never connected says no release and is no part of it
    fresh = replace(SITE, hosts=(N1, HostFacts("n3", "enabled", "offline", None, False)))
    assert results(fresh)["upgrade in progress"] == "ok"


def test_a_controller_down_fails_and_a_lone_one_warns() -> None:
    down = replace(SITE, controllers=(CTL_A, replace(CTL_B, up=False)))
    assert results(down)["controllers"] == "failure"
    assert "controller b:2/y is down" in detail(down, "controllers")
    assert results(replace(SITE, controllers=(CTL_A,)))["controllers"] == "warning"


def test_hosts_offline_emptied_or_migrating_fail_and_locked_ones_warn() -> None:
    offline = replace(SITE, hosts=(N1, replace(N2, availability="offline")))
    assert "host n2 (offline) is not online" in detail(offline, "hosts")
    emptied = replace(SITE, hosts=(replace(N1, evacuating=True), N2), migrating=("fw",))
    said = detail(emptied, "hosts")
    assert "host n1 is being emptied" in said and "vnf fw is migrating" in said
    locked = replace(SITE, hosts=(N1, replace(N2, state="locked", vnfs=0)))
    assert results(locked)["hosts"] == "warning"


def test_serious_alarms_fail_and_minor_ones_warn_naming_them() -> None:
    minor = replace(SITE, alarms=(AlarmFacts("200.011", "minor", "host=n1"),))
    assert results(minor)["alarms"] == "warning"
    many = tuple(AlarmFacts(f"700.00{i}", "major", f"vnf=v{i}") for i in range(5))
    said = detail(replace(SITE, alarms=many), "alarms")
    assert said.startswith("active: 700.000 major on vnf=v0, 700.001") and "and 2 more" in said


def test_a_host_that_cannot_be_emptied_warns_and_fails_when_the_release_reboots() -> None:
    full = replace(SITE, hosts=(replace(N1, cannot_empty="fw: no host has room"), N2))
    assert results(full)["room to empty hosts"] == "warning"
    assert results(full, reboot=True)["room to empty hosts"] == "failure"
    assert "host n1 (fw: no host has room)" in detail(full, "room to empty hosts", reboot=True)
