"""The config drive as cloud-init's ConfigDrive datasource reads it: dated and latest folders,
meta_data.json keys and hostname, user_data byte for byte, network_data.json with static
addresses, routes and DNS in the shape cloud-init's ``convert_net_json`` consumes (types
ipv4/ipv6 with ip_address and netmask, routes {network, netmask, gateway}, links by id with
their MAC, services of type dns)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecloud.drivers.compute import configdrive
from edgecloud.drivers.compute.base import BootSource, DomainSpec, IpSpec, VnicSpec

V4 = IpSpec(
    "10.0.0.50",
    "10.0.0.0/24",
    "10.0.0.1",
    ("10.0.0.53",),
    (("192.168.0.0/16", "10.0.0.254"),),
    "net-lan",
    "sub-v4",
)
V6 = IpSpec("2001:db8::5", "2001:db8::/64", "2001:db8::1", ("2001:db8::53", "10.0.0.53"))
NO_GATEWAY = IpSpec("172.16.0.9", "172.16.0.0/28")
USER_DATA = b"#cloud-config\nruncmd:\n - [sh, -c, 'echo ran > /run/ran']\n\x00\xff"
SPEC = DomainSpec(
    name="ec-router-1234",
    instance_id="5d1c6f2e-0000-4000-8000-000000000001",
    vcpus=1,
    memory_mib=256,
    boot=BootSource(disk_path="/d.qcow2"),
    vnics=(
        VnicSpec(0, "lan", "virtio", "02:EC:00:00:00:0A", 0x04, fixed_ips=(V4, V6)),
        VnicSpec(1, "wan", "virtio", "02:ec:00:00:00:0b", 0x03, fixed_ips=(NO_GATEWAY,)),
        VnicSpec(2, "mgmt", "virtio", "02:ec:00:00:00:0c", 0x05),
    ),
    metadata={"hostname": "router", "meta": {}},
    hostname="edge-router",
    public_keys={"ops": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake ops@x"},
    user_data=USER_DATA,
)


def test_meta_data_has_hostname_and_keys_as_nova() -> None:
    data = configdrive.meta_data(SPEC)
    assert data["hostname"] == "edge-router" and data["launch_index"] == 0
    assert data["public_keys"] == SPEC.public_keys
    assert data["keys"] == [{"name": "ops", "type": "ssh", "data": SPEC.public_keys["ops"]}]
    assert [d["mac"] for d in data["devices"]] == [
        "02:ec:00:00:00:0b",
        "02:ec:00:00:00:0a",
        "02:ec:00:00:00:0c",
    ]  # by PCI slot


def test_network_data_is_nova_static_configuration() -> None:
    data = configdrive.network_data(SPEC)
    links = {link["id"]: link for link in data["links"]}
    assert {k: v["ethernet_mac_address"] for k, v in links.items()} == {
        "vnic0": "02:ec:00:00:00:0a",
        "vnic1": "02:ec:00:00:00:0b",
        "vnic2": "02:ec:00:00:00:0c",
    }
    assert all(link["mtu"] == 1500 for link in links.values())
    v4, v6, wan = data["networks"]
    assert v4 == {
        "id": "network0",
        "type": "ipv4",
        "link": "vnic0",
        "ip_address": "10.0.0.50",
        "netmask": "255.255.255.0",
        "routes": [
            {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
            {"network": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"},
        ],
        "network_id": "net-lan",
        "services": [{"type": "dns", "address": "10.0.0.53"}],
    }
    assert (v6["type"], v6["link"], v6["ip_address"]) == ("ipv6", "vnic0", "2001:db8::5")
    assert v6["netmask"] == "ffff:ffff:ffff:ffff::"
    assert v6["routes"] == [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]
    assert (wan["link"], wan["netmask"], wan["routes"]) == ("vnic1", "255.255.255.240", [])
    # every link a network names exists (cloud-init matches networks to links by id)
    assert {n["link"] for n in data["networks"]} <= links.keys()
    assert data["services"] == [
        {"type": "dns", "address": "10.0.0.53"},
        {"type": "dns", "address": "2001:db8::53"},
    ]


def test_every_nova_version_folder_and_latest_is_written(tmp_path: Path) -> None:
    configdrive.stage_files(SPEC, tmp_path)
    folders = sorted(p.name for p in (tmp_path / "openstack").iterdir())
    assert folders == sorted([*configdrive.NOVA_VERSIONS, "latest"])
    for folder in folders:
        here = tmp_path / "openstack" / folder
        assert json.loads((here / "meta_data.json").read_text())["uuid"] == SPEC.instance_id
        assert (here / "user_data").read_bytes() == USER_DATA
        # network_data.json exists from Liberty on, as in Nova (cloud-init reads it there)
        assert (here / "network_data.json").exists() == (
            folder == "latest" or folder >= "2015-10-15"
        )


def test_no_user_data_file_without_user_data(tmp_path: Path) -> None:
    spec = DomainSpec("ec-x", "id", 1, 64, BootSource(kernel_path="/k"))
    configdrive.stage_files(spec, tmp_path)
    assert not list(tmp_path.glob("openstack/*/user_data"))
    assert configdrive.network_data(spec) == {"links": [], "networks": [], "services": []}


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="needs isoinfo (genisoimage)")
async def test_iso_holds_user_data_and_network_data(tmp_path: Path) -> None:
    iso = await configdrive.build_config_drive(SPEC, tmp_path / "cd.iso")
    listing = await asyncio.to_thread(_isoinfo, iso, "-f")
    assert "/openstack/2018-08-27/network_data.json" in listing.decode().splitlines()
    user_data = await asyncio.to_thread(_isoinfo, iso, "-x", "/openstack/latest/user_data")
    assert user_data == USER_DATA
    network = await asyncio.to_thread(
        _isoinfo, iso, "-x", "/openstack/2018-08-27/network_data.json"
    )
    assert json.loads(network) == configdrive.network_data(SPEC)


def _isoinfo(iso: Path, *args: str) -> bytes:
    return subprocess.run(
        ["isoinfo", "-i", str(iso), "-R", *args], capture_output=True, check=True
    ).stdout
