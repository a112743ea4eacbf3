"""Issue 13's acceptance with real QEMU guests and Open vSwitch: a central and two real sites
(each its own `edgecloud up --driver libvirt`, on its own bridge), joined with one-time tokens
through a WAN the test controls (tests/integration/wan.py).

- central deploys the sample vCPE chain (router -> firewall, bump-in-the-wire VNFs) to both
  sites; a UDP probe between two namespaces on each site's bridge crosses each chain;
- the WAN is cut (central's connections dropped and new ones refused): both sites keep
  forwarding (0 packets lost across the cut) and their local API works; central marks both
  offline (alarm 900.001); a change made at central meanwhile (a customer LAN deployed) is
  applied by each site when the WAN is back, and the offline alarms clear;
- a site's own alarm (a VNF's QEMU killed: 700.001) reaches central's fleet view and clears
  when the site has restarted the VNF.

Traffic stays inside the test's namespaces (10.252.0.x). Everything is taken down afterwards,
also on failure: the sites (`down --purge`), their bridges, the namespaces, central, the WAN.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.chain_support import SERVICE
from tests.e2e.libvirt_support import create_bridge, libvirt_skip_reason
from tests.e2e.ovs_support import delete_bridge
from tests.e2e.site_chain import bridge_endpoints
from tests.integration.cli_support import Cli, poll
from tests.integration.wan import Wan

# a long real-VM scenario (about 4 min): `make scenarios`, not `make test` (README, Tests);
# tests/integration/test_central.py proves the same mechanism on fake sites in `make test`
pytestmark = [pytest.mark.e2e, pytest.mark.scenario, pytest.mark.timeout(1200)]
RATE = 200  # pps through each site's two TCG guests
CHAIN = """\
customer: acme
ingress_port: set-per-site
egress_port: set-per-site
services:  # four TCG guests boot at once on this 2-core machine: a long health timeout
  - {name: router, template: bitw-service, health_timeout: 900}
  - {name: firewall, template: bitw-service, health_timeout: 900}
"""
LAN = """\
heat_template_version: 2018-08-31
resources:
  lan:
    type: OS::Neutron::Net
    properties: {name: acme-lan}
"""


class RealSite:
    def __init__(self, root: Path, name: str) -> None:
        self.name, self.state = name, root / name
        self.cli = Cli(root / f"{name}.json")
        self.bridge = f"ecs{secrets.token_hex(3)}"
        self.namespaces = [f"ecs{secrets.token_hex(3)}-{side}" for side in ("c", "n")]

    def up(self, token: str) -> None:
        create_bridge(self.bridge)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        self.cli.run("up", "--driver", "libvirt", "--detach", "--state-dir", str(self.state),
                     "--bridge", self.bridge, "--api-port", "0", "--gateway-port", "0",
                     "--heartbeat-interval", "2", "--resync-interval", "1",
                     "--central-token", token, timeout=300)  # fmt: skip
        self.cli.run("image", "build", "bump-in-the-wire", "--name", "bitw", timeout=600)
        self.cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")

    def down(self) -> None:
        self.cli.run("down", "--purge", "--state-dir", str(self.state), check=False, timeout=300)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        delete_bridge(self.bridge)

    def qemu_pid(self, vnf: dict[str, Any]) -> int:
        domain = f"ec-{vnf['name']}-{vnf['id'][:8]}"  # services/desired.py domain_name
        return int(Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip())


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Cli, Path, Wan, list[RealSite]]]:
    reason = libvirt_skip_reason()
    if reason:
        pytest.skip(reason)
    wan = Wan(0)
    cli, central = Cli(tmp_path / "central.json"), tmp_path / "central"
    sites = [RealSite(tmp_path, name) for name in ("branch-1", "branch-2")]
    try:
        cli.run("central", "--central-dir", str(central), "up", "--api-port", "0",
                "--site-port", "0", "--heartbeat-interval", "1", "--advertise", wan.address,
                "--detach")  # fmt: skip
        wan.target_port = int(json.loads((central / "central.json").read_text())["site_port"])
        yield cli, central, wan, sites
    finally:
        for site in sites:
            site.down()
        cli.run("central", "--central-dir", str(central), "down", check=False)
        wan.close()


async def test_central_deploys_the_vcpe_chain_and_sites_forward_through_a_wan_cut(
    tmp_path: Path, fleet: tuple[Cli, Path, Wan, list[RealSite]]
) -> None:
    cli, central_dir, wan, sites = fleet

    def central(*args: str, check: bool = True) -> Any:
        out = cli.run("central", "--central-dir", str(central_dir), *args, "--json", check=check)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def at_central() -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in central("site", "list")}

    def deployments() -> dict[tuple[str, str], str]:
        return {(d["name"], d["site"]): d["status"] for d in central("deployment", "list")}

    for site in sites:
        token = cli.run("central", "--central-dir", str(central_dir), "site", "add", site.name,
                        "--group", "branches").stdout.strip()  # fmt: skip
        site.up(token)
    poll(lambda: all(s["state"] == "online" for s in at_central().values()), 60, "sites online")

    (tmp_path / "service.yaml").write_text(SERVICE)
    (tmp_path / "chain.yaml").write_text(CHAIN)
    (tmp_path / "lan.yaml").write_text(LAN)
    central("template", "add", "bitw-service", "--template", str(tmp_path / "service.yaml"))
    central("template", "add", "vcpe", "--kind", "chain", "--template",
            str(tmp_path / "chain.yaml"))  # fmt: skip
    async with bridge_endpoints(tmp_path, sites[0].bridge, sites[0].namespaces) as ports1, \
            bridge_endpoints(tmp_path, sites[1].bridge, sites[1].namespaces) as ports2:  # fmt: skip
        for site, ports in zip(sites, (ports1, ports2), strict=True):
            central("deploy", "acme-vcpe", "--template", "vcpe", "--site", site.name,
                    "-P", f"ingress_port={ports[0]}", "-P", f"egress_port={ports[1]}")  # fmt: skip
        poll(lambda: set(deployments().values()) == {"in-sync"}, 900, "the chain active at both")
        for site in sites:
            [chain] = site.cli.json("chain", "list")
            assert (chain["managed_by"], chain["path"]) == ("central", ["router", "firewall"])
        baseline = await _probe_both(sites, 3.0)
        for site, result in zip(sites, baseline, strict=True):
            assert result.stats.received > 0.9 * result.stats.sent, (site.name, result.summary())

        # the WAN cut, under the probe: each site forwards as before, its own API answers
        probing = asyncio.ensure_future(_probe_both(sites, 20.0))
        await asyncio.sleep(2)
        wan.cut()
        await asyncio.to_thread(
            poll, lambda: all(s["state"] == "offline" for s in at_central().values()), 30,
            "both sites offline at central",
        )  # fmt: skip
        assert {(a["alarm_id"], a["entity"]) for a in central("alarm", "list")} == {
            ("900.001", "site=branch-1"), ("900.001", "site=branch-2")
        }  # fmt: skip
        for site in sites:
            assert site.cli.json("chain", "list")[0]["status"] == "active"
        central("template", "add", "lan", "--template", str(tmp_path / "lan.yaml"))
        central("deploy", "acme-lan", "--template", "lan", "--group", "branches")
        assert {s for (n, _), s in deployments().items() if n == "acme-lan"} == {"pending"}
        for site, result in zip(sites, await probing, strict=True):
            assert result.stats.lost == 0, (site.name, "lost across the WAN cut", result.summary())

        wan.restore()
        poll(lambda: set(deployments().values()) == {"in-sync"}, 60, "the change applied")
        for site in sites:
            assert "acme-lan" in {n["name"] for n in site.cli.json("network", "list")}
        poll(lambda: central("alarm", "list") == [], 30, "the offline alarms cleared")

        # a site's own alarm reaches central, and its clearing too
        site = sites[0]
        vnf = next(v for v in site.cli.json("vnf", "list") if "router" in v["name"])
        os.kill(site.qemu_pid(vnf), signal.SIGKILL)
        poll(lambda: at_central()["branch-1"]["alarms"]["major"] >= 1, 60, "the VNF's alarm")
        poll(lambda: at_central()["branch-1"]["alarms"]["major"] == 0, 240, "the alarm cleared")
        after = await _probe_both(sites, 3.0)
        for site, result in zip(sites, after, strict=True):
            assert result.stats.received > 0.9 * result.stats.sent, (site.name, result.summary())


async def _probe_both(sites: list[RealSite], seconds: float) -> list[Any]:
    from edgecloud.probe import probe_in_namespaces

    return list(
        await asyncio.gather(
            *(
                probe_in_namespaces(
                    site.namespaces[0], site.namespaces[1], "10.252.0.2", RATE, seconds, 47813
                )
                for site in sites
            )
        )
    )
