"""Central and two sites, each its own process tree, driven through the CLI as an operator
would (issue 13, first step): sites join with a one-time token and dial out over one
connection; central shows each site's release and inventory; with central gone the sites go on
and their own API answers; a site whose controller is gone is offline at central (alarm
900.001) until it is back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgecloud import __version__
from tests.integration.cli_support import Cli, poll


class Central:
    def __init__(self, cli: Cli, state: Path) -> None:
        self.cli, self.state = cli, state

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run("central", "--central-dir", str(self.state), *args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def up(self) -> None:
        self.run("up", "--api-port", "0", "--site-port", "0", "--heartbeat-interval", "0.5",
                 "--detach")  # fmt: skip

    def sites(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.json("site", "list")}

    @property
    def site_port(self) -> int:
        return int(
            json.loads((self.state / "central.json").read_text())["site_gateway"].split(":")[1]
        )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    cli = Cli(tmp_path / "cli.json")
    made = Central(cli, tmp_path / "central")
    made.up()
    try:
        yield made
    finally:
        made.run("down", check=False)


@pytest.fixture
def sites(tmp_path: Path, central: Central) -> Iterator[dict[str, Cli]]:
    started: dict[str, Cli] = {}
    try:
        for name in ("branch-1", "branch-2"):
            token = central.run("site", "add", name).stdout.strip()
            cli = Cli(tmp_path / f"{name}.json")
            cli.run("up", "--driver", "fake", "--detach", "--state-dir", str(tmp_path / name),
                    "--api-port", "0", "--gateway-port", "0", "--heartbeat-interval", "1",
                    "--central-token", token)  # fmt: skip
            started[name] = cli
        yield started
    finally:
        for name, cli in started.items():
            cli.run("down", "--state-dir", str(tmp_path / name), check=False)


def _controller_pid(tmp_path: Path, site: str) -> int:
    info = json.loads((tmp_path / site / "controller" / "controller.json").read_text())
    return int(info["pid"])


@pytest.mark.timeout(120)
def test_sites_join_central_and_go_on_without_it(
    tmp_path: Path, central: Central, sites: dict[str, Cli]
) -> None:
    online = poll(
        lambda: (s := central.sites()) and all(x["state"] == "online" for x in s.values()) and s,
        30, "both sites online at central",
    )  # fmt: skip
    assert set(online) == {"branch-1", "branch-2"}
    for site in online.values():
        assert site["release"] == __version__
        assert site["inventory"]["hosts"] == 1 and site["inventory"]["hosts_online"] == 1, site
        assert set(site["alarms"]) == {"critical", "major", "minor", "warning"}
    fleet = central.json("fleet")
    assert fleet["sites"] == {"pending": 0, "online": 2, "offline": 0}

    # the WAN link: ONE outbound TCP connection from the site's controller to central's site
    # port, and nothing of the site's listens on that port
    port = central.site_port
    for name in sites:
        links = [
            c for c in psutil.Process(_controller_pid(tmp_path, name)).net_connections("tcp")
            if c.raddr and c.raddr.port == port
        ]  # fmt: skip
        assert len(links) == 1 and links[0].status == "ESTABLISHED", links
        assert links[0].laddr.port != port

    # a join token works once
    token = central.run("site", "add", "branch-3").stdout.strip()
    assert token.startswith("ecjoin1.")
    refused = central.run("site", "add", "branch-3", check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr

    # central gone (its connections dropped, its port refused): each site's own API answers
    central.run("down")
    for name, cli in sites.items():
        [host] = cli.json("host", "list")
        assert host["availability"] == "online", name
    central.up()  # on the same site port (central keeps the ports it first got)
    assert central.site_port == port
    poll(lambda: all(s["state"] == "online" for s in central.sites().values()
                     if s["name"] != "branch-3"), 30, "the sites back")  # fmt: skip
    assert poll(
        lambda: all(
            len([c for c in psutil.Process(_controller_pid(tmp_path, n)).net_connections("tcp")
                 if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"]) == 1
            for n in sites
        ),
        15, "one link per site again",
    )  # fmt: skip

    # a site whose controller is gone is offline at central, with an alarm, until it is back
    sites["branch-2"].run("down", "--state-dir", str(tmp_path / "branch-2"))
    poll(lambda: central.sites()["branch-2"]["state"] == "offline", 15, "branch-2 offline")
    [alarm] = central.json("alarm", "list")
    assert (alarm["alarm_id"], alarm["entity"], alarm["severity"]) == (
        "900.001",
        "site=branch-2",
        "major",
    )
    assert central.sites()["branch-1"]["state"] == "online"
    sites["branch-2"].run("up", "--driver", "fake", "--detach", "--state-dir",
                          str(tmp_path / "branch-2"), "--api-port", "0", "--gateway-port", "0",
                          "--heartbeat-interval", "1")  # fmt: skip
    poll(lambda: central.sites()["branch-2"]["state"] == "online", 30, "branch-2 back")
    assert central.json("alarm", "list") == []
    history = central.json("alarm", "list", "--all")  # (central's restart may have raised some)
    assert "site=branch-2" in {a["entity"] for a in history}
    assert all(a["state"] == "cleared" and a["cleared_at"] for a in history), history


def test_a_bad_or_used_site_token_is_refused_in_one_sentence(
    tmp_path: Path, central: Central
) -> None:
    cli = Cli(tmp_path / "cli.json")
    bad = cli.run("up", "--driver", "fake", "--state-dir", str(tmp_path / "s"),
                  "--central-token", "nonsense", check=False)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
    missing = central.run("site", "show", "nowhere", check=False)
    assert missing.returncode == 1 and "site 'nowhere' not found" in missing.stderr
