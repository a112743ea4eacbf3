"""E2E: the site switch of a multi-node site on one machine (allinone/fabric.py), on a real
Open vSwitch, with the real OVS driver of each node on its bridge, as the agents run it.

- the switch, the node bridges and the patch-port trunks exist after ``create`` (twice: it is
  idempotent), with no VLAN tag on either end of a trunk;
- L2 across nodes on the wire: a namespace on node 1 pings one on node 2 on the same network
  (VLAN) through the switch bridge, and does not reach one on another network (VLAN isolation
  holds over the trunk);
- distributed DHCP: both nodes serve the network with the same server address and MAC; each
  client gets its lease from its own node, and the switch never learns the DHCP MAC;
- ``delete`` leaves no bridge, no DHCP namespace and no dnsmasq.

Names: the site's 6 hex digits are random per run; addresses are 10.252.x.y inside the test's
own namespaces. Everything is removed even on failure.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgecloud.allinone.fabric import Fabric
from edgecloud.drivers.network.base import DhcpReservation, DhcpSubnet, NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver, dhcp_mac, dhcp_namespace
from tests.e2e.ovs_support import remove, sh, skip_without_ovs
from tests.e2e.test_ovs_dhcp import UDHCPC_SCRIPT, _lease

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs_and_dnsmasq() -> None:
    skip_without_ovs()
    if not Path("/usr/sbin/dnsmasq").exists() or not Path("/bin/busybox").exists():
        pytest.skip("needs dnsmasq-base and busybox (scripts/bootstrap-host)")


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    site = Fabric(secrets.token_hex(3), 2)
    yield site
    site.delete()


@pytest.fixture
async def namespaces(fabric: Fabric) -> AsyncIterator[list[str]]:
    names = [f"ect{fabric.short}-{i}" for i in range(3)]
    for name in names:
        await sh("ip", "netns", "add", name)
    yield names
    for name in names:
        remove("ip", "netns", "del", name)


async def _ovs(*args: str) -> str:
    return (await sh("ovs-vsctl", "--timeout=10", *args))[1].strip()


async def _pings(namespace: str, address: str) -> bool:
    rc, _, _ = await sh(
        "ip", "netns", "exec", namespace, "ping", "-c", "3", "-i", "0.2", "-W", "2", address,
        check=False,
    )  # fmt: skip
    return rc == 0


async def test_the_switch_trunks_every_node_and_networks_span_nodes(
    tmp_path: Path, fabric: Fabric, namespaces: list[str]
) -> None:
    fabric.create()
    fabric.create()  # idempotent
    assert fabric.existing() == fabric.bridges()
    for i in (1, 2):
        assert await _ovs("port-to-br", fabric.uplink(i)) == fabric.node_bridge(i)
        assert await _ovs("port-to-br", fabric.downlink(i)) == fabric.switch
        peer = await _ovs("get", "Interface", fabric.uplink(i), "options:peer")
        assert peer.strip('"') == fabric.downlink(i)

    nodes = [
        OvsNetworkDriver(tmp_path / f"n{i}", bridge=fabric.node_bridge(i), uplink=fabric.uplink(i))
        for i in (1, 2)
    ]
    lan = NetworkSpec(f"ect{fabric.short}-lan", str(uuid.uuid4()), "vlan", 3801)
    other = NetworkSpec(f"ect{fabric.short}-other", str(uuid.uuid4()), "vlan", 3802)
    for node in nodes:
        await node.setup()
        await node.ensure_network(lan)
        await node.ensure_network(other)
        # the agent made the uplink a trunk: no tag, no trunks list
        assert await _ovs("get", "Port", node.uplink or "", "tag", "trunks") == "[]\n[]"

    macs = ["02:ec:52:00:00:01", "02:ec:52:00:00:02", "02:ec:52:00:00:03"]
    await nodes[0].plug_namespace_port(namespaces[0], f"ect{fabric.short}a", lan, macs[0])
    await nodes[1].plug_namespace_port(namespaces[1], f"ect{fabric.short}b", lan, macs[1])
    await nodes[1].plug_namespace_port(namespaces[2], f"ect{fabric.short}c", other, macs[2])
    for ns, address in zip(namespaces, ("10.252.0.11", "10.252.0.12", "10.252.0.13"), strict=True):
        dev = f"ect{fabric.short}{'abc'[namespaces.index(ns)]}"
        await sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)

    assert await _pings(namespaces[0], "10.252.0.12"), "no L2 between node 1 and node 2"
    assert not await _pings(namespaces[0], "10.252.0.13"), "a VLAN leaked over the trunk"

    # distributed DHCP: each node's server answers its own vNIC only
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    for node, mac, address in zip(nodes, macs, ("10.252.1.51", "10.252.1.52"), strict=False):
        subnet = DhcpSubnet(
            subnet_id="s1",
            cidr="10.252.1.0/24",
            server_address="10.252.1.2",
            gateway=None,
            reservations=(DhcpReservation(mac, address),),
        )
        await node.ensure_dhcp(lan, (subnet,))
    for i, node in enumerate(nodes):
        pid = node.dnsmasq_pid(lan.network_id)
        assert pid is not None
        lease = await _lease(namespaces[i], f"ect{fabric.short}{'ab'[i]}", script)
        assert (lease or "").startswith(f"LEASE ip=10.252.1.5{i + 1} "), (i, lease)
    _, fdb, _ = await sh("ovs-appctl", "fdb/show", fabric.switch)
    assert dhcp_mac(lan.network_id) not in fdb, "the DHCP MAC crossed an uplink"
    assert macs[0] in fdb and macs[1] in fdb  # the clients' frames did cross

    fabric.delete()
    assert fabric.existing() == []
    _, listed, _ = await sh("ip", "netns", "list")
    for node in nodes:
        assert dhcp_namespace(lan.network_id, node.bridge) not in listed
        assert node.dnsmasq_pid(lan.network_id) is None
