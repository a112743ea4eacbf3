"""The desired-state snapshot on the wire (services/desired.py) is what every agent release
reads: a golden file holds the snapshot of a representative host (three VNFs in a chain, one
with a host PCI device, fixed addresses with and without DHCP, user data, a key, metadata, a
kernel image with a ramdisk; a fourth VNF migrating in and one of the three migrating out),
and the snapshot built today must equal it byte for byte (key order included: an agent of the
previous release must still understand it). Regenerate the file only for a deliberate, N-1
compatible change of the wire form: EDGECLOUD_REGOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgecloud.chains import planning
from edgecloud.services import desired
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import (
    Chain,
    ChainHopTag,
    ChainService,
    FixedIp,
    Flavor,
    Host,
    Image,
    Instance,
    Migration,
    Network,
    Subnet,
    Vnic,
)

GOLDEN = Path(__file__).parent / "desired_golden.json"


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def _site(s: Any) -> Host:
    """Rows with fixed ids, so the snapshot is the same at every run."""
    h1 = Host(id=_id(1), name="n1", availability="online", vcpus=16, memory_mib=32768,
              disk_gib=200, address="192.0.2.1")  # fmt: skip
    h2 = Host(id=_id(2), name="n2", availability="online", vcpus=16, memory_mib=32768,
              disk_gib=200, address="192.0.2.2")  # fmt: skip
    cust = Network(id=_id(10), name="cust", kind="vlan", segmentation_id=100)
    wan = Network(id=_id(11), name="wan", kind="vlan", segmentation_id=200)
    lan = Subnet(id=_id(20), name="cust-v4", network_id=cust.id, ip_version=4,
                 cidr="10.1.0.0/24", gateway_ip="10.1.0.1", dns_nameservers=["10.1.0.53"],
                 host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.1.0.254"}],
                 enable_dhcp=True, dhcp_address="10.1.0.2")  # fmt: skip
    lan6 = Subnet(id=_id(21), name="cust-v6", network_id=cust.id, ip_version=6,
                  cidr="2001:db8:1::/64", gateway_ip=None, enable_dhcp=False)  # fmt: skip
    uplink = Subnet(id=_id(22), name="wan-v4", network_id=wan.id, ip_version=4,
                    cidr="198.51.100.0/24", gateway_ip="198.51.100.1", enable_dhcp=False)  # fmt: skip
    ramdisk = Image(id=_id(30), name="initrd", disk_format="raw", sha256="a" * 64, size=1000,
                    virtual_size=1000)  # fmt: skip
    kernel = Image(id=_id(31), name="vmlinuz", disk_format="kernel", sha256="b" * 64, size=2000,
                   virtual_size=2000, ramdisk_id=ramdisk.id, cmdline="console=ttyS0")  # fmt: skip
    disk = Image(id=_id(32), name="router", disk_format="qcow2", sha256="c" * 64, size=3000,
                 virtual_size=10737418240)  # fmt: skip
    small = Flavor(id=_id(40), name="small", vcpus=1, memory_mib=512, disk_gib=1)
    large = Flavor(id=_id(41), name="large", vcpus=2, memory_mib=2048, disk_gib=10)
    s.add_all([h1, h2, cust, wan, lan, lan6, uplink, ramdisk, kernel, disk, small, large])
    await s.flush()
    fw = Instance(id=_id(50), name="fw", image_id=kernel.id, flavor_id=small.id, host_id=h1.id,
                  meta={"role": "firewall"}, recovery_policy="recover", key_name="ops",
                  public_key="ssh-ed25519 AAAA ops@example", user_data="I2Nsb3VkLWNvbmZpZwo=",
                  status="active")  # fmt: skip
    rtr = Instance(id=_id(51), name="rtr", image_id=disk.id, flavor_id=large.id, host_id=h1.id,
                   hostname="router-1", status="active")  # fmt: skip
    wax = Instance(id=_id(52), name="wax", image_id=disk.id, flavor_id=small.id, host_id=h1.id,
                   desired_state="stopped", reboots=2, status="active")  # fmt: skip
    mover = Instance(id=_id(53), name="mover", image_id=disk.id, flavor_id=small.id,
                     host_id=h2.id, status="active")  # fmt: skip
    gone = Instance(id=_id(54), name="gone", image_id=disk.id, flavor_id=small.id,
                    host_id=h1.id, desired_state="deleted", status="deleting")  # fmt: skip
    s.add_all([fw, rtr, wax, mover, gone])
    await s.flush()
    vnics = [
        Vnic(id=_id(60), instance_id=fw.id, index=0, network_id=cust.id, model="virtio",
             mac="52:54:00:00:00:01", tag="inside", pci_slot=3),
        Vnic(id=_id(61), instance_id=fw.id, index=1, network_id=cust.id, model="e1000",
             mac="52:54:00:00:00:02", tag="outside", pci_slot=4),
        Vnic(id=_id(62), instance_id=rtr.id, index=0, network_id=cust.id, model="virtio",
             mac="52:54:00:00:00:03", pci_slot=3),
        Vnic(id=_id(63), instance_id=rtr.id, index=1, network_id=wan.id, model="sriov-vf",
             mac="52:54:00:00:00:04", tag="uplink", pci_slot=5, hostdev_address="0000:3b:02.1"),
        Vnic(id=_id(64), instance_id=wax.id, index=0, network_id=cust.id, model="virtio",
             mac="52:54:00:00:00:05", pci_slot=3),
        Vnic(id=_id(65), instance_id=wax.id, index=1, network_id=wan.id, model="virtio",
             mac="52:54:00:00:00:06", pci_slot=4),
        Vnic(id=_id(66), instance_id=mover.id, index=0, network_id=cust.id, model="virtio",
             mac="52:54:00:00:00:07", pci_slot=3),
    ]  # fmt: skip
    s.add_all(vnics)
    await s.flush()
    s.add_all(
        [
            FixedIp(id=_id(70), vnic_id=_id(60), subnet_id=lan.id, ip_address="10.1.0.10"),
            FixedIp(
                id=_id(71),
                vnic_id=_id(60),
                subnet_id=lan6.id,
                ip_address="2001:db8:1::10",
                position=1,
            ),
            FixedIp(id=_id(72), vnic_id=_id(62), subnet_id=lan.id, ip_address="10.1.0.11"),
            FixedIp(id=_id(73), vnic_id=_id(63), subnet_id=uplink.id, ip_address="198.51.100.7"),
            FixedIp(id=_id(74), vnic_id=_id(66), subnet_id=lan.id, ip_address="10.1.0.12"),
        ]
    )
    chain = Chain(id=_id(80), name="c1", customer="acme", host_id=h1.id, ingress_port="cust0",
                  egress_port="net0", status="active")  # fmt: skip
    chain.services = [
        ChainService(
            id=_id(81 + i),
            name=n,
            position=i,
            state="active",
            instance_id=v.id,
            customer_vnic=0,
            network_vnic=1,
        )
        for i, (n, v) in enumerate([("fw", fw), ("rtr", rtr), ("wax", wax)])
    ]
    s.add(chain)
    wax0, wax1 = f"vnic:{wax.id}:0", f"vnic:{wax.id}:1"
    crossing = [(f"vnic:{rtr.id}:1", wax0), (wax0, f"vnic:{rtr.id}:1"), (wax1, "net0"),
                ("net0", wax1)]  # fmt: skip
    s.add_all(  # wax is on both hosts while it migrates: its hops cross, each on a tag
        ChainHopTag(tag=3001 + i, chain_id=chain.id, hop=planning.hop_id(d))
        for i, d in enumerate(crossing)
    )
    s.add_all(
        [
            Migration(
                id=_id(90),
                instance_id=wax.id,
                instance_name="wax",
                source_host_id=h1.id,
                destination_host_id=h2.id,
                status="migrating",
            ),
            Migration(
                id=_id(91),
                instance_id=mover.id,
                instance_name="mover",
                kind="cold",
                source_host_id=h2.id,
                destination_host_id=h1.id,
                status="preparing",
            ),
        ]
    )
    await s.flush()
    h1.desired_version = 42
    return h1


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    sessions = session_factory(engine)
    async with transaction(sessions) as s:
        await _site(s)
    yield sessions
    await engine.dispose()


def _text(wire: dict[str, Any]) -> str:
    return json.dumps(wire, indent=1) + "\n"


# protocol.desired is imported in the tests, not above: benchmarks/desired_snapshot.py loads
# this module's site also with the code from before it existed (the before/after figures).


async def test_the_snapshot_on_the_wire_is_the_golden_one(store: Any) -> None:
    from edgecloud.protocol.desired import to_wire

    async with transaction(store) as s:
        host = await s.get(Host, _id(1))
        wire = to_wire(await desired.snapshot(s, host))
    if os.environ.get("EDGECLOUD_REGOLDEN"):
        GOLDEN.write_text(_text(wire))
    assert _text(wire) == GOLDEN.read_text()
    assert json.dumps(wire) == json.dumps(json.loads(GOLDEN.read_text()))  # compact, as sent


def test_the_golden_snapshot_reads_and_writes_back_unchanged() -> None:
    """What an agent reads (protocol/desired.py) it writes back as it came (desired.json)."""
    from edgecloud.protocol.desired import read, to_wire

    assert _text(to_wire(read(json.loads(GOLDEN.read_text())))) == GOLDEN.read_text()
