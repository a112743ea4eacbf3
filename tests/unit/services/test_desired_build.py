"""services/desired.py ``build`` is pure: rows made in memory (no store, no session) in, the
typed snapshot out. DHCP reservations gather per subnet in vNIC order, only for subnets with
DHCP on; an instance's migration mark becomes its typed ``migration``; the steering is the
rows' (wire form)."""

from __future__ import annotations

from edgecloud.services.desired import Rows, build
from edgecloud.store.models import FixedIp, Flavor, Host, Image, Instance, Network, Subnet, Vnic


def _rows() -> Rows:
    lan = Network(id="n-1", name="lan", kind="vlan", segmentation_id=100)
    dhcp = Subnet(id="s-1", name="lan-v4", network_id="n-1", network=lan, ip_version=4,
                  cidr="10.0.0.0/24", gateway_ip="10.0.0.1", dns_nameservers=[],
                  host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.0.0.254"}],
                  enable_dhcp=True, dhcp_address="10.0.0.2")  # fmt: skip
    static = Subnet(id="s-2", name="lan-v6", network_id="n-1", network=lan, ip_version=6,
                    cidr="2001:db8::/64", gateway_ip=None, dns_nameservers=[], host_routes=[],
                    enable_dhcp=False)  # fmt: skip
    image = Image(name="img", disk_format="qcow2", sha256="0" * 64, size=1, virtual_size=1,
                  cmdline="", ramdisk=None)  # fmt: skip
    flavor = Flavor(name="f", vcpus=2, memory_mib=256, disk_gib=1)
    placed = []
    for n in (1, 2):
        vnic = Vnic(index=0, network_id="n-1", network=lan, model="virtio",
                    mac=f"52:54:00:00:00:0{n}", tag=None, pci_slot=3, hostdev_address=None)  # fmt: skip
        vnic.fixed_ips = [
            FixedIp(ip_address=f"10.0.0.{10 + n}", subnet_id="s-1", subnet=dhcp),
            FixedIp(ip_address=f"2001:db8::{n}", subnet_id="s-2", subnet=static),
        ]
        instance = Instance(id=f"i-{n}", name=f"v{n}", image=image, flavor=flavor, meta={},
                            desired_state="running", reboots=0, hostname=None, key_name=None,
                            public_key=None, user_data=None, recovery_policy="none")  # fmt: skip
        instance.vnics = [vnic]
        placed.append(instance)
    host = Host(name="n1", desired_version=9)
    mark = {"id": "m-1", "kind": "live", "role": "incoming", "source": "n2"}
    return Rows(host, placed, {"i-2": mark}, {"cust0": "vnic:i-1:0"})


def test_build_from_rows_in_memory() -> None:
    state = build(_rows())
    assert (state.version, state.host, state.steering) == (9, "n1", {"cust0": "vnic:i-1:0"})
    (network,) = state.networks
    (subnet,) = network.dhcp  # the v6 subnet has no DHCP
    assert subnet.server_address == "10.0.0.2"
    assert [(r.mac, r.ip_address, r.hostname) for r in subnet.reservations] == [
        ("52:54:00:00:00:01", "10.0.0.11", "v1"),
        ("52:54:00:00:00:02", "10.0.0.12", "v2"),
    ]
    first, second = state.instances
    assert first.migration is None and second.incoming and second.migration is not None
    assert second.migration.source == "n2"
    assert [ip.ip_address for ip in first.vnics[0].fixed_ips] == ["10.0.0.11", "2001:db8::1"]
    assert first.vnics[0].fixed_ips[0].host_routes[0].nexthop == "10.0.0.254"
    assert first.metadata["devices"][0]["address"] == "0000:00:03.0"
    assert first.public_keys == {} and first.domain == "ec-v1-i-1"
