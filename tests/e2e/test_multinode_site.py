"""E2E: `edgecloud up --nodes 2`, run as a user would (the `edgecloud` command as a subprocess,
its own --config file), on real QEMU and Open vSwitch.

- both nodes' hosts come online, each node with its own libvirtd;
- two bump-in-the-wire VNFs with one anti-affinity group land on different hosts, and each
  domain is listed by ITS node's libvirtd only (``virsh -c <node uri>``);
- L2 across nodes on the wire: a namespace plugged into node 1's bridge and one plugged into
  node 2's, on the VNFs' network, ping each other through the site switch (the switch learned
  both MACs);
- `edgecloud down` leaves no libvirtd, virtlogd or QEMU of the site, no bridge, no DHCP
  namespace;
- a node's libvirtd killed is started again by the supervisor; after the supervisor itself is
  killed with SIGKILL, `edgecloud down` still takes it all down (controller, agents, daemons,
  bridges).

Addresses are 10.253.0.x inside the test's own namespaces. Whatever happens, the site is taken
down and the namespaces deleted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.allinone.nodes import Layout
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from tests.e2e.multinode_support import MultiNodeSite
from tests.e2e.ovs_support import remove, sh
from tests.integration.cli_support import Cli, alive, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
BOOT = 120.0


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    names = [f"ecm{secrets.token_hex(4)}-{i}" for i in (1, 2)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        remove("ip", "netns", "del", name)


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (OSError, IndexError):
        return True
    return state.startswith("Z")  # exited; PID 1 here does not reap orphans


def _domains(uri: str) -> list[str]:
    done = subprocess.run(
        ["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True, check=True
    )
    return [line for line in done.stdout.split() if line]


def _bridges() -> set[str]:
    done = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def _site_namespaces(layout: Layout) -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    bridges = [n.bridge for n in layout.nodes if n.bridge]
    return [line for line in done.stdout.split() if any(b in line for b in bridges)]


def _assert_taken_down(site: MultiNodeSite, layout: Layout, pids: list[int]) -> None:
    assert layout.fabric is not None
    poll(lambda: all(_dead(pid) for pid in pids), 30, "every daemon and QEMU of the site gone")
    assert not set(layout.fabric.bridges()) & _bridges(), "a bridge of the site is left"
    assert _site_namespaces(layout) == [], "a DHCP namespace of the site is left"
    assert not (site.state / "nodes" / "layout.json").exists()


def test_two_nodes_spread_vnfs_carry_l2_and_go_away(
    tmp_path: Path, site: MultiNodeSite, namespaces: list[str]
) -> None:
    site.up()
    hosts = site.cli.json("host", "list")
    assert sorted(h["name"] for h in hosts if h["availability"] == "online") == sorted(
        n.host for n in site.layout().nodes
    )
    status = site.cli.json("status", "--state-dir", str(site.state))
    assert [n["hypervisor"] for n in status["nodes"]] == [True, True]  # each node's libvirtd
    cli = site.cli
    cli.run("image", "build", "bump-in-the-wire", "--name", "bitw")
    cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")
    cli.run("network", "create", "lan")
    cli.run(
        "subnet",
        "create",
        "lan-v4",
        "--network",
        "lan",
        "--cidr",
        "10.253.1.0/24",
        "--pool",
        "10.253.1.100-10.253.1.199",
    )
    for name in ("v1", "v2"):
        cli.run(
            "vnf", "create", name, "--image", "bitw", "--flavor", "small", "--nic", "lan",
            "--anti-affinity", "g",
        )  # fmt: skip
    vnfs = {name: _wait_running(cli, name) for name in ("v1", "v2")}
    by_host = {v["host"]: name for name, v in vnfs.items()}
    assert len(by_host) == 2, f"both VNFs on one host: {vnfs}"

    layout = site.layout()
    for node in layout.nodes:
        uri = node.libvirt_uri()
        assert uri is not None
        listed = _domains(uri)
        mine = by_host[node.host]
        other = next(n for n in vnfs if n != mine)
        assert any(d.startswith(f"ec-{mine}-") for d in listed), (node.host, listed)
        assert not any(d.startswith(f"ec-{other}-") for d in listed), (node.host, listed)

    asyncio.run(_l2_across_nodes(tmp_path, cli, layout, namespaces))

    pids = site.daemon_pids()
    assert len(set(pids)) == 6  # libvirtd, virtlogd and one QEMU per node
    assert _site_namespaces(layout), "no node serves DHCP"
    site.down()
    _assert_taken_down(site, layout, pids)


def _wait_running(cli: Cli, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        vnf: dict[str, Any] = cli.json("vnf", "show", name)
        return vnf if vnf["status"] == "running" and vnf["host"] else None

    return dict(poll(running, BOOT, f"VNF {name} running"))


async def _l2_across_nodes(tmp_path: Path, cli: Cli, layout: Layout, namespaces: list[str]) -> None:
    net = cli.json("network", "show", "lan")
    spec = NetworkSpec("lan", net["id"], net["kind"], net["segmentation_id"])
    devs = [f"{ns[:9]}p{i}" for i, ns in enumerate(namespaces)]
    macs = ["02:ec:53:00:00:01", "02:ec:53:00:00:02"]
    for i, node in enumerate(layout.nodes):
        assert node.bridge is not None
        driver = OvsNetworkDriver(tmp_path / f"plug{i}", bridge=node.bridge)
        await driver.plug_namespace_port(
            namespaces[i], devs[i], spec, mac=macs[i], ip_cidr=f"10.253.0.{i + 1}/24"
        )
    rc, out, _ = await sh(
        "ip", "netns", "exec", namespaces[0], "ping", "-c", "3", "-i", "0.2", "-W", "2",
        "10.253.0.2", check=False,
    )  # fmt: skip
    assert rc == 0, f"no L2 between the nodes: {out}"
    assert layout.fabric is not None
    _, fdb, _ = await sh("ovs-appctl", "fdb/show", layout.fabric.switch)
    assert all(mac in fdb for mac in macs), fdb  # the frames crossed the site switch


def test_down_takes_down_a_site_whose_supervisor_was_killed(site: MultiNodeSite) -> None:
    site.up()
    layout = site.layout()
    hypervisor = layout.nodes[0].hypervisor()
    assert hypervisor is not None
    libvirtd = hypervisor.root / "run" / "libvirtd.pid"
    killed = int(libvirtd.read_text())
    os.kill(killed, signal.SIGKILL)  # the supervisor starts a node's dead daemons again
    poll(lambda: hypervisor.running() and int(libvirtd.read_text()) != killed, 30, "a new libvirtd")
    children = {n: p for n, p in site.info()["pids"].items() if n != "supervisor"}
    pids = site.daemon_pids()
    os.kill(site.info()["pids"]["supervisor"], signal.SIGKILL)
    poll(lambda: _dead(site.info()["pids"]["supervisor"]), 10, "the supervisor gone")
    assert all(alive(pid) for pid in children.values())  # orphans: nobody stopped them

    result = site.down()
    assert "took down what it left" in result.stdout, result.stdout
    poll(lambda: all(_dead(pid) for pid in children.values()), 30, "controller and agents gone")
    _assert_taken_down(site, layout, pids)
    assert "no site is running" in site.down().stdout  # nothing left the second time
