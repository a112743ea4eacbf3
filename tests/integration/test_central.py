"""Central and two sites, each its own process tree, driven through the CLI as an operator
would (issue 13). Sites join with a one-time token and dial out, through a WAN the test can
cut (tests/integration/wan.py: connections dropped, new ones refused), over one connection
each; central deploys a catalogue template to a group of sites; with the WAN cut the sites go
on and their own API answers, central marks them offline (alarm 900.001) and queues its
changes, which the sites apply on reconnect; a site's own alarm reaches central and clears."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgecloud import __version__
from edgecloud.images.building import build_blank_disk
from tests.integration.cli_support import Cli, poll
from tests.integration.wan import Wan

SITES = ("branch-1", "branch-2")
LAN_TEMPLATE = """\
heat_template_version: 2018-08-31
description: a customer's LAN
parameters:
  lan: {type: string}
resources:
  lan:
    type: OS::Neutron::Net
    properties: {name: {get_param: lan}}
"""


class Central:
    def __init__(self, cli: Cli, state: Path, wan: Wan) -> None:
        self.cli, self.state, self.wan = cli, state, wan

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run("central", "--central-dir", str(self.state), *args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def up(self) -> None:
        self.run("up", "--api-port", "0", "--site-port", "0", "--heartbeat-interval", "0.5",
                 "--advertise", self.wan.address, "--detach")  # fmt: skip
        self.wan.target_port = self.site_port

    def sites(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.json("site", "list")}

    def deployments(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["name"], d["site"]): d for d in self.json("deployment", "list")}

    @property
    def site_port(self) -> int:
        info = json.loads((self.state / "central.json").read_text())
        return int(info["site_port"])


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    wan = Wan(0)
    made = Central(Cli(tmp_path / "cli.json"), tmp_path / "central", wan)
    try:
        made.up()
        yield made
    finally:
        made.run("down", check=False)
        wan.close()


@pytest.fixture
def sites(tmp_path: Path, central: Central) -> Iterator[dict[str, Cli]]:
    started: dict[str, Cli] = {}
    try:
        for name in SITES:
            token = central.run("site", "add", name, "--group", "branches").stdout.strip()
            cli = Cli(tmp_path / f"{name}.json")
            started[name] = cli
            cli.run("up", "--driver", "fake", "--detach", "--state-dir", str(tmp_path / name),
                    "--api-port", "0", "--gateway-port", "0", "--heartbeat-interval", "1",
                    "--central-token", token)  # fmt: skip
        yield started
    finally:
        for name, cli in started.items():
            cli.run("down", "--state-dir", str(tmp_path / name), check=False)


def _controller_pid(tmp_path: Path, site: str) -> int:
    info = json.loads((tmp_path / site / "controller" / "controller.json").read_text())
    return int(info["pid"])


def _links(tmp_path: Path, site: str, port: int) -> list[Any]:
    """The site controller's TCP connections to ``port``."""
    connections = psutil.Process(_controller_pid(tmp_path, site)).net_connections("tcp")
    return [c for c in connections if c.raddr and c.raddr.port == port]


def _online(central: Central) -> bool:
    return all(central.sites()[name]["state"] == "online" for name in SITES)


@pytest.mark.timeout(180)
def test_central_deploys_to_sites_that_go_on_without_it(
    tmp_path: Path, central: Central, sites: dict[str, Cli]
) -> None:
    poll(lambda: _online(central), 30, "both sites online at central")
    for site in central.sites().values():
        assert (site["release"], site["group"]) == (__version__, "branches")
        assert site["inventory"]["hosts"] == 1 and site["inventory"]["hosts_online"] == 1, site
    assert central.json("fleet")["sites"] == {"pending": 0, "online": 2, "offline": 0}

    # the WAN link: ONE outbound TCP connection per site, to central's advertised port; the
    # site listens on nothing there
    for name in SITES:
        [link] = _links(tmp_path, name, central.wan.port)
        assert link.status == "ESTABLISHED" and link.laddr.port != central.wan.port

    # the catalogue, and a deployment to a group of sites
    (tmp_path / "lan.yaml").write_text(LAN_TEMPLATE)
    central.run("template", "add", "lan", "--template", str(tmp_path / "lan.yaml"))
    central.run("deploy", "cust-a", "--template", "lan", "--group", "branches", "-P", "lan=a-lan")
    poll(lambda: all(central.deployments()[("cust-a", n)]["status"] == "in-sync" for n in SITES),
         30, "cust-a in sync at both sites")  # fmt: skip
    for name, cli in sites.items():
        stack = cli.json("stack", "show", "cust-a")
        assert stack["managed_by"] == "central", name
        assert "a-lan" in {n["name"] for n in cli.json("network", "list")}
        refused = cli.run("stack", "delete", "cust-a", check=False)  # central's, not the site's
        assert refused.returncode == 1 and "deployed by central" in refused.stderr, refused.stderr
    # a name a site already uses for a stack of its own: a conflict there, left as it is
    sites["branch-1"].run("stack", "create", "cust-b", "--template", str(tmp_path / "lan.yaml"),
                          "-P", "lan=local-lan")  # fmt: skip
    central.run("deploy", "cust-b", "--template", "lan", "--group", "branches", "-P", "lan=b-lan")
    poll(lambda: (d := central.deployments())[("cust-b", "branch-1")]["status"] == "conflict"
         and d[("cust-b", "branch-2")]["status"] == "in-sync", 30, "cust-b applied")  # fmt: skip
    assert sites["branch-1"].json("stack", "show", "cust-b")["managed_by"] is None

    # the WAN cut: the sites go on by themselves, central marks them offline and queues changes
    central.wan.cut()
    poll(lambda: all(s["state"] == "offline" for s in central.sites().values()), 15,
         "both sites offline at central")  # fmt: skip
    alarms = central.json("alarm", "list")
    assert sorted((a["alarm_id"], a["entity"]) for a in alarms) == [
        ("900.001", "site=branch-1"), ("900.001", "site=branch-2")
    ]  # fmt: skip
    for cli in sites.values():
        assert cli.json("host", "list")[0]["availability"] == "online"
    central.run("deploy", "cust-a", "--template", "lan", "--group", "branches", "-P", "lan=a-lan2")
    central.run("deploy", "cust-c", "--template", "lan", "--group", "branches", "-P", "lan=c-lan")
    central.run("undeploy", "cust-b", "--site", "branch-2")
    assert {d["status"] for d in central.json("deployment", "list", "--site", "branch-2")} == {
        "pending"
    }
    # a site's own alarm, raised while central cannot hear: its only host locked, a VNF waits
    branch2 = sites["branch-2"]
    branch2.run("flavor", "create", "F", "--vcpus", "1", "--ram", "256")
    branch2.run("image", "upload", "I", str(build_blank_disk(tmp_path / "images")))
    branch2.run("host", "lock", branch2.json("host", "list")[0]["name"])
    branch2.run("vnf", "create", "v1", "--image", "I", "--flavor", "F", "--nic", "a-lan")

    central.wan.restore()
    poll(lambda: _online(central), 30, "both sites back online")
    poll(lambda: all(d["status"] == "in-sync" for (name, site), d in central.deployments().items()
                     if (name, site) != ("cust-b", "branch-1")), 30, "the queued changes applied")  # fmt: skip
    assert ("cust-b", "branch-2") not in central.deployments()
    for name, cli in sites.items():
        assert cli.json("stack", "show", "cust-a")["parameters"] == {"lan": "a-lan2"}, name
        assert cli.json("stack", "show", "cust-c")["managed_by"] == "central", name
        assert "c-lan" in {n["name"] for n in cli.json("network", "list")}, name
    poll(lambda: not any(s["name"] == "cust-b" for s in branch2.json("stack", "list")), 30,
         "cust-b gone from branch-2")  # fmt: skip
    assert central.json("alarm", "list") == []
    history = central.json("alarm", "list", "--all")
    assert {a["entity"] for a in history} == {"site=branch-1", "site=branch-2"}
    assert all(a["state"] == "cleared" and a["cleared_at"] for a in history), history
    # the site's alarm reached central, and its clearing too
    poll(lambda: central.sites()["branch-2"]["alarms"]["major"] == 1, 15, "the VNF's alarm")
    assert central.json("fleet")["site_alarms"]["major"] == 1
    branch2.run("host", "unlock", branch2.json("host", "list")[0]["name"])
    poll(lambda: central.sites()["branch-2"]["alarms"]["major"] == 0, 15, "the alarm cleared")
    for name in SITES:  # one link each again
        assert len(_links(tmp_path, name, central.wan.port)) == 1


@pytest.mark.timeout(120)
def test_a_restarted_central_keeps_its_port_and_its_sites(
    tmp_path: Path, central: Central, sites: dict[str, Cli]
) -> None:
    poll(lambda: _online(central), 30, "both sites online at central")
    port = central.site_port
    central.run("down")
    for cli in sites.values():  # the sites' own API, central gone
        assert cli.json("host", "list")[0]["availability"] == "online"
    central.up()
    assert central.site_port == port  # kept: sites know it
    # (central restarted: a site stays online until it is silent for the limit)
    poll(lambda: all(len(_links(tmp_path, n, central.wan.port)) == 1 for n in SITES), 30,
         "each site linked again")  # fmt: skip
    poll(lambda: _online(central) and central.json("alarm", "list") == [], 15,
         "the sites online, no alarm active")  # fmt: skip


def test_site_tokens_are_checked_and_used_once(tmp_path: Path, central: Central) -> None:
    cli = Cli(tmp_path / "cli.json")
    bad = cli.run("up", "--driver", "fake", "--state-dir", str(tmp_path / "s"),
                  "--central-token", "nonsense", check=False)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
    assert central.run("site", "add", "b3").stdout.startswith("ecjoin1.")
    again = central.run("site", "add", "b3", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = central.run("site", "show", "nowhere", check=False)
    assert missing.returncode == 1 and "site 'nowhere' not found" in missing.stderr
    (tmp_path / "bad.yaml").write_text("heat_template_version: 2018-08-31\nresources: 3\n")
    refused = central.run("template", "add", "t", "--template", str(tmp_path / "bad.yaml"),
                          check=False)  # fmt: skip
    assert refused.returncode == 1 and "must be a mapping" in refused.stderr, refused.stderr
    nowhere = central.run("deploy", "x", "--template", "t", "--site", "nowhere", check=False)
    assert nowhere.returncode == 1 and "not found" in nowhere.stderr


CHAIN = """\
customer: acme
ingress_port: acme-in
egress_port: acme-out
services:
  - {name: fw, template: bitw-service}
"""


@pytest.mark.timeout(180)
def test_central_deploys_a_chain_only_it_changes(
    tmp_path: Path, central: Central, sites: dict[str, Cli]
) -> None:
    poll(lambda: _online(central), 30, "both sites online at central")
    for cli in sites.values():  # what the service's template names, at each site
        cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")
    disk = str(build_blank_disk(tmp_path / "images"))
    sites["branch-1"].run("image", "upload", "bitw", disk)  # branch-2 gets it later
    service = Path(__file__).parents[2] / "benchmarks" / "chain_service.yaml"
    central.run("template", "add", "bitw-service", "--template", str(service))
    (tmp_path / "chain.yaml").write_text(CHAIN)
    central.run("template", "add", "vcpe", "--kind", "chain", "--template",
                str(tmp_path / "chain.yaml"))  # fmt: skip
    central.run("deploy", "acme-vcpe", "--template", "vcpe", "--group", "branches")
    failed = poll(lambda: (d := central.deployments()[("acme-vcpe", "branch-2")])["status"]
                  == "failed" and d, 30, "branch-2 failed: no image bitw")  # fmt: skip
    assert "bitw" in failed["message"], failed
    sites["branch-2"].run("image", "upload", "bitw", disk)  # tried again by itself: in sync
    poll(lambda: all(d["status"] == "in-sync" for d in central.deployments().values()), 60,
         "the chain active at both sites")  # fmt: skip
    for name, cli in sites.items():
        [chain] = cli.json("chain", "list")
        assert (chain["name"], chain["managed_by"], chain["path"]) == (
            "acme-vcpe",
            "central",
            ["fw"],
        ), name
        refused = cli.run("chain", "delete", "acme-vcpe", check=False)
        assert refused.returncode == 1 and "deployed by central" in refused.stderr, refused.stderr
    # a stack template a chain uses cannot leave the catalogue
    used = central.run("template", "delete", "bitw-service", check=False)
    assert used.returncode == 1 and "service of chain 'vcpe'" in used.stderr, used.stderr
    central.run("undeploy", "acme-vcpe", "--group", "branches")
    for name, cli in sites.items():
        poll(lambda cli=cli: cli.json("chain", "list") == [], 60, f"the chain gone at {name}")
