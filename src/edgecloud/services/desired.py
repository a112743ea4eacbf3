"""The per-node desired-state snapshot the controller pushes to an agent.

A snapshot is plain JSON: ``{"version", "host", "networks": [...], "instances": [...],
"steering": {input port: output port}}`` (steering: the chains on the host, chains/planning.py).
Its version is the host's ``desired_version``, bumped in the same transaction as any change
that alters it, so an agent that presents the current version needs nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.services.chains import path_steering
from edgecloud.services.vnic_addressing import pci_address
from edgecloud.store import instances
from edgecloud.store.models import Chain, Host, Image, Instance, Vnic


def domain_name(instance: Instance) -> str:
    """The hypervisor's name for an instance: readable and unique."""
    return f"ec-{instance.name}-{instance.id[:8]}"


async def snapshot(session: AsyncSession, host: Host) -> dict[str, Any]:
    """The desired state of ``host`` right now."""
    placed = [i for i in await instances.on_host(session, host.id) if i.desired_state != "deleted"]
    networks = {v.network.name: v.network for i in placed for v in i.vnics}
    chains = await session.scalars(
        select(Chain).where(Chain.host_id == host.id).order_by(Chain.name)
    )
    steer: dict[str, str] = {}
    for chain in chains:
        steer.update(path_steering(chain))
    return {
        "steering": steer,
        "version": host.desired_version,
        "host": host.name,
        "networks": [
            {"name": n.name, "id": n.id, "kind": n.kind, "segmentation_id": n.segmentation_id}
            for n in sorted(networks.values(), key=lambda n: n.name)
        ],
        "instances": [_instance_spec(i) for i in placed],
    }


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


def _vnic_spec(vnic: Vnic) -> dict[str, Any]:
    return {
        "index": vnic.index,
        "network": vnic.network.name,
        "model": vnic.model,
        "mac": vnic.mac,
        "tag": vnic.tag,
        "pci_slot": vnic.pci_slot,
        "hostdev_address": vnic.hostdev_address,
    }


def _metadata(instance: Instance) -> dict[str, Any]:
    """OpenStack-compatible meta_data.json content, with Nova-style device role tags."""
    return {
        "uuid": instance.id,
        "name": instance.name,
        "hostname": instance.name,
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
