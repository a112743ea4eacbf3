"""Config drives: the ISO 9660 image (label ``config-2``) a guest reads its metadata from.

The layout and JSON follow OpenStack's config drive, so guest tooling (cloud-init, VNF
agents) that knows Nova reads it unchanged:

    openstack/latest/meta_data.json     uuid, name, hostname, caller metadata, and ``devices``
                                        in Nova's device-role-tagging format, one per vNIC:
                                        {"type": "nic", "bus": "pci", "address": "0000:00:03.0",
                                         "mac": ..., "tags": [tag]}
    openstack/latest/network_data.json  one link per vNIC (no IP configuration)

libvirt.py builds it at define time and attaches it as a read-only IDE cdrom (domain_xml.py).
The ISO is written by genisoimage, or xorriso's mkisofs emulation, in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.base import DomainSpec, VnicSpec
from edgecloud.errors import DriverError

VOLUME_LABEL = "config-2"
ISO_TOOLS = (("genisoimage",), ("xorriso", "-as", "mkisofs"))


def device_metadata(vnic: VnicSpec) -> dict[str, Any]:
    """One vNIC as Nova's device-role-tagging metadata describes it."""
    device: dict[str, Any] = {
        "type": "nic",
        "bus": "pci",
        "address": f"0000:00:{vnic.pci_slot:02x}.0",
        "mac": vnic.mac.lower(),
        "tags": [vnic.tag] if vnic.tag else [],
    }
    if vnic.binding is not None and vnic.binding.vlan is not None and vnic.model == "sriov-vf":
        device["vlan"] = vnic.binding.vlan
    return device


def meta_data(spec: DomainSpec) -> dict[str, Any]:
    """The content of meta_data.json: caller metadata over the defaults, plus ``devices``."""
    data: dict[str, Any] = {
        "uuid": spec.instance_id,
        "name": spec.name,
        "hostname": spec.name,
        "launch_index": 0,
    }
    data.update(spec.metadata)
    if "devices" not in spec.metadata:
        data["devices"] = [device_metadata(v) for v in sorted(spec.vnics, key=_by_slot)]
    return data


def network_data(spec: DomainSpec) -> dict[str, Any]:
    """A minimal network_data.json: the links (vNICs), no networks or services."""
    links = [
        {
            "id": f"vnic{v.index}",
            "type": "hw_veb" if v.model in ("sriov-vf", "pci-passthrough") else "ovs",
            "ethernet_mac_address": v.mac.lower(),
            "mtu": 1500,
            "vif_id": v.binding.interface_id if v.binding and v.binding.interface_id else None,
        }
        for v in sorted(spec.vnics, key=lambda v: v.index)
    ]
    return {"links": links, "networks": [], "services": []}


async def build_config_drive(spec: DomainSpec, path: Path) -> Path:
    """Write the config drive of ``spec`` to ``path`` (atomically) and return ``path``."""
    tmp = await asyncio.to_thread(_stage, spec, path.parent)
    try:
        iso = tmp / "config.iso"
        await _make_iso(tmp / "root", iso)
        await asyncio.to_thread(iso.replace, path)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    return path


def _stage(spec: DomainSpec, parent: Path) -> Path:
    """A temporary directory next to the ISO's place, with the drive's files under root/."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".configdrive-", dir=parent))
    latest = tmp / "root" / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(meta_data(spec), sort_keys=True))
    (latest / "network_data.json").write_text(json.dumps(network_data(spec), sort_keys=True))
    return tmp


async def _make_iso(root: Path, iso: Path) -> None:
    tool = next((t for t in ISO_TOOLS if shutil.which(t[0])), None)
    if tool is None:
        raise DriverError(
            "cannot build a config drive: neither genisoimage nor xorriso is installed "
            "(run scripts/bootstrap-host)"
        )
    argv = [*tool, "-o", str(iso), "-V", VOLUME_LABEL, "-J", "-r", "-quiet", str(root)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{tool[0]} failed to build a config drive: {err.decode().strip()}")


def _by_slot(vnic: VnicSpec) -> int:
    return vnic.pci_slot
