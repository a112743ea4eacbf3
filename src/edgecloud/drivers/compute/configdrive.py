"""Config drives: the ISO 9660 image (label ``config-2``) a guest reads its metadata from.

The layout and JSON follow OpenStack's config drive, so guest tooling (cloud-init, VNF
agents) that knows Nova reads it unchanged. Every file is written in ``openstack/latest`` and in
each dated version folder Nova writes (``NOVA_VERSIONS``; cloud-init's ConfigDrive datasource
takes the newest dated folder it knows, older agents ``latest``), each version with the files
it introduced:

    meta_data.json     uuid, name, hostname, launch_index, public_keys {name: key} and keys
                       [{"name", "type": "ssh", "data"}], caller metadata, and ``devices`` in
                       Nova's device-role-tagging format, one per vNIC:
                       {"type": "nic", "bus": "pci", "address": "0000:00:03.0", "mac": ...,
                        "tags": [tag]}
    user_data          the VNF's user data, byte for byte (only when it has some)
    vendor_data.json   {} (from 2013-10-17)
    network_data.json  (from 2015-10-15) one link per vNIC (MAC, MTU), one network per fixed IP
                       as Nova writes static addresses: type ipv4/ipv6, ip_address, netmask,
                       routes (the default route via the subnet's gateway, then its host
                       routes, each {"network", "netmask", "gateway"}), network_id, services
                       (dns); top-level services: every DNS server once.

Addresses are always written as static (type ipv4/ipv6), also where the subnet has DHCP on:
the address is fixed either way, and the guest then needs no DHCP server to come up.

libvirt.py builds it at define time and attaches it as a read-only IDE cdrom (domain_xml.py).
The ISO is written by genisoimage, or xorriso's mkisofs emulation, in a subprocess.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.drivers.compute.base import DomainSpec, IpSpec, VnicSpec
from edgecloud.errors import DriverError

VOLUME_LABEL = "config-2"
ISO_TOOLS = (("genisoimage",), ("xorriso", "-as", "mkisofs"))
LIBERTY, HAVANA = "2015-10-15", "2013-10-17"  # first versions with network_data / vendor_data
NOVA_VERSIONS = (
    "2012-08-10",
    "2013-04-04",
    HAVANA,
    LIBERTY,
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
)
MTU = 1500


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
        "hostname": spec.hostname or spec.name,
        "launch_index": 0,
    }
    data.update(spec.metadata)
    if spec.hostname:
        data["hostname"] = spec.hostname
    if spec.public_keys:
        data["public_keys"] = dict(spec.public_keys)
        data["keys"] = [
            {"name": name, "type": "ssh", "data": key}
            for name, key in sorted(spec.public_keys.items())
        ]
    if "devices" not in spec.metadata:
        data["devices"] = [device_metadata(v) for v in sorted(spec.vnics, key=_by_slot)]
    return data


def network_data(spec: DomainSpec) -> dict[str, Any]:
    """network_data.json: a link per vNIC, a network per fixed IP, the DNS services."""
    vnics = sorted(spec.vnics, key=lambda v: v.index)
    links = [
        {
            "id": f"vnic{v.index}",
            "type": "hw_veb" if v.model in ("sriov-vf", "pci-passthrough") else "ovs",
            "ethernet_mac_address": v.mac.lower(),
            "mtu": MTU,
            "vif_id": v.binding.interface_id if v.binding and v.binding.interface_id else None,
        }
        for v in vnics
    ]
    networks: list[dict[str, Any]] = []
    for v in vnics:
        for ip in v.fixed_ips:
            networks.append(_network(f"network{len(networks)}", f"vnic{v.index}", ip))
    dns = dict.fromkeys(d for v in vnics for ip in v.fixed_ips for d in ip.dns_nameservers)
    return {"links": links, "networks": networks, "services": _dns_services(dns)}


def _network(network_id: str, link: str, ip: IpSpec) -> dict[str, Any]:
    """One static address as Nova's netutils writes it."""
    net = ipaddress.ip_network(ip.cidr)
    routes = []
    if ip.gateway:
        anywhere = "0.0.0.0" if net.version == 4 else "::"
        routes.append({"network": anywhere, "netmask": anywhere, "gateway": ip.gateway})
    for destination, nexthop in ip.host_routes:
        dest = ipaddress.ip_network(destination)
        routes.append(
            {"network": str(dest.network_address), "netmask": str(dest.netmask), "gateway": nexthop}
        )
    return {
        "id": network_id,
        "type": f"ipv{net.version}",
        "link": link,
        "ip_address": ip.address,
        "netmask": str(net.netmask),
        "routes": routes,
        "network_id": ip.network_id,
        "services": _dns_services(ip.dns_nameservers),
    }


def _dns_services(servers: Iterable[str]) -> list[dict[str, str]]:
    return [{"type": "dns", "address": address} for address in servers]


def drive_files(spec: DomainSpec) -> dict[str, bytes]:
    """Every file of the drive by its path under the root (what cloud-init reads)."""
    meta = json.dumps(meta_data(spec), sort_keys=True).encode()
    network = json.dumps(network_data(spec), sort_keys=True).encode()
    content: dict[str, bytes] = {}
    for version in (*NOVA_VERSIONS, "latest"):
        folder = f"openstack/{version}"
        content[f"{folder}/meta_data.json"] = meta
        if spec.user_data is not None:
            content[f"{folder}/user_data"] = spec.user_data
        if version == "latest" or version >= HAVANA:
            content[f"{folder}/vendor_data.json"] = b"{}"
        if version == "latest" or version >= LIBERTY:
            content[f"{folder}/network_data.json"] = network
    return content


async def build_config_drive(spec: DomainSpec, path: Path) -> Path:
    """Write the config drive of ``spec`` to ``path`` (atomically) and return ``path``."""
    tmp = await asyncio.to_thread(_stage, spec, path.parent)
    try:
        iso = tmp / "config.iso"
        await _make_iso(tmp / "root", iso)
        await asyncio.to_thread(files.restrict, iso)  # user data, keys: the owner's only
        await asyncio.to_thread(iso.replace, path)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    return path


def _stage(spec: DomainSpec, parent: Path) -> Path:
    """A temporary directory next to the ISO's place, with the drive's files under root/."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".configdrive-", dir=parent))
    stage_files(spec, tmp / "root")
    return tmp


def stage_files(spec: DomainSpec, root: Path) -> None:
    """Write the drive's files under ``root`` (the ISO's content)."""
    for name, content in drive_files(spec).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


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
