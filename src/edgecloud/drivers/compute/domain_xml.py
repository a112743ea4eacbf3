"""libvirt domain XML for a DomainSpec: pure functions, no libvirt calls.

libvirt.py (the libvirt compute driver) defines domains with ``build_domain_xml`` and reads
its own marks back with ``read_metadata``. The guest PCI layout is fixed so that the guest
sees vNICs in declared order:

    slot 0x00  host bridge            slot 0x01  PIIX3: ISA, IDE (config drive cdrom), ACPI
    slot 0x02  boot disk (virtio)     slot 0x03-0x1f  vNICs, at VnicSpec.pci_slot
    slot 0x02 function 1  virtio-serial controller of the QEMU guest agent (disk boot only)

Nothing else may take a slot: no video card, no memory balloon, no USB controller; the serial
console is ISA and the config drive is an IDE cdrom. The machine type is i440fx ("pc").

A guest booted from its disk (a cloud image) gets the QEMU guest agent's channel
(``org.qemu.guest_agent.0`` on a virtio-serial port; libvirt makes the host-side socket), so
the node can read the guest's own interfaces without any network (libvirt.py
``guest_interfaces``). Its virtio-serial controller is function 1 of the boot disk's slot
(the disk at function 0 is marked multifunction) rather than a slot of its own: every slot
from 0x03 up belongs to the vNICs, with gaps kept free for hot plug (services/vnic_addressing.py),
and a controller anywhere there would take a slot a vNIC may be declared or hot-added at;
function 1 of slot 0x02 can never collide with a vNIC, needs no hot plug (neither device is
ever unplugged), and comes after the disk in the guest's PCI order, before every vNIC, so the
guest's NIC order is unchanged. The direct-kernel-boot test VNF runs no guest agent and keeps
its XML as before (it reports on the serial console).
vNICs of the virtio/e1000/rtl8139 models plug into Open vSwitch through a tap the network
driver made and plugged (``<interface type='ethernet'>``, target ``managed='no'``: libvirt opens
the tap and leaves OVS alone, so a live migration's downtime holds no ``ovs-vsctl`` call);
sriov-vf and pci-passthrough vNICs are host PCI devices.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgecloud.drivers.compute.base import DOMAIN_PREFIX, DomainSpec, VnicSpec
from edgecloud.errors import DriverError

METADATA_NS = "https://edgecloud.dev/xmlns/libvirt/domain/1"
METADATA_PREFIX = "edgecloud"
DOMAIN_TYPES = ("qemu", "kvm")
DISK_PCI_SLOT = 0x02
GUEST_AGENT_PCI_FUNCTION = 0x1  # of DISK_PCI_SLOT: the guest agent's virtio-serial controller
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
FIRST_VNIC_SLOT = 0x03
LAST_VNIC_SLOT = 0x1F
EMULATED_MODELS = ("virtio", "e1000", "rtl8139")
HOSTDEV_MODELS = ("sriov-vf", "pci-passthrough")
MIN_MEMORY_MIB = 16
_MAC = re.compile(r"[0-9a-f][02468ace](:[0-9a-f]{2}){5}")  # unicast
_UUID_NAMESPACE = uuid.UUID("7c0c9d3e-6a55-4f0b-9a43-2b8f3d1d2e11")

ET.register_namespace(METADATA_PREFIX, METADATA_NS)


@dataclass(frozen=True)
class DomainMarks:
    """What ``build_domain_xml`` writes into ``<metadata>`` so a domain can be recognised."""

    instance_id: str
    spec_hash: str
    vnics: tuple[dict[str, Any], ...]


def domain_uuid(name: str) -> str:
    """The libvirt UUID of a domain: derived from its name, so redefining keeps it."""
    return str(uuid.uuid5(_UUID_NAMESPACE, name))


def spec_hash(spec: DomainSpec, **inputs: object) -> str:
    """A digest of everything the XML is built from; equal hashes mean nothing changed."""
    text = json.dumps([repr(spec), sorted((k, repr(v)) for k, v in inputs.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def build_domain_xml(
    spec: DomainSpec,
    *,
    console_path: str,
    domain_type: str = "qemu",
    config_drive: str | None = None,
    allow_unbound: bool = False,
    declared_slots: bool = True,
) -> str:
    """The domain XML for ``spec``.

    ``declared_slots`` False leaves vNIC PCI addresses to libvirt (its default addressing):
    only the benchmark's baseline uses that, to show what edgecloud's explicit slots fix.

    ``domain_type`` is "qemu" (TCG) or "kvm". ``console_path`` is the file the serial console
    writes to; ``config_drive`` an ISO attached as a read-only IDE cdrom. vNICs without an ovs
    binding are refused unless ``allow_unbound`` (tests only: such a vNIC is a tap connected
    to nothing).
    """
    if domain_type not in DOMAIN_TYPES:
        raise DriverError(f"domain type {domain_type!r} is not one of {', '.join(DOMAIN_TYPES)}")
    validate_spec(spec)
    digest = spec_hash(
        spec,
        console_path=console_path,
        domain_type=domain_type,
        config_drive=config_drive,
        allow_unbound=allow_unbound,
        declared_slots=declared_slots,
    )
    domain = ET.Element("domain", type=domain_type)
    _text(domain, "name", spec.name)
    _text(domain, "uuid", domain_uuid(spec.name))
    domain.append(_metadata(spec, digest))
    _text(domain, "memory", str(spec.memory_mib), unit="MiB")
    _text(domain, "vcpu", str(spec.vcpus))
    domain.append(_os(spec))
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if domain_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-passthrough")
    ET.SubElement(domain, "clock", offset="utc")
    _text(domain, "on_poweroff", "destroy")
    _text(domain, "on_reboot", "restart")
    _text(domain, "on_crash", "destroy")
    devices = ET.SubElement(domain, "devices")
    _add_disks(devices, spec, config_drive)
    if has_guest_agent_channel(spec):
        _add_guest_agent_channel(devices)
    ET.SubElement(devices, "controller", type="usb", model="none")
    for vnic in spec.vnics:
        devices.append(
            vnic_element(vnic, allow_unbound=allow_unbound, declared_slot=declared_slots)
        )
    _add_console(devices, console_path)
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="none")
    ET.SubElement(devices, "memballoon", model="none")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def vnic_element(
    vnic: VnicSpec, *, allow_unbound: bool = False, declared_slot: bool = True
) -> ET.Element:
    """The ``<interface>`` or ``<hostdev>`` element of one vNIC (also used for hot plug);
    without ``declared_slot`` libvirt chooses the guest PCI address."""
    if vnic.model in HOSTDEV_MODELS:
        return _hostdev_vnic(vnic)
    if vnic.model not in EMULATED_MODELS:
        raise DriverError(f"vNIC {vnic.index} has unknown model {vnic.model!r}")
    binding = vnic.binding
    if binding is None or binding.kind != "ovs":
        if not allow_unbound:
            kind = binding.kind if binding else "no"
            raise DriverError(
                f"vNIC {vnic.index} ({vnic.mac}) has {kind} binding; a real domain needs an "
                "ovs binding from the network driver"
            )
        iface = ET.Element("interface", type="ethernet")
    else:
        if not binding.bridge:
            raise DriverError(f"vNIC {vnic.index} ({vnic.mac}) has an ovs binding without bridge")
        if not binding.port_name:
            raise DriverError(f"vNIC {vnic.index} ({vnic.mac}) has an ovs binding without port")
        # The network driver made the tap and its tagged, labelled OVS port (ovs.py bind):
        # libvirt only opens the tap, and never runs ovs-vsctl, not even in a migration.
        iface = ET.Element("interface", type="ethernet")
        ET.SubElement(iface, "target", dev=binding.port_name, managed="no")
    iface.insert(0, ET.Element("mac", address=vnic.mac.lower()))
    ET.SubElement(iface, "model", type=vnic.model)
    if declared_slot:
        iface.append(pci_address(vnic.pci_slot))
    return iface


def vnic_xml(vnic: VnicSpec, *, allow_unbound: bool = False, declared_slot: bool = True) -> str:
    """``vnic_element`` as text, for attachDeviceFlags/detachDeviceFlags."""
    element = vnic_element(vnic, allow_unbound=allow_unbound, declared_slot=declared_slot)
    return ET.tostring(element, encoding="unicode")


def pci_address(slot: int, *, domain: int = 0, bus: int = 0, function: int = 0) -> ET.Element:
    """A libvirt ``<address type='pci'/>`` element."""
    return ET.Element(
        "address",
        type="pci",
        domain=f"0x{domain:04x}",
        bus=f"0x{bus:02x}",
        slot=f"0x{slot:02x}",
        function=f"0x{function:x}",
    )


def parse_host_pci(address: str) -> tuple[int, int, int, int]:
    """``"0000:03:00.1"`` (or ``"03:00.1"``) as (domain, bus, slot, function)."""
    try:
        head, function = address.rsplit(".", 1)
        parts = head.split(":")
        if len(parts) == 2:
            parts.insert(0, "0")
        dom, bus, slot = (int(p, 16) for p in parts)
        return dom, bus, slot, int(function, 16)
    except ValueError:
        raise DriverError(f"host PCI address {address!r} is not like 0000:03:00.1") from None


def validate_spec(spec: DomainSpec) -> None:
    """Refuse a spec libvirt would refuse or that would break the vNIC order guarantee."""
    if not spec.name.startswith(DOMAIN_PREFIX):
        raise DriverError(f"domain name {spec.name!r} does not start with {DOMAIN_PREFIX!r}")
    if spec.vcpus < 1 or spec.memory_mib < MIN_MEMORY_MIB:
        raise DriverError(
            f"domain {spec.name} needs at least 1 vCPU and {MIN_MEMORY_MIB} MiB of memory"
        )
    check_vnics(spec.name, spec.vnics)


def check_vnics(name: str, vnics: Iterable[VnicSpec]) -> None:
    """Refuse bad MACs, and indexes or MACs given twice; then check the PCI slots."""
    vnics = tuple(vnics)
    for vnic in vnics:
        if not _MAC.fullmatch(vnic.mac.lower()):
            raise DriverError(f"domain {name}: {vnic.mac!r} is not a unicast MAC address")
    for what, values in (
        ("vNIC index", [v.index for v in vnics]),
        ("MAC", [v.mac.lower() for v in vnics]),
    ):
        dup = next((x for i, x in enumerate(values) if x in values[:i]), None)
        if dup is not None:
            raise DriverError(f"domain {name}: {what} {dup} is given to two vNICs")
    check_vnic_slots(vnics)


def check_vnic_slots(vnics: Iterable[VnicSpec]) -> None:
    """Refuse vNIC PCI slots that are out of range or used twice."""
    seen: dict[int, int] = {}
    for vnic in vnics:
        if not FIRST_VNIC_SLOT <= vnic.pci_slot <= LAST_VNIC_SLOT:
            raise DriverError(
                f"vNIC {vnic.index} has PCI slot {vnic.pci_slot:#04x}; vNIC slots are "
                f"{FIRST_VNIC_SLOT:#04x}-{LAST_VNIC_SLOT:#04x}"
            )
        if vnic.pci_slot in seen:
            raise DriverError(
                f"vNICs {seen[vnic.pci_slot]} and {vnic.index} both ask for PCI slot "
                f"{vnic.pci_slot:#04x}"
            )
        seen[vnic.pci_slot] = vnic.index


def read_metadata(xml: str) -> DomainMarks | None:
    """The edgecloud marks of a domain's XML, or None when edgecloud did not define it."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    mark = root.find(f"metadata/{{{METADATA_NS}}}instance")
    if mark is None:
        return None
    try:
        vnics = json.loads(mark.findtext(f"{{{METADATA_NS}}}vnics") or "[]")
    except json.JSONDecodeError:
        vnics = []
    return DomainMarks(
        instance_id=mark.findtext(f"{{{METADATA_NS}}}instance-id") or "",
        spec_hash=mark.findtext(f"{{{METADATA_NS}}}spec-hash") or "",
        vnics=tuple(vnics),
    )


def marks_element(marks: DomainMarks, *, namespaced: bool = True) -> ET.Element:
    """The ``<edgecloud:instance>`` element holding ``marks``."""
    ns = f"{{{METADATA_NS}}}" if namespaced else ""
    mark = ET.Element(f"{ns}instance")
    _text(mark, f"{ns}instance-id", marks.instance_id)
    _text(mark, f"{ns}spec-hash", marks.spec_hash)
    _text(mark, f"{ns}vnics", json.dumps(list(marks.vnics)))
    return mark


def marks_xml(marks: DomainMarks) -> str:
    """The marks as virDomainSetMetadata takes them: without namespace (libvirt adds it)."""
    return ET.tostring(marks_element(marks, namespaced=False), encoding="unicode")


def find_vnic_device(xml: str, mac: str, pci_slot: int | None = None) -> str | None:
    """The device XML of the vNIC with ``mac`` in a domain's XML, or None.

    A pci-passthrough vNIC has no MAC in the XML: it is found by its guest ``pci_slot``.
    """
    devices = ET.fromstring(xml).find("devices")
    if devices is None:
        return None
    for device in devices:
        if device.tag == "interface":
            found = device.find("mac")
            if found is not None and found.get("address", "").lower() == mac.lower():
                return ET.tostring(device, encoding="unicode")
        elif (
            device.tag == "hostdev" and pci_slot is not None and guest_pci_slot(device) == pci_slot
        ):
            return ET.tostring(device, encoding="unicode")
    return None


def used_pci_slots(xml: str) -> set[int]:
    """The bus-0 PCI slots the devices of a domain's XML take."""
    devices = ET.fromstring(xml).find("devices")
    slots = (guest_pci_slot(d) for d in devices) if devices is not None else ()
    return {slot for slot in slots if slot is not None}


def vnic_declaration(vnic: VnicSpec) -> dict[str, Any]:
    """One vNIC as recorded in the domain metadata (JSON-ready)."""
    return {
        "index": vnic.index,
        "network": vnic.network,
        "model": vnic.model,
        "mac": vnic.mac.lower(),
        "pci_slot": vnic.pci_slot,
        "tag": vnic.tag,
        "hostdev_address": vnic.hostdev_address,
    }


def _metadata(spec: DomainSpec, digest: str) -> ET.Element:
    marks = DomainMarks(spec.instance_id, digest, tuple(vnic_declaration(v) for v in spec.vnics))
    metadata = ET.Element("metadata")
    metadata.append(marks_element(marks))
    return metadata


def _os(spec: DomainSpec) -> ET.Element:
    os_el = ET.Element("os")
    _text(os_el, "type", "hvm", arch="x86_64", machine="pc")
    boot = spec.boot
    if boot.kernel_path:
        _text(os_el, "kernel", boot.kernel_path)
        if boot.initrd_path:
            _text(os_el, "initrd", boot.initrd_path)
        if boot.cmdline:
            _text(os_el, "cmdline", boot.cmdline)
    elif boot.disk_path:
        ET.SubElement(os_el, "boot", dev="hd")
    else:
        raise DriverError(f"domain {spec.name} has neither a kernel nor a disk to boot")
    return os_el


def _add_disks(devices: ET.Element, spec: DomainSpec, config_drive: str | None) -> None:
    if spec.boot.disk_path:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=spec.boot.disk_format)
        ET.SubElement(disk, "source", file=spec.boot.disk_path)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        address = pci_address(DISK_PCI_SLOT)
        if has_guest_agent_channel(spec):
            address.set("multifunction", "on")  # function 1: the guest agent's controller
        disk.append(address)
    if config_drive:
        cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        ET.SubElement(cdrom, "source", file=config_drive)
        ET.SubElement(cdrom, "target", dev="hdc", bus="ide")
        ET.SubElement(cdrom, "readonly")
        ET.SubElement(cdrom, "address", type="drive", controller="0", bus="1", target="0", unit="0")


def has_guest_agent_channel(spec: DomainSpec) -> bool:
    """Whether the domain gets a guest agent channel: guests booted from their own disk."""
    return bool(spec.boot.disk_path) and not spec.boot.kernel_path


def _add_guest_agent_channel(devices: ET.Element) -> None:
    controller = ET.SubElement(devices, "controller", type="virtio-serial", index="0")
    controller.append(pci_address(DISK_PCI_SLOT, function=GUEST_AGENT_PCI_FUNCTION))
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "source", mode="bind")  # libvirt chooses the socket path
    ET.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    ET.SubElement(channel, "address", type="virtio-serial", controller="0", bus="0", port="1")


def _add_console(devices: ET.Element, console_path: str) -> None:
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=console_path, append="off")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="file")
    ET.SubElement(console, "source", path=console_path, append="off")
    ET.SubElement(console, "target", type="serial", port="0")


def _hostdev_vnic(vnic: VnicSpec) -> ET.Element:
    if not vnic.hostdev_address:
        raise DriverError(f"vNIC {vnic.index} ({vnic.model}) has no host PCI address")
    try:
        dom, bus, slot, function = parse_host_pci(vnic.hostdev_address)
    except DriverError as exc:
        raise DriverError(f"vNIC {vnic.index} ({vnic.model}): {exc}") from None
    if vnic.model == "sriov-vf":
        element = ET.Element("interface", type="hostdev", managed="yes")
        ET.SubElement(element, "mac", address=vnic.mac.lower())
        source = ET.SubElement(element, "source")
        source.append(pci_address(slot, domain=dom, bus=bus, function=function))
        if vnic.binding is not None and vnic.binding.vlan is not None:
            ET.SubElement(ET.SubElement(element, "vlan"), "tag", id=str(vnic.binding.vlan))
    else:
        element = ET.Element("hostdev", mode="subsystem", type="pci", managed="yes")
        source = ET.SubElement(element, "source")
        source.append(pci_address(slot, domain=dom, bus=bus, function=function))
    element.append(pci_address(vnic.pci_slot))
    return element


def guest_pci_slot(device: ET.Element) -> int | None:
    """The bus-0 guest PCI slot of a device element, or None."""
    address = device.find("address")
    if address is None or address.get("type") != "pci" or int(address.get("bus", "0"), 16):
        return None
    return int(address.get("slot", "0"), 16)


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    child.text = text
    return child


BOOT_NS = "https://edgecloud.dev/xmlns/libvirt/boot/1"
BOOT_PREFIX = "edgecloudboot"


def boot_xml(boot_id: str) -> str:
    """The live-only metadata element that carries a domain's boot id (libvirt.py): it
    migrates with the running guest, so the destination reports the same boot id."""
    return f'<boot id="{boot_id}"/>'


def retarget(xml: str, placement: dict[str, Any]) -> str:
    """A running domain's migratable XML rewritten for a destination node: its own disk
    overlay, config drive, kernel/initrd, console file and vNIC ports (bridge, tap name), as
    the destination prepared them (base.IncomingPlacement). Devices, their order, PCI
    addresses and MACs stay as they are: the guest must not see a difference."""
    root = ET.fromstring(xml)
    for tag, key in (("os/kernel", "kernel_path"), ("os/initrd", "initrd_path")):
        element = root.find(tag)
        if element is not None and placement.get(key):
            element.text = placement[key]
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        key = "disk_path" if disk.get("device") == "disk" else "config_drive"
        if source is not None and placement.get(key):
            source.set("file", placement[key])
    for tag in ("devices/serial", "devices/console"):
        for device in root.iterfind(tag):
            source = device.find("source")
            if (
                device.get("type") == "file"
                and source is not None
                and placement.get("console_path")
            ):
                source.set("path", placement["console_path"])
    ports = {mac.lower(): port for mac, port in (placement.get("ports") or {}).items()}
    for iface in root.iterfind("devices/interface"):
        mac = iface.find("mac")
        port = ports.get(mac.get("address", "").lower()) if mac is not None else None
        if port is None:
            continue
        source, target = iface.find("source"), iface.find("target")
        if source is not None and port.get("bridge"):
            source.set("bridge", port["bridge"])
        if target is not None and port.get("port_name"):
            target.set("dev", port["port_name"])
    return ET.tostring(root, encoding="unicode")


def without_boot_mark(xml: str) -> str:
    """``xml`` without the live boot id element: a persistent definition must not carry it,
    or the next start of the domain would report the old boot id."""
    root = ET.fromstring(xml)
    metadata = root.find("metadata")
    if metadata is not None:
        for mark in metadata.findall(f"{{{BOOT_NS}}}boot"):
            metadata.remove(mark)
    return ET.tostring(root, encoding="unicode")
