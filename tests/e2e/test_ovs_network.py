"""E2E: the OVS network driver (drivers/network/ovs.py) on a real Open vSwitch, namespaces as hosts.

Needs root and a running ovsdb-server and ovs-vswitchd (scripts/bootstrap-host starts them).
Each test gets its own bridge (``ect<hex>``), namespaces (``ect<hex>-<n>``) and instance ids, all
removed in finalizers even when the test fails: br-int is never touched. Traffic stays on
10.250.x.y addresses inside those namespaces.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from edgecloud.drivers.compute.base import VifBinding
from edgecloud.drivers.network.base import NetworkSpec, PortInfo
from edgecloud.drivers.network.ovs import BASE_FLOW_COOKIE, OvsNetworkDriver, port_name_for
from edgecloud.errors import DriverError
from tests.e2e.ovs_support import delete_bridge, new_run_id, remove, sh, skip_without_ovs

pytestmark = pytest.mark.e2e

NamespaceFactory = Callable[[int], Awaitable[str]]


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs() -> None:
    skip_without_ovs()


@pytest.fixture
def run_id() -> str:
    return new_run_id()


@pytest.fixture
def bridge(run_id: str) -> Iterator[str]:
    name = f"ect{run_id}"
    yield name
    delete_bridge(name)


@pytest.fixture
def driver(tmp_path: Path, bridge: str) -> OvsNetworkDriver:
    return OvsNetworkDriver(tmp_path, bridge=bridge)


@pytest.fixture
async def namespaces(run_id: str) -> AsyncIterator[NamespaceFactory]:
    """A factory of per-run namespaces; deleting them also deletes the veths inside."""
    created: list[str] = []

    async def make(n: int) -> str:
        name = f"ect{run_id}-{n}"
        await sh("ip", "netns", "add", name)
        created.append(name)
        return name

    yield make
    for name in created:
        remove("ip", "netns", "del", name)


async def can_ping(namespace: str, address: str, deadline: float = 10.0) -> bool:
    """Poll single pings until one is answered or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        rc, _, _ = await sh("ip", "netns", "exec", namespace, "ping", "-c1", "-W1", address,
                            check=False)  # fmt: skip
        if rc == 0:
            return True
    return False


async def cannot_ping(namespace: str, address: str) -> bool:
    """Three pings over about a second and a half, none answered."""
    argv = ["ip", "netns", "exec", namespace, "ping", "-c3", "-i0.2", "-W1", address]
    rc, _, _ = await sh(*argv, check=False)
    return rc != 0


_UDP_RECV = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], 5999)); s.settimeout(20)\n"
    "print(s.recv(100).decode())\n"
)
_UDP_SEND = (
    "import socket, sys\n"
    "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'edgecloud', (sys.argv[1], 5999))\n"
)


async def udp_crosses(sender_ns: str, receiver_ns: str, address: str) -> bool:
    """Send a datagram until the receiver prints it or 10 s pass (UDP checksums must be right)."""
    receiver = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", receiver_ns, sys.executable, "-c", _UDP_RECV, address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and receiver.returncode is None:
            await sh("ip", "netns", "exec", sender_ns, sys.executable, "-c", _UDP_SEND, address)
            try:
                await asyncio.wait_for(receiver.wait(), 0.5)
            except TimeoutError:
                continue
        if receiver.returncode is None:
            return False
        assert receiver.stdout is not None
        return (await receiver.stdout.read()).decode().strip() == "edgecloud"
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()


async def vsctl_json(*args: str) -> list[list[object]]:
    _, out, _ = await sh("ovs-vsctl", "--timeout=10", "--format=json", *args)
    return json.loads(out)["data"]


async def port_tag(name: str) -> int | None:
    _, out, _ = await sh("ovs-vsctl", "--timeout=10", "get", "Port", name, "tag")
    return None if out.strip() == "[]" else int(out)


async def bridge_ports(bridge: str) -> set[str]:
    _, out, _ = await sh("ovs-vsctl", "--timeout=10", "list-ports", bridge)
    return set(out.split())


# -- (a) setup -------------------------------------------------------------------------------


async def test_setup_is_idempotent_and_keeps_other_flows(
    driver: OvsNetworkDriver, bridge: str
) -> None:
    await driver.setup()
    chain_flow = "cookie=0x77,table=0,priority=50,dl_type=0x88b5,actions=drop"
    await driver.apply_flows_bundle([chain_flow], [])
    await driver.setup()

    [[fail_mode, datapath, protocols]] = await vsctl_json(
        "--", "--columns=fail_mode,datapath_type,protocols", "list", "Bridge", bridge
    )
    assert (fail_mode, datapath) == ("secure", driver.datapath_type)
    assert "OpenFlow14" in json.dumps(protocols)
    flows = await driver.dump_flows()
    base = [f for f in flows if f"cookie={BASE_FLOW_COOKIE:#x}" in f]
    assert len(base) == 1 and base[0].endswith("priority=0 actions=NORMAL")
    assert any(f.startswith("cookie=0x77,") for f in flows), "setup must not wipe chain flows"

    net = NetworkSpec("red", "net-red-id", "vlan", 110)
    await driver.ensure_network(net)
    await driver.ensure_network(net)
    assert await driver.networks() == {"red": net}
    await driver.delete_network("red")
    await driver.delete_network("red")
    await driver.delete_network("never-existed")
    assert await driver.networks() == {}


# -- (b) VLAN isolation with real packets ------------------------------------------------------


async def test_same_vlan_talks_other_vlan_does_not(
    driver: OvsNetworkDriver, namespaces: NamespaceFactory, run_id: str
) -> None:
    await driver.setup()
    red = NetworkSpec("red", "net-red-id", "flat", 201)  # flat: a local VLAN all the same
    blue = NetworkSpec("blue", "net-blue-id", "vlan", 202)
    await driver.ensure_network(red)
    await driver.ensure_network(blue)
    # One subnet for all four: only the VLAN separates red from blue.
    hosts = [(red, "10.250.1.1"), (red, "10.250.1.2"), (blue, "10.250.1.3"), (blue, "10.250.1.4")]
    ns = []
    for n, (net, address) in enumerate(hosts, start=1):
        ns.append(await namespaces(n))
        await driver.plug_namespace_port(ns[-1], f"ev{run_id}{n}", net, None, f"{address}/24")

    assert await can_ping(ns[0], "10.250.1.2"), "red hosts cannot reach each other"
    assert await can_ping(ns[2], "10.250.1.4"), "blue hosts cannot reach each other"
    assert await udp_crosses(ns[1], ns[0], "10.250.1.1"), "UDP does not cross (checksums?)"
    assert await cannot_ping(ns[2], "10.250.1.1"), "blue reached red"
    assert await cannot_ping(ns[0], "10.250.1.3"), "red reached blue"
    assert await driver.list_ports() == [], "namespace ports are not vNIC ports"

    await driver.unplug_port(f"ev{run_id}1")
    await driver.unplug_port(f"ev{run_id}1")
    assert f"ev{run_id}1" not in await bridge_ports(driver.bridge)


# -- (c) vNIC ports: bind, label after libvirt, list, release --------------------------------


async def _plug_vm(
    driver: OvsNetworkDriver, namespace: str, binding: VifBinding, mac: str, address: str
) -> None:
    """A stand-in VM: a veth whose host end is the bound device and whose eth0 is the vNIC, in
    place of the tap bind made (only a QEMU could carry traffic through that); the port is
    re-made on the veth (the vSwitch keeps a deleted device's socket while its port lives)."""
    await sh("ovs-vsctl", "--timeout=10", "del-port", binding.port_name)
    await sh("ip", "link", "del", binding.port_name)
    await sh("ip", "link", "add", binding.port_name, "type", "veth", "peer", "name", "eth0",
             "netns", namespace)  # fmt: skip
    await sh("ip", "-n", namespace, "link", "set", "eth0", "address", mac, "up")
    await sh("ip", "-n", namespace, "addr", "add", address, "dev", "eth0")
    await sh("ip", "link", "set", binding.port_name, "up")
    await driver.label_port(binding)


async def test_bind_label_list_release_round_trip(
    driver: OvsNetworkDriver, namespaces: NamespaceFactory, run_id: str, bridge: str
) -> None:
    await driver.setup()
    green = NetworkSpec("green", "net-green-id", "vlan", 301)
    await driver.ensure_network(green)
    vm_a, vm_b = f"{run_id}-vm-a", f"{run_id}-vm-b"
    mac_a, mac_b = "52:54:00:ec:00:0a", "52:54:00:ec:00:0b"

    binding = await driver.bind(vm_a, 0, mac_a, green)
    assert binding == VifBinding(
        kind="ovs",
        bridge=bridge,
        port_name=port_name_for(vm_a, 0, bridge),
        vlan=301,
        interface_id=f"{vm_a}-0",
        external_ids={
            "iface-id": f"{vm_a}-0",
            "attached-mac": mac_a,
            "vm-uuid": vm_a,
            "edgecloud-vnic-index": "0",
            "edgecloud-network": "green",
        },
    )
    assert len(binding.port_name) <= 15
    tun_flags = Path("/sys/class/net", binding.port_name, "tun_flags")
    assert tun_flags.exists(), "bind makes the vNIC's tap (libvirt only opens it)"
    queue = Path("/sys/class/net", binding.port_name, "tx_queue_len")
    await driver.hold_port(binding)  # an incoming migration: few packets kept for the guest
    assert int(queue.read_text()) == 8
    await driver.port_plugged(binding)  # the guest arrived
    assert int(queue.read_text()) == 1000
    assert await driver.bind(vm_a, 0, mac_a, green) == binding
    port_a = PortInfo(binding.port_name, vm_a, 0, mac_a, "green")
    assert await driver.list_ports() == [port_a], "bind pre-creates the labelled port"

    # Domain start as libvirt does it: drop and re-add the port with its own labels, no tag.
    vm_ns = await namespaces(1)
    await _plug_vm(driver, vm_ns, binding, mac_a, "10.250.3.1/24")
    await sh("ovs-vsctl", "--timeout=10", "--", "--if-exists", "del-port", binding.port_name,
             "--", "add-port", bridge, binding.port_name,
             "--", "set", "Interface", binding.port_name,
             f"external_ids:iface-id={uuid.uuid4()}", f'external_ids:attached-mac="{mac_a}"',
             f"external_ids:vm-id={uuid.uuid4()}", "external_ids:iface-status=active")  # fmt: skip
    assert await driver.list_ports() == []
    assert await port_tag(binding.port_name) is None
    await driver.label_port(binding)
    await driver.label_port(binding)
    assert await driver.list_ports() == [port_a]
    assert await port_tag(binding.port_name) == 301

    # A second instance, its port as bind made it.
    binding_b = await driver.bind(vm_b, 1, mac_b, green)
    vm_b_ns = await namespaces(2)
    await _plug_vm(driver, vm_b_ns, binding_b, mac_b, "10.250.3.3/24")
    peer_ns = await namespaces(3)
    await driver.plug_namespace_port(peer_ns, f"ev{run_id}3", green, None, "10.250.3.2/24")
    assert await can_ping(peer_ns, "10.250.3.1"), "no traffic through the labelled VM port"
    assert await can_ping(peer_ns, "10.250.3.3"), "no traffic through the pre-created VM port"

    assert [p.instance_id for p in await driver.list_ports()] == sorted([vm_a, vm_b])
    await driver.release_instance(vm_a)
    assert await driver.list_ports() == [PortInfo(binding_b.port_name, vm_b, 1, mac_b, "green")]
    assert binding.port_name not in await bridge_ports(bridge)
    assert not Path("/sys/class/net", binding.port_name).exists(), "release deletes the device"
    assert await can_ping(peer_ns, "10.250.3.3"), "releasing vm-a broke vm-b"
    await driver.release_instance(vm_a)
    await driver.release_instance(f"{run_id}-never-existed")
    await driver.release_instance(vm_b)
    assert await driver.list_ports() == []


async def test_release_finds_ports_libvirt_recreated_unlabelled(
    driver: OvsNetworkDriver, run_id: str, bridge: str
) -> None:
    await driver.setup()
    net = NetworkSpec("green", "net-green-id", "vlan", 302)
    await driver.ensure_network(net)
    binding = await driver.bind(f"{run_id}-vm", 2, "52:54:00:ec:00:0c", net)
    await sh("ovs-vsctl", "--timeout=10", "--", "del-port", binding.port_name,
             "--", "add-port", bridge, binding.port_name)  # fmt: skip
    await driver.release_instance(f"{run_id}-vm")
    assert binding.port_name not in await bridge_ports(bridge)


async def test_vlan_change_retags_ports_and_vlans_are_not_shared(
    driver: OvsNetworkDriver, run_id: str
) -> None:
    await driver.setup()
    green = NetworkSpec("green", "net-green-id", "vlan", 401)
    await driver.ensure_network(green)
    binding = await driver.bind(f"{run_id}-vm", 0, "52:54:00:ec:00:0d", green)
    await driver.ensure_network(NetworkSpec("green", "net-green-id", "vlan", 402))
    assert await port_tag(binding.port_name) == 402
    with pytest.raises(DriverError, match="VLAN 402"):
        await driver.ensure_network(NetworkSpec("blue", "net-blue-id", "vlan", 402))
    with pytest.raises(DriverError, match="vxlan"):
        await driver.ensure_network(NetworkSpec("tun", "net-tun-id", "vxlan", 5000))
    with pytest.raises(DriverError, match="VLAN id"):
        await driver.bind(f"{run_id}-vm", 1, "52:54:00:ec:00:0e", NetworkSpec("f", "f", "flat"))


# -- (d) OpenFlow bundles --------------------------------------------------------------------


async def test_flow_bundle_commits_atomically(driver: OvsNetworkDriver) -> None:
    await driver.setup()
    await driver.apply_flows_bundle(
        [
            "cookie=0x10,table=0,priority=10,dl_type=0x88b5,actions=drop",
            "cookie=0x20,table=0,priority=20,dl_type=0x88b6,actions=drop",
        ],
        [],
    )
    before = await driver.dump_flows()
    assert {f.split(",")[0] for f in before} >= {"cookie=0x10", "cookie=0x20"}

    good = "cookie=0x30,table=0,priority=30,dl_type=0x88b7,actions=drop"
    rejected_by_switch = "cookie=0x31,table=0,priority=31,actions=group:4242"  # no such group
    with pytest.raises(DriverError, match="OFPBAC_BAD_OUT_GROUP"):
        await driver.apply_flows_bundle([good, rejected_by_switch], ["cookie=0x10/-1"])
    assert await driver.dump_flows() == before

    with pytest.raises(DriverError, match="could not commit"):
        await driver.apply_flows_bundle([good, "priority=32,actions=no_such_action"], [])
    assert await driver.dump_flows() == before
    with pytest.raises(DriverError, match="line break"):
        await driver.apply_flows_bundle([good + "\nadd priority=1,actions=drop"], [])

    await driver.apply_flows_bundle([good], ["cookie=0x10/-1"])
    cookies = {f.split(",")[0] for f in await driver.dump_flows()}
    assert {"cookie=0x20", "cookie=0x30"} <= cookies and "cookie=0x10" not in cookies


async def test_errors_are_driver_errors_with_the_reason(tmp_path: Path, run_id: str) -> None:
    missing = OvsNetworkDriver(tmp_path, bridge=f"ect{run_id}x")
    with pytest.raises(DriverError, match=f"ect{run_id}x"):
        await missing.apply_flows_bundle(["priority=1,actions=drop"], [])
    assert await missing.list_ports() == []
    with pytest.raises(DriverError, match="not a valid interface name"):
        OvsNetworkDriver(tmp_path, bridge="x" * 16)
