"""Tests of the config drive builder (drivers/compute/configdrive.py).

The JSON follows Nova's device-role-tagging format; the ISO is checked for its volume label
(read from the primary volume descriptor) and read back with isoinfo when it is installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecloud.drivers.compute import configdrive
from edgecloud.drivers.compute.base import BootSource, DomainSpec, VifBinding, VnicSpec

SPEC = DomainSpec(
    name="ec-vnf-1",
    instance_id="5d1c6f2e-0000-4000-8000-000000000001",
    vcpus=1,
    memory_mib=256,
    boot=BootSource(kernel_path="/k"),
    vnics=(
        VnicSpec(
            0, "lan", "virtio", "02:EC:00:00:00:0A", 0x04, "in", VifBinding("ovs", "br", "t0")
        ),
        VnicSpec(1, "wan", "e1000", "02:ec:00:00:00:0b", 0x03, "out"),
        VnicSpec(2, "mgmt", "virtio", "02:ec:00:00:00:0c", 0x0A),
    ),
    metadata={"meta": {"role": "firewall"}, "name": "fw-1"},
)


def test_devices_follow_nova_device_role_tagging() -> None:
    data = configdrive.meta_data(SPEC)
    assert data["uuid"] == SPEC.instance_id
    assert data["name"] == "fw-1"  # caller metadata wins over the defaults
    assert data["meta"] == {"role": "firewall"}
    assert data["devices"] == [  # in guest PCI order
        {"type": "nic", "bus": "pci", "address": "0000:00:03.0", "mac": "02:ec:00:00:00:0b",
         "tags": ["out"]},
        {"type": "nic", "bus": "pci", "address": "0000:00:04.0", "mac": "02:ec:00:00:00:0a",
         "tags": ["in"]},
        {"type": "nic", "bus": "pci", "address": "0000:00:0a.0", "mac": "02:ec:00:00:00:0c",
         "tags": []},
    ]  # fmt: skip


def test_network_data_has_one_link_per_vnic() -> None:
    links = configdrive.network_data(SPEC)["links"]
    assert [link["ethernet_mac_address"] for link in links] == [
        "02:ec:00:00:00:0a",
        "02:ec:00:00:00:0b",
        "02:ec:00:00:00:0c",
    ]


@pytest.mark.skipif(
    not (shutil.which("genisoimage") or shutil.which("xorriso")),
    reason="needs genisoimage or xorriso (scripts/bootstrap-host)",
)
async def test_iso_is_labelled_config_2_and_holds_the_json(tmp_path: Path) -> None:
    iso = await configdrive.build_config_drive(SPEC, tmp_path / "cd" / "ec-vnf-1.iso")
    raw = iso.read_bytes()
    assert iso.stat().st_mode & 0o777 == 0o600  # user data and keys: the owner's only
    assert raw[0x8001:0x8006] == b"CD001"
    assert raw[0x8028 : 0x8028 + 32].decode().strip() == "config-2"
    if shutil.which("isoinfo") is None:
        return
    text = await asyncio.to_thread(_extract, iso, "/openstack/latest/meta_data.json")
    assert json.loads(text) == configdrive.meta_data(SPEC)
    assert list(tmp_path.joinpath("cd").iterdir()) == [iso]  # no temporary files left


def _extract(iso: Path, path: str) -> str:
    return subprocess.run(
        ["isoinfo", "-i", str(iso), "-R", "-x", path], capture_output=True, check=True, text=True
    ).stdout
