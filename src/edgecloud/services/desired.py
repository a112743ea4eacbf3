"""The per-node desired-state snapshot the controller pushes to an agent.

``snapshot`` reads a host's rows (``load``) and ``build`` makes the typed snapshot of them
(protocol/desired.py ``DesiredState``; its module documents the wire form, which the gateway
makes once per sync with ``to_wire``). ``build`` is pure: the rows in, the snapshot out.

Steering is this host's flows of every chain that has a port on it (chains/planning.py),
compatibly extended for chains across hosts:

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.protocol import desired as wire
from edgecloud.services import migrations
from edgecloud.services.chain_paths import host_steering
from edgecloud.services.guest_data import hostname_from_name
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store import instances
from edgecloud.store.models import FixedIp, Host, Image, Instance, Subnet, Vnic


def domain_name(instance: Instance) -> str:
    """The hypervisor's name for an instance: readable and unique."""
    return f"ec-{instance.name}-{instance.id[:8]}"


@dataclass(frozen=True)
class Rows:
    """What a host's snapshot is built from, as read from the store."""

    host: Host
    placed: Sequence[Instance]  # on the host (not deleted), then those migrating in
    marks: Mapping[str, Mapping[str, Any]]  # instance id -> its migration mark
    steering: Mapping[str, Any]  # the host's chain flows, wire form


async def load(session: AsyncSession, host: Host) -> Rows:
    """The rows of ``host``'s snapshot."""
    placed = [i for i in await instances.on_host(session, host.id) if i.desired_state != "deleted"]
    outgoing, incoming = await migrations.snapshot_marks(session, host)
    placed += [i for i, _mark in incoming]
    marks = outgoing | {i.id: mark for i, mark in incoming}
    return Rows(host, placed, marks, await host_steering(session, host.id))


async def snapshot(session: AsyncSession, host: Host) -> wire.DesiredState:
    """The desired state of ``host`` right now."""
    return build(await load(session, host))


def build(rows: Rows) -> wire.DesiredState:
    """The snapshot of ``rows`` (pure)."""
    placed = rows.placed
    networks = {v.network.name: v.network for i in placed for v in i.vnics}
    return wire.DesiredState(
        steering=dict(rows.steering),
        version=rows.host.desired_version,
        host=rows.host.name,
        networks=tuple(
            wire.Network(
                name=n.name,
                id=n.id,
                kind=n.kind,
                segmentation_id=n.segmentation_id,
                dhcp=dhcp_subnets(placed, n.id),
            )
            for n in sorted(networks.values(), key=lambda n: n.name)
        ),
        instances=tuple(_instance(i, rows.marks.get(i.id)) for i in placed),
    )


def _instance(instance: Instance, mark: Mapping[str, Any] | None) -> wire.Instance:
    """An instance being migrated carries its migration (services/migrations.py): the
    agent neither starts nor destroys its domain, the destination only prepares it."""
    return wire.Instance(
        id=instance.id,
        name=instance.name,
        domain=domain_name(instance),
        desired_state=instance.desired_state,
        reboots=instance.reboots,
        vcpus=instance.flavor.vcpus,
        memory_mib=instance.flavor.memory_mib,
        disk_gib=instance.flavor.disk_gib,
        image=_image(instance.image),
        vnics=tuple(_vnic(v) for v in instance.vnics),
        metadata=_metadata(instance),
        hostname=hostname(instance),
        public_keys=_public_keys(instance),
        user_data=instance.user_data,  # base64 or None
        recovery=instance.recovery_policy,  # "recover": fenced when cut off (agent/fencing.py)
        migration=None if mark is None else wire.Migration.model_validate(mark),
    )


def _public_keys(instance: Instance) -> dict[str, str]:
    """The key pair's key under its name (copied at create time: both or neither)."""
    if instance.key_name is None or not instance.public_key:
        return {}
    return {instance.key_name: instance.public_key}


def _image(image: Image) -> wire.Image:
    """What the node fetches (blobs by sha256, over its mTLS port) and how it boots it."""
    ramdisk = image.ramdisk
    return wire.Image(
        name=image.name,
        format=image.disk_format,
        sha256=image.sha256,  # None: a legacy image the node cannot fetch
        size=image.size,
        virtual_size=image.virtual_size,
        cmdline=image.cmdline,
        ramdisk=None if ramdisk is None else wire.Ramdisk(sha256=ramdisk.sha256, size=ramdisk.size),
    )


def hostname(instance: Instance) -> str:
    """The guest's hostname: as given at create time, else made from the VNF name."""
    return instance.hostname or hostname_from_name(instance.name)


def _routes(subnet: Subnet) -> tuple[wire.Route, ...]:
    return tuple(wire.Route(**r) for r in subnet.host_routes)


def _fixed_ip(ip: FixedIp) -> wire.FixedIp:
    """One address of a vNIC with what the guest needs to configure it (config drive)."""
    subnet = ip.subnet
    return wire.FixedIp(
        ip_address=ip.ip_address,
        subnet_id=subnet.id,
        network_id=subnet.network_id,
        cidr=subnet.cidr,
        ip_version=subnet.ip_version,
        gateway_ip=subnet.gateway_ip,
        dns_nameservers=tuple(subnet.dns_nameservers),
        host_routes=_routes(subnet),
    )


def dhcp_subnets(placed: Sequence[Instance], network_id: str) -> tuple[wire.DhcpSubnet, ...]:
    """The DHCP-enabled subnets of a network that this host's vNICs have addresses in, each
    with its static reservations (MAC -> address): what the node's dnsmasq serves."""
    found: dict[str, tuple[Subnet, list[wire.Reservation]]] = {}
    for instance in placed:
        for vnic in instance.vnics:
            for ip in vnic.fixed_ips:
                subnet = ip.subnet
                if vnic.network_id != network_id or not subnet.enable_dhcp:
                    continue
                found.setdefault(subnet.id, (subnet, []))[1].append(
                    wire.Reservation(
                        mac=vnic.mac, ip_address=ip.ip_address, hostname=hostname(instance)
                    )
                )
    return tuple(_dhcp_subnet(*found[k]) for k in sorted(found))


def _dhcp_subnet(subnet: Subnet, reservations: list[wire.Reservation]) -> wire.DhcpSubnet:
    return wire.DhcpSubnet(
        subnet_id=subnet.id,
        cidr=subnet.cidr,
        ip_version=subnet.ip_version,
        server_address=subnet.dhcp_address,
        gateway_ip=subnet.gateway_ip,
        dns_nameservers=tuple(subnet.dns_nameservers),
        host_routes=_routes(subnet),
        reservations=tuple(reservations),
    )


def _vnic(vnic: Vnic) -> wire.Vnic:
    return wire.Vnic(
        index=vnic.index,
        network=vnic.network.name,
        model=vnic.model,
        mac=vnic.mac,
        tag=vnic.tag,
        pci_slot=vnic.pci_slot,
        hostdev_address=vnic.hostdev_address,
        fixed_ips=tuple(_fixed_ip(ip) for ip in vnic.fixed_ips),
    )


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
