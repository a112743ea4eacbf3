"""E2E: DHCP on a real Open vSwitch, as a guest sees it: dnsmasq in the network's namespace
answers a client on the network's VLAN with exactly the address reserved for its MAC (busybox
udhcpc in a namespace of the test's own), answers no unknown MAC, comes back when killed, and
is gone with the network (process, port, namespace). Addresses are 10.251.x.y inside the
test's namespaces; the bridge is per run (``ect<hex>``) and deleted even on failure.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgecloud.drivers.network.base import DhcpReservation, DhcpSubnet, NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver, dhcp_namespace, dhcp_port_name
from tests.e2e.ovs_support import delete_bridge, new_run_id, remove, sh, skip_without_ovs

pytestmark = pytest.mark.e2e

UDHCPC_SCRIPT = '#!/bin/sh\n[ "$1" = bound ] && echo "LEASE ip=$ip mask=$mask router=$router dns=$dns"\nexit 0\n'


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs_and_dnsmasq() -> None:
    skip_without_ovs()
    if not Path("/usr/sbin/dnsmasq").exists() or not Path("/bin/busybox").exists():
        pytest.skip("needs dnsmasq-base and busybox (scripts/bootstrap-host)")


@pytest.fixture
def run_id() -> str:
    return new_run_id()


@pytest.fixture
def bridge(run_id: str) -> Iterator[str]:
    name = f"ect{run_id}"
    yield name
    delete_bridge(name)


@pytest.fixture
async def client_ns(run_id: str) -> AsyncIterator[str]:
    name = f"ect{run_id}-c"
    await sh("ip", "netns", "add", name)
    yield name
    remove("ip", "netns", "del", name)


async def _lease(namespace: str, dev: str, script: Path) -> str | None:
    rc, out, _ = await sh(
        "timeout", "20", "ip", "netns", "exec", namespace,
        "busybox", "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "4", "-T", "1", "-s", str(script),
        check=False,
    )  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith("LEASE ")]
    return lines[-1] if rc == 0 and lines else None


async def test_dnsmasq_gives_a_mac_its_reserved_address_only(
    tmp_path: Path, bridge: str, run_id: str, client_ns: str
) -> None:
    driver = OvsNetworkDriver(tmp_path / "state", bridge=bridge)
    await driver.setup()
    net = NetworkSpec(f"{bridge}-lan", str(uuid.uuid4()), "vlan", 3900)
    mac, other_mac = "02:ec:51:00:00:05", "02:ec:51:00:00:06"
    subnet = DhcpSubnet(
        subnet_id="s1",
        cidr="10.251.0.0/24",
        server_address="10.251.0.2",
        gateway="10.251.0.1",
        dns_nameservers=("10.251.0.53",),
        reservations=(DhcpReservation(mac, "10.251.0.50"),),
    )
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    await driver.ensure_network(net)
    try:
        await driver.ensure_dhcp(net, (subnet,))
        await driver.ensure_dhcp(net, (subnet,))  # idempotent: same server
        pid = driver.dnsmasq_pid(net.network_id)
        assert pid is not None
        rss_kib = _rss_kib(pid)
        print(f"dnsmasq RSS for one network: {rss_kib} KiB")  # reported in docs
        dev = f"ev{run_id}c"
        await driver.plug_namespace_port(client_ns, dev, net, mac=mac)
        lease = await _lease(client_ns, dev, script)
        assert lease == "LEASE ip=10.251.0.50 mask=24 router=10.251.0.1 dns=10.251.0.53", lease

        await sh("ip", "-n", client_ns, "link", "set", dev, "address", other_mac)
        assert await _lease(client_ns, dev, script) is None, "an unknown MAC got a lease"

        os.kill(pid, signal.SIGKILL)  # a dead server is started again by the next ensure
        await driver.ensure_dhcp(net, (subnet,))
        assert driver.dnsmasq_pid(net.network_id) not in (None, pid)
        await sh("ip", "-n", client_ns, "link", "set", dev, "address", mac)
        assert (await _lease(client_ns, dev, script) or "").startswith("LEASE ip=10.251.0.50 ")
    finally:
        pid = driver.dnsmasq_pid(net.network_id)
        await driver.delete_network(net.name)
    assert driver.dnsmasq_pid(net.network_id) is None and pid is not None and _dead(pid)
    _, namespaces, _ = await sh("ip", "netns", "list")
    assert dhcp_namespace(net.network_id, bridge) not in namespaces
    _, ports, _ = await sh("ovs-vsctl", "list-ports", bridge)
    assert dhcp_port_name(net.network_id, bridge) not in ports.split()


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (not running any more)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "State:\tZ" in status or "State:\tX" in status


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
