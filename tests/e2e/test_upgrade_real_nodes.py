"""E2E: the orchestrated upgrade of a real two-node site (`edgecloud up --nodes 2`: each node
its own libvirtd, bump-in-the-wire VMs on QEMU), run as an operator would, through the CLI
(issue 12). The packages are this checkout's code as the wheels of releases N.0.1 and N.0.2.

- In service (N.0.1): the controller, then each node's agent, restart into the release; the
  VNFs' QEMU processes and boot ids are the same before and after: nothing moved, nothing
  rebooted.
- Reboot-required (N.0.2, uploaded with --reboot-required): each node is locked and emptied
  by live migration before its agent restarts, then unlocked: the VNF moves (same boot id: a
  live migration), every host ends enabled at N.0.2, and the migrations are listed.

Not measured here: traffic through a chain during the upgrade (docs/architecture.md, "what is
not built"). The site is taken down whatever happens (the ``site`` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecloud import __version__
from edgecloud.upgrades.releases import parse
from tests.e2e.multinode_support import MultiNodeSite
from tests.integration.cli_support import Cli, poll
from tests.integration.wheels import source_wheel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
NOW = parse(__version__)
IN_SERVICE = f"{NOW.major}.{NOW.minor}.{NOW.patch + 1}"
REBOOTING = f"{NOW.major}.{NOW.minor}.{NOW.patch + 2}"


def _vnfs(cli: Cli) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in cli.json("vnf", "list")}


def test_in_service_and_reboot_required_upgrades_keep_the_vnfs_running(
    tmp_path: Path, site: MultiNodeSite
) -> None:
    site.up()
    cli = site.cli
    cli.run("image", "build", "bump-in-the-wire", "--name", "bitw")
    cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")
    cli.run("network", "create", "lan")
    cli.run("vnf", "create", "v1", "--image", "bitw", "--flavor", "small", "--nic", "lan", "--wait")
    before = _vnfs(cli)["v1"]
    assert before["status"] == "running" and before["boot_id"]
    for release, extra in ((IN_SERVICE, ()), (REBOOTING, ("--reboot-required",))):
        wheel = tmp_path / f"edgecloud-{release}-py3-none-any.whl"
        wheel.write_bytes(source_wheel(release))
        cli.run("software", "upload", str(wheel), *extra)

    # in service: nothing moves, nothing reboots
    qemu = site.qemu_pids()
    assert len(qemu) == 1
    started = cli.run("upgrade", "start", "--to", IN_SERVICE)
    assert f"-> {IN_SERVICE}: activated (3/3 steps)" in started.stdout, started.stderr
    assert site.releases() == {IN_SERVICE}
    after = _vnfs(cli)["v1"]
    assert (after["host"], after["boot_id"], after["status"]) == (
        before["host"], before["boot_id"], "running",
    )  # fmt: skip
    assert site.qemu_pids() == qemu, "a VM was restarted by an in-service upgrade"
    cli.run("upgrade", "complete")

    # reboot-required: each host emptied by live migration first, then unlocked
    check = cli.json("upgrade", "check", "--to", REBOOTING)
    assert {c["name"]: c["result"] for c in check["checks"]}["room to empty hosts"] == "ok"
    started = cli.run("upgrade", "start", "--to", REBOOTING)
    assert f"-> {REBOOTING}: activated (3/3 steps)" in started.stdout, started.stderr
    assert "emptying" in started.stderr
    assert site.releases() == {REBOOTING}
    moved = poll(lambda: _settled(cli), 60, "v1 running")
    assert moved["boot_id"] == before["boot_id"], "the VNF was rebooted, not moved live"
    migrations = cli.json("migration", "list")
    assert migrations and all(m["status"] == "done" for m in migrations), migrations
    assert {m["kind"] for m in migrations} == {"live"}
    assert all(h["state"] == "enabled" for h in cli.json("host", "list"))
    cli.run("upgrade", "complete")


def _settled(cli: Cli) -> dict[str, Any] | None:
    vnf = _vnfs(cli)["v1"]
    return vnf if vnf["status"] == "running" else None
