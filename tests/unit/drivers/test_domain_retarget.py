"""A running domain's XML rewritten for a migration's destination (domain_xml.retarget): the
destination's files and vNIC ports, nothing the guest could see changed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgecloud.drivers.compute import domain_xml
from edgecloud.drivers.compute.base import BootSource, DomainSpec, VifBinding, VnicSpec


def _source_xml(disk: bool) -> str:
    boot = (
        BootSource(disk_path="/src/disks/ec-a.qcow2")
        if disk
        else BootSource(kernel_path="/src/k", initrd_path="/src/i", cmdline="console=ttyS0")
    )
    vnics = tuple(
        VnicSpec(i, "lan", "virtio", f"52:54:00:00:00:0{i}", slot,
                 binding=VifBinding("ovs", bridge="br-src", port_name=f"tap-src{i}"))
        for i, slot in enumerate((0x05, 0x03))
    )  # fmt: skip
    spec = DomainSpec("ec-a", "i-1", 1, 128, boot, vnics)
    return domain_xml.build_domain_xml(
        spec, console_path="/src/console/ec-a.log", config_drive="/src/configdrive/ec-a.iso"
    )


def _nics(xml: str) -> list[tuple[str | None, ...]]:
    found = []
    for iface in ET.fromstring(xml).iterfind("devices/interface"):
        mac, target = iface.find("mac"), iface.find("target")
        slot = domain_xml.guest_pci_slot(iface)
        assert mac is not None and target is not None
        found.append((mac.get("address"), str(slot), target.get("managed"), target.get("dev")))
    return found


PLACEMENT = {
    "disk_path": "/dst/disks/ec-a.qcow2",
    "config_drive": "/dst/configdrive/ec-a.iso",
    "console_path": "/dst/console/ec-a.log",
    "kernel_path": "/dst/k",
    "initrd_path": "/dst/i",
    "ports": {
        "52:54:00:00:00:00": {"bridge": "br-dst", "port_name": "tap-dst0"},
        "52:54:00:00:00:01": {"bridge": "br-dst", "port_name": "tap-dst1"},
    },
}


def test_kernel_booted_domain_gets_the_destination_files_and_ports() -> None:
    source = _source_xml(disk=False)
    moved = domain_xml.retarget(source, PLACEMENT)
    root = ET.fromstring(moved)
    assert root.findtext("os/kernel") == "/dst/k" and root.findtext("os/initrd") == "/dst/i"
    assert root.findtext("os/cmdline") == "console=ttyS0"
    cdrom = root.find("devices/disk[@device='cdrom']/source")
    assert cdrom is not None and cdrom.get("file") == "/dst/configdrive/ec-a.iso"
    for tag in ("serial", "console"):
        found = root.find(f"devices/{tag}/source")
        assert found is not None and found.get("path") == "/dst/console/ec-a.log"
    assert _nics(source) == [
        ("52:54:00:00:00:00", "5", "no", "tap-src0"),
        ("52:54:00:00:00:01", "3", "no", "tap-src1"),
    ]
    assert _nics(moved) == [  # same MACs, slots and order; the destination's taps
        ("52:54:00:00:00:00", "5", "no", "tap-dst0"),
        ("52:54:00:00:00:01", "3", "no", "tap-dst1"),
    ]
    assert domain_xml.read_metadata(moved) == domain_xml.read_metadata(source)


def test_disk_booted_domain_gets_the_destination_overlay() -> None:
    moved = ET.fromstring(domain_xml.retarget(_source_xml(disk=True), PLACEMENT))
    disk = moved.find("devices/disk[@device='disk']/source")
    assert disk is not None and disk.get("file") == "/dst/disks/ec-a.qcow2"


def test_nothing_prepared_changes_nothing() -> None:
    source = _source_xml(disk=False)
    assert _nics(domain_xml.retarget(source, {})) == _nics(source)


def test_a_persistent_definition_loses_the_live_boot_mark() -> None:
    root = ET.fromstring(_source_xml(disk=False))
    metadata = root.find("metadata")
    assert metadata is not None
    metadata.append(ET.fromstring(f'<b:boot xmlns:b="{domain_xml.BOOT_NS}" id="abc"/>'))
    live = ET.tostring(root, encoding="unicode")
    assert "abc" in domain_xml.retarget(live, PLACEMENT)  # moves with the running guest
    persistent = domain_xml.without_boot_mark(domain_xml.retarget(live, PLACEMENT))
    assert "abc" not in persistent
    assert domain_xml.read_metadata(persistent) is not None  # edgecloud's marks stay
