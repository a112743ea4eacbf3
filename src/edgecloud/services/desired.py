"""The per-node desired-state snapshot the controller pushes to an agent.

A snapshot is plain JSON: ``{"version", "host", "networks": [...], "instances": [...],
"steering": {match: output(s)}}`` (steering: this host's flows of every chain that has a port
on it, chains/planning.py). Steering, compatibly extended for chains across hosts:

- a match is a port key (``cust0``, ``vnic:<instance id>:<vNIC index>``: frames entering on
  that port) or ``vlan:<tag>`` (frames arriving on the node's uplink trunk tagged <tag>; the
  tag is popped before output);
- an output is a port key, or ``vlan:<tag>`` (push <tag>, out the uplink); a match with ONE
  output has it as a plain string (what every agent before chains across hosts reads: a
  chain on one host looks exactly as before), with several a list, output in that order.

Its version is the host's ``desired_version``, bumped (store/host_versions.py, one atomic update) in the
same transaction as any change that alters it, so an agent that presents the current version
needs nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.services import migrations
from edgecloud.services.chain_paths import host_steering
from edgecloud.services.guest_data import hostname_from_name
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store import instances
from edgecloud.store.models import FixedIp, Host, Image, Instance, Vnic


def domain_name(instance: Instance) -> str:
    """The hypervisor's name for an instance: readable and unique."""
    return f"ec-{instance.name}-{instance.id[:8]}"


async def snapshot(session: AsyncSession, host: Host) -> dict[str, Any]:
    """The desired state of ``host`` right now."""
    placed = [i for i in await instances.on_host(session, host.id) if i.desired_state != "deleted"]
    outgoing, incoming = await migrations.snapshot_marks(session, host)
    placed += [i for i, _mark in incoming]
    marks = outgoing | {i.id: mark for i, mark in incoming}
    networks = {v.network.name: v.network for i in placed for v in i.vnics}
    return {
        "steering": await host_steering(session, host.id),
        "version": host.desired_version,
        "host": host.name,
        "networks": [
            {
                "name": n.name,
                "id": n.id,
                "kind": n.kind,
                "segmentation_id": n.segmentation_id,
                "dhcp": dhcp_subnets(placed, n.id),
            }
            for n in sorted(networks.values(), key=lambda n: n.name)
        ],
        "instances": [_with_mark(_instance_spec(i), marks.get(i.id)) for i in placed],
    }


def _with_mark(spec: dict[str, Any], mark: dict[str, Any] | None) -> dict[str, Any]:
    """An instance being migrated carries its migration (services/migrations.py): the
    agent neither starts nor destroys its domain, the destination only prepares it."""
    if mark is not None:
        spec["migration"] = mark
    return spec


def _instance_spec(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "name": instance.name,
        "domain": domain_name(instance),
        "desired_state": instance.desired_state,
        "reboots": instance.reboots,
        "vcpus": instance.flavor.vcpus,
        "memory_mib": instance.flavor.memory_mib,
        "disk_gib": instance.flavor.disk_gib,
        "image": _image_spec(instance.image),
        "vnics": [_vnic_spec(v) for v in instance.vnics],
        "metadata": _metadata(instance),
        "hostname": hostname(instance),
        "public_keys": {instance.key_name: instance.public_key} if instance.public_key else {},
        "user_data": instance.user_data,  # base64 or None
        "recovery": instance.recovery_policy,  # "recover": fenced when cut off (agent/fencing.py)
    }


def _image_spec(image: Image) -> dict[str, Any]:
    """What the node fetches (blobs by sha256, over its mTLS port) and how it boots it."""
    spec: dict[str, Any] = {
        "name": image.name,
        "format": image.disk_format,
        "sha256": image.sha256,  # None: a legacy image the node cannot fetch
        "size": image.size,
        "virtual_size": image.virtual_size,
        "cmdline": image.cmdline,
        "ramdisk": None,
    }
    if image.ramdisk is not None:
        spec["ramdisk"] = {"sha256": image.ramdisk.sha256, "size": image.ramdisk.size}
    return spec


def hostname(instance: Instance) -> str:
    """The guest's hostname: as given at create time, else made from the VNF name."""
    return instance.hostname or hostname_from_name(instance.name)


def _fixed_ip_spec(ip: FixedIp) -> dict[str, Any]:
    """One address of a vNIC with what the guest needs to configure it (config drive)."""
    subnet = ip.subnet
    return {
        "ip_address": ip.ip_address,
        "subnet_id": subnet.id,
        "network_id": subnet.network_id,
        "cidr": subnet.cidr,
        "ip_version": subnet.ip_version,
        "gateway_ip": subnet.gateway_ip,
        "dns_nameservers": list(subnet.dns_nameservers),
        "host_routes": list(subnet.host_routes),
    }


def dhcp_subnets(placed: list[Instance], network_id: str) -> list[dict[str, Any]]:
    """The DHCP-enabled subnets of a network that this host's vNICs have addresses in, each
    with its static reservations (MAC -> address): what the node's dnsmasq serves."""
    found: dict[str, dict[str, Any]] = {}
    for instance in placed:
        for vnic in instance.vnics:
            for ip in vnic.fixed_ips:
                subnet = ip.subnet
                if vnic.network_id != network_id or not subnet.enable_dhcp:
                    continue
                entry = found.setdefault(
                    subnet.id,
                    {
                        "subnet_id": subnet.id,
                        "cidr": subnet.cidr,
                        "ip_version": subnet.ip_version,
                        "server_address": subnet.dhcp_address,
                        "gateway_ip": subnet.gateway_ip,
                        "dns_nameservers": list(subnet.dns_nameservers),
                        "host_routes": list(subnet.host_routes),
                        "reservations": [],
                    },
                )
                entry["reservations"].append(
                    {"mac": vnic.mac, "ip_address": ip.ip_address, "hostname": hostname(instance)}
                )
    return [found[k] for k in sorted(found)]


def _vnic_spec(vnic: Vnic) -> dict[str, Any]:
    return {
        "index": vnic.index,
        "network": vnic.network.name,
        "model": vnic.model,
        "mac": vnic.mac,
        "tag": vnic.tag,
        "pci_slot": vnic.pci_slot,
        "hostdev_address": vnic.hostdev_address,
        "fixed_ips": [_fixed_ip_spec(ip) for ip in vnic.fixed_ips],
    }


def _metadata(instance: Instance) -> dict[str, Any]:
    """OpenStack-compatible meta_data.json content, with Nova-style device role tags."""
    return {
        "uuid": instance.id,
        "name": instance.name,
        "hostname": hostname(instance),
        "availability_zone": "edge",
        "meta": dict(instance.meta or {}),
        "devices": [
            {
                "type": "nic",
                "bus": "pci",
                "address": pci_address(v.pci_slot),
                "mac": v.mac,
                "tags": [v.tag] if v.tag else [],
                "vf_trusted": False,
            }
            for v in instance.vnics
        ],
    }
