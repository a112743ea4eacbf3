"""Tests of the libvirt domain XML builder (drivers/compute/domain_xml.py).

The XML is parsed back and checked element by element, including the sriov-vf and
pci-passthrough hostdev forms (no such hardware here), then given to libvirt's in-process test
driver (``test:///default``), whose parser is libvirt's own.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import xml.etree.ElementTree as ET

import pytest

from edgecloud.drivers.compute import domain_xml
from edgecloud.drivers.compute.base import BootSource, DomainSpec, VifBinding, VnicSpec
from edgecloud.errors import DriverError

IFACE_ID = str(uuid.uuid4())
KERNEL = BootSource(kernel_path="/img/vmlinuz", initrd_path="/img/initrd", cmdline="console=ttyS0")


def _ovs(port: str, vlan: int | None = None, interface_id: str = "") -> VifBinding:
    return VifBinding("ovs", bridge="br-int", port_name=port, vlan=vlan, interface_id=interface_id)


VNICS = (
    VnicSpec(0, "lan", "virtio", "02:EC:00:00:00:01", 0x03, "in", _ovs("tap0", 100, IFACE_ID)),
    VnicSpec(1, "wan", "e1000", "02:ec:00:00:00:02", 0x04, "out", _ovs("tap1")),
    VnicSpec(2, "mgmt", "rtl8139", "02:ec:00:00:00:03", 0x05, None, _ovs("tap2")),
    VnicSpec(3, "fast", "sriov-vf", "02:ec:00:00:00:04", 0x06, "vf", VifBinding("hostdev", vlan=7),
             hostdev_address="0000:03:00.1"),
    VnicSpec(4, "pt", "pci-passthrough", "02:ec:00:00:00:05", 0x07, hostdev_address="81:00.0"),
)  # fmt: skip
SPEC = DomainSpec("ec-vnf-1", "inst-1", 2, 512, KERNEL, VNICS, metadata={"role": "fw"})


def _build(spec: DomainSpec = SPEC, **kwargs: object) -> ET.Element:
    args: dict[str, object] = {"console_path": "/state/console/ec-vnf-1.log"} | kwargs
    return ET.fromstring(domain_xml.build_domain_xml(spec, **args))  # type: ignore[arg-type]


def _slot(element: ET.Element) -> int:
    address = element.find("address")
    assert address is not None and address.get("type") == "pci"
    assert (address.get("domain"), address.get("bus"), address.get("function")) == (
        "0x0000",
        "0x00",
        "0x0",
    )
    return int(address.get("slot", ""), 16)


def test_domain_type_memory_and_direct_kernel_boot() -> None:
    root = _build()
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "ec-vnf-1"
    assert root.findtext("uuid") == domain_xml.domain_uuid("ec-vnf-1")
    assert (root.findtext("memory"), root.find("memory").get("unit")) == ("512", "MiB")  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert root.findtext("os/initrd") == "/img/initrd"
    assert root.findtext("os/cmdline") == "console=ttyS0"
    assert root.find("os/type").get("machine") == "pc"  # type: ignore[union-attr]
    assert _build(domain_type="kvm").get("type") == "kvm"
    with pytest.raises(DriverError, match="domain type"):
        _build(domain_type="xen")


def test_disk_boot_puts_the_disk_on_its_reserved_slot() -> None:
    spec = dataclasses.replace(SPEC, boot=BootSource(disk_path="/img/vnf.qcow2"))
    root = _build(spec)
    assert root.find("os/kernel") is None and root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    disk = root.find("devices/disk[@device='disk']")
    assert disk is not None
    assert disk.find("source").get("file") == "/img/vnf.qcow2"  # type: ignore[union-attr]
    assert disk.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert _slot(disk) == domain_xml.DISK_PCI_SLOT
    with pytest.raises(DriverError, match="neither a kernel nor a disk"):
        _build(dataclasses.replace(SPEC, boot=BootSource()))


def test_serial_console_goes_to_a_file() -> None:
    devices = _build().find("devices")
    assert devices is not None
    serial, console = devices.find("serial"), devices.find("console")
    assert serial is not None and console is not None
    assert serial.get("type") == console.get("type") == "file"
    for element in (serial, console):
        assert element.find("source").get("path") == "/state/console/ec-vnf-1.log"  # type: ignore[union-attr]
    assert console.find("target").get("type") == "serial"  # type: ignore[union-attr]


def test_nothing_else_can_take_a_vnic_slot() -> None:
    devices = _build(config_drive="/state/cd.iso").find("devices")
    assert devices is not None
    assert devices.find("video/model").get("type") == "none"  # type: ignore[union-attr]
    assert devices.find("memballoon").get("model") == "none"  # type: ignore[union-attr]
    assert devices.find("controller[@type='usb']").get("model") == "none"  # type: ignore[union-attr]
    cdrom = devices.find("disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("address").get("type") == "drive"  # type: ignore[union-attr]
    slots = [_slot(d) for d in devices if d.find("address[@type='pci']") is not None]
    assert sorted(slots) == [v.pci_slot for v in VNICS]


def test_ovs_vnics_open_the_network_drivers_tap_at_their_slot() -> None:
    devices = _build().find("devices")
    assert devices is not None
    taps = devices.findall("interface[@type='ethernet']")
    assert len(taps) == 3
    for iface, vnic in zip(taps, VNICS[:3], strict=True):
        assert iface.find("mac").get("address") == vnic.mac.lower()  # type: ignore[union-attr]
        target = iface.find("target")
        assert target is not None and target.get("dev") == vnic.binding.port_name  # type: ignore[union-attr]
        assert target.get("managed") == "no"  # libvirt opens the tap, never touches OVS
        assert iface.find("model").get("type") == vnic.model  # type: ignore[union-attr]
        assert _slot(iface) == vnic.pci_slot
        assert iface.find("source") is None and iface.find("virtualport") is None
        assert iface.find("vlan") is None  # the tag is on the OVS port


def test_sriov_vf_is_a_hostdev_interface() -> None:
    devices = _build().find("devices")
    assert devices is not None
    (vf,) = devices.findall("interface[@type='hostdev']")
    assert vf.get("managed") == "yes"
    assert vf.find("mac").get("address") == "02:ec:00:00:00:04"  # type: ignore[union-attr]
    source = vf.find("source/address")
    assert source is not None
    assert (
        source.get("domain"),
        source.get("bus"),
        source.get("slot"),
        source.get("function"),
    ) == (
        "0x0000",
        "0x03",
        "0x00",
        "0x1",
    )
    assert vf.find("vlan/tag").get("id") == "7"  # type: ignore[union-attr]
    assert _slot(vf) == 0x06


def test_pci_passthrough_is_a_hostdev() -> None:
    devices = _build().find("devices")
    assert devices is not None
    (pt,) = devices.findall("hostdev")
    assert (pt.get("mode"), pt.get("type"), pt.get("managed")) == ("subsystem", "pci", "yes")
    source = pt.find("source/address")
    assert source is not None
    assert (source.get("bus"), source.get("slot"), source.get("function")) == (
        "0x81",
        "0x00",
        "0x0",
    )
    assert _slot(pt) == 0x07


def test_hostdev_vnics_need_a_valid_host_address() -> None:
    for address in (None, "not-an-address"):
        bad = dataclasses.replace(VNICS[3], hostdev_address=address)
        with pytest.raises(DriverError, match="vNIC 3"):
            domain_xml.vnic_element(bad)


def test_real_domains_need_an_ovs_binding() -> None:
    for binding in (None, VifBinding("fake")):
        unbound = dataclasses.replace(VNICS[0], binding=binding)
        with pytest.raises(DriverError, match="ovs binding"):
            domain_xml.vnic_element(unbound)
        element = domain_xml.vnic_element(unbound, allow_unbound=True)
        assert element.get("type") == "ethernet" and _slot(element) == 0x03


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "vnf-1"}, "does not start with"),
        ({"vcpus": 0}, "at least 1 vCPU"),
        ({"vnics": (VNICS[0], dataclasses.replace(VNICS[1], pci_slot=0x03))}, "slot"),
        ({"vnics": (dataclasses.replace(VNICS[0], pci_slot=0x02),)}, "slot"),
        ({"vnics": (VNICS[0], dataclasses.replace(VNICS[1], mac=VNICS[0].mac))}, "MAC"),
        ({"vnics": (dataclasses.replace(VNICS[0], mac="03:00:00:00:00:01"),)}, "unicast"),
        ({"vnics": (VNICS[0], dataclasses.replace(VNICS[1], index=0))}, "index"),
    ],
)
def test_invalid_specs_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(DriverError, match=message):
        domain_xml.build_domain_xml(dataclasses.replace(SPEC, **change), console_path="/c.log")  # type: ignore[arg-type]


def test_metadata_recognises_the_domain() -> None:
    xml = domain_xml.build_domain_xml(SPEC, console_path="/c.log")
    marks = domain_xml.read_metadata(xml)
    assert marks is not None
    assert marks.instance_id == "inst-1"
    assert [v["mac"] for v in marks.vnics] == [v.mac.lower() for v in VNICS]
    assert marks.vnics[0] == {
        "index": 0,
        "network": "lan",
        "model": "virtio",
        "mac": "02:ec:00:00:00:01",
        "pci_slot": 3,
        "tag": "in",
        "hostdev_address": None,
    }
    json.dumps(marks.vnics)
    assert (
        marks.spec_hash
        == domain_xml.read_metadata(  # same spec, same hash
            domain_xml.build_domain_xml(SPEC, console_path="/c.log")
        ).spec_hash
    )  # type: ignore[union-attr]
    changed = dataclasses.replace(SPEC, vcpus=3)
    assert (
        domain_xml.read_metadata(
            domain_xml.build_domain_xml(changed, console_path="/c.log")
        ).spec_hash
        != marks.spec_hash
    )  # type: ignore[union-attr]
    assert domain_xml.read_metadata("<domain><name>x</name></domain>") is None
    assert domain_xml.read_metadata("not xml") is None


def test_find_vnic_device_by_mac_or_slot() -> None:
    xml = domain_xml.build_domain_xml(SPEC, console_path="/c.log")
    found = domain_xml.find_vnic_device(xml, "02:EC:00:00:00:02")
    assert found is not None and "e1000" in found
    assert domain_xml.find_vnic_device(xml, "02:ec:00:00:00:05") is None  # passthrough: no MAC
    passthrough = domain_xml.find_vnic_device(xml, "02:ec:00:00:00:05", pci_slot=0x07)
    assert passthrough is not None and passthrough.startswith("<hostdev")
    assert domain_xml.used_pci_slots(xml) == {3, 4, 5, 6, 7}


def test_libvirt_accepts_the_xml() -> None:
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("test:///default")
    try:
        # The test driver has no host PCI devices: the emulated vNICs only.
        spec = dataclasses.replace(SPEC, name=f"ec-xml-{uuid.uuid4().hex[:6]}", vnics=VNICS[:3])
        xml = domain_xml.build_domain_xml(spec, console_path="/c.log", config_drive="/cd.iso")
        dom = conn.defineXML(xml)
        try:
            back = dom.XMLDesc(0)
            marks = domain_xml.read_metadata(back)
            assert marks is not None and marks.instance_id == "inst-1"
            assert domain_xml.used_pci_slots(back) >= {3, 4, 5}
            for vnic in spec.vnics:
                device = domain_xml.find_vnic_device(back, vnic.mac)
                assert device is not None and f'slot="0x{vnic.pci_slot:02x}"' in device
        finally:
            dom.undefine()
    finally:
        conn.close()


def test_disk_boot_gets_a_guest_agent_channel_beside_the_disk() -> None:
    spec = dataclasses.replace(SPEC, boot=BootSource(disk_path="/img/vnf.qcow2"))
    devices = _build(spec, config_drive="/state/cd.iso").find("devices")
    assert devices is not None
    controller = devices.find("controller[@type='virtio-serial']")
    assert controller is not None
    address = controller.find("address")
    assert address is not None
    assert (address.get("bus"), address.get("slot"), address.get("function")) == (
        "0x00",
        f"0x{domain_xml.DISK_PCI_SLOT:02x}",
        "0x1",
    )
    disk_address = devices.find("disk[@device='disk']/address")
    assert disk_address is not None and disk_address.get("multifunction") == "on"
    channel = devices.find("channel[@type='unix']")
    assert channel is not None
    assert channel.find("target").get("name") == "org.qemu.guest_agent.0"  # type: ignore[union-attr]
    assert channel.find("address").get("type") == "virtio-serial"  # type: ignore[union-attr]
    # every vNIC keeps its own slot; nothing but the disk's functions is on slot 0x02
    functions = {
        (int(a.get("slot", ""), 16), a.get("function"))
        for a in devices.iterfind("*/address[@type='pci']")
        if a.get("bus") == "0x00"
    }
    assert functions == {(2, "0x0"), (2, "0x1")} | {(v.pci_slot, "0x0") for v in VNICS}


def test_kernel_boot_has_no_guest_agent_channel() -> None:
    devices = _build().find("devices")
    assert devices is not None
    assert devices.find("channel") is None
    assert devices.find("controller[@type='virtio-serial']") is None


def test_libvirt_accepts_the_guest_agent_channel() -> None:
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("test:///default")
    try:
        spec = dataclasses.replace(
            SPEC,
            name=f"ec-xml-{uuid.uuid4().hex[:6]}",
            boot=BootSource(disk_path="/img/vnf.qcow2"),
            vnics=VNICS[:3],
        )
        dom = conn.defineXML(domain_xml.build_domain_xml(spec, console_path="/c.log"))
        try:
            back = ET.fromstring(dom.XMLDesc(0))
            target = back.find("devices/channel/target")
            assert target is not None and target.get("name") == "org.qemu.guest_agent.0"
            assert domain_xml.used_pci_slots(dom.XMLDesc(0)) == {2, 3, 4, 5}
        finally:
            dom.undefine()
    finally:
        conn.close()
