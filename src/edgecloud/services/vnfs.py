"""VNF instances: create (with ordered vNICs), list, show, actions, delete, console.

Creating stores the instance as ``scheduling``; the instance reconciler places it and the
host's agent makes it run. Status then follows what the agent observes (services/reports.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.scheduler.recovering import DEFAULT_POLICY, POLICIES
from edgecloud.services import fixed_ips, guest_data, images
from edgecloud.services.context import ServiceContext
from edgecloud.services.vnic_addressing import (
    assign_slots,
    new_mac,
    slot_for_position,
)
from edgecloud.store import instances, repository, vnf_migrations
from edgecloud.store.database import reading, transaction
from edgecloud.store.host_versions import bump
from edgecloud.store.models import Flavor, Image, Instance, KeyPair, Network, Vnic

HOSTDEV_MODELS = ("sriov-vf", "pci-passthrough")


async def list_vnfs(ctx: ServiceContext, customer: str | None = None) -> list[Instance]:
    """Every VNF, or only ``customer``'s (services/authorization.py)."""
    async with reading(ctx.sessions) as s:
        if customer is None:
            return await repository.all_of(s, Instance)
        query = select(Instance).where(Instance.customer == customer).order_by(Instance.name)
        return list(await s.scalars(query))


async def get_vnf(ctx: ServiceContext, name: str) -> Instance:
    async with reading(ctx.sessions) as s:
        return await repository.by_name(s, Instance, name, "VNF")


async def create_vnf(ctx: ServiceContext, request: dict[str, Any]) -> Instance:
    """Validate, give each vNIC its MAC and PCI slot, store, and ask for scheduling."""
    async with transaction(ctx.sessions) as s:
        instance = await insert_vnf(s, request)
    ctx.notifier.instance_changed(instance.id)
    return await get_vnf(ctx, instance.name)


async def insert_vnf(s: AsyncSession, request: dict[str, Any]) -> Instance:
    """Create the VNF in the caller's transaction (stacks create several atomically).

    ``request``: name, image, flavor, nics (each: network, and optionally model, mac, tag,
    pci_slot, hostdev_address, fixed_ips: [{"ip_address": str | None, "subnet": str | None}];
    no fixed_ips: one address from each subnet of the network that has a pool), and optionally
    anti_affinity_group, metadata, desired_state, key_name (its public key is copied),
    user_data (bytes | str, at most 64 KiB), hostname (default: made from the name),
    recovery_policy (scheduler/recovering.py POLICIES; default recover),
    customer (who owns it; None: the site)."""
    if await repository.find_by_name(s, Instance, request["name"]) is not None:
        raise Conflict(f"VNF {request['name']!r} already exists")
    image = await _field_ref(s, Image, request["image"], "image")
    images.check_bootable(image)
    flavor = await _field_ref(s, Flavor, request["flavor"], "flavor")
    hostname = request.get("hostname")
    hostname = guest_data.check_hostname(hostname) if hostname else None
    user_data = guest_data.encode_user_data(request.get("user_data"))
    key_name = request.get("key_name")
    keypair = await _keypair(s, key_name) if key_name else None
    vnics = await _build_vnics(s, request["nics"])
    policy = request.get("recovery_policy") or DEFAULT_POLICY
    if policy not in POLICIES:
        raise InvalidInput(
            f"recovery_policy must be one of {', '.join(POLICIES)}", field="recovery_policy"
        )
    instance = Instance(
        name=request["name"],
        image=image,
        flavor=flavor,
        anti_affinity_group=request.get("anti_affinity_group"),
        meta=dict(request.get("metadata") or {}),
        desired_state=request.get("desired_state", "running"),
        vnics=vnics,
        hostname=hostname,
        key_name=key_name,
        public_key=keypair.public_key if keypair else None,
        user_data=user_data,
        customer=request.get("customer"),
        recovery_policy=policy,
    )
    s.add(instance)
    await s.flush()
    return instance


async def _keypair(s: AsyncSession, name: str) -> KeyPair:
    found = await repository.find_by_name(s, KeyPair, name)
    if found is None:
        raise InvalidInput(f"no key pair named {name!r}", field="key_name")
    return found


async def _field_ref(s: AsyncSession, model: type, name: str, field: str) -> Any:
    try:
        return await repository.by_name(s, model, name, field)
    except NotFound as exc:
        raise InvalidInput(str(exc), field=field) from exc


async def _build_vnics(s: AsyncSession, nics: list[dict[str, Any]]) -> list[Vnic]:
    slots = assign_slots([nic.get("pci_slot") for nic in nics])
    _refuse_repeated_macs(nics)
    book = fixed_ips.AddressBook(s)
    return [
        await _new_vnic(s, i, nic, slot, f"nics[{i}]", book)
        for i, (nic, slot) in enumerate(zip(nics, slots, strict=True))
    ]


async def _new_vnic(
    s: AsyncSession,
    index: int,
    nic: dict[str, Any],
    slot: int,
    where: str,
    book: fixed_ips.AddressBook | None = None,
) -> Vnic:
    """One validated vNIC at ``index``; ``where`` names it in error messages."""
    mac = nic.get("mac")
    if mac and await instances.macs_in_use(s, [mac]):
        raise Conflict(f"{where}.mac: MAC {mac} is already used by another vNIC")
    if nic.get("model") in HOSTDEV_MODELS and not nic.get("hostdev_address"):
        raise InvalidInput(
            f"a {nic['model']} vNIC needs hostdev_address (the host PCI function)",
            field=f"{where}.hostdev_address",
        )
    network = await _field_ref(s, Network, nic["network"], f"{where}.network")
    book = book or fixed_ips.AddressBook(s)
    return Vnic(
        index=index,
        network=network,
        model=nic.get("model", "virtio"),
        mac=mac or await _unused_mac(s),
        tag=nic.get("tag"),
        pci_slot=slot,
        hostdev_address=nic.get("hostdev_address"),
        fixed_ips=await fixed_ips.assign(s, network, nic.get("fixed_ips"), where, book),
    )


async def attach_vnic(
    ctx: ServiceContext, name: str, nic: dict[str, Any], position: int | None
) -> Instance:
    """Add a vNIC at a declared position (default: last); the others keep their PCI slots."""
    async with transaction(ctx.sessions) as s:
        instance = await _changeable(s, name)
        existing = [(v.index, v.pci_slot) for v in instance.vnics]
        taken = {i for i, _ in existing}
        if position is None:
            position = max(taken, default=-1) + 1
        if position in taken:
            raise Conflict(
                f"VNF {name!r} already has a vNIC at position {position}; detach it first"
            )
        slot = slot_for_position(existing, position, nic.get("pci_slot"), "pci_slot")
        instance.vnics.append(await _new_vnic(s, position, nic, slot, "nic"))
        instance.vnics.sort(key=lambda v: v.index)
        await _bump_host(s, instance)
    _notify(ctx, instance)
    return await get_vnf(ctx, name)


async def detach_vnic(ctx: ServiceContext, name: str, position: int) -> Instance:
    """Remove the vNIC at ``position``; every other vNIC keeps its position and PCI slot."""
    async with transaction(ctx.sessions) as s:
        instance = await _changeable(s, name)
        vnic = next((v for v in instance.vnics if v.index == position), None)
        if vnic is None:
            raise NotFound(f"VNF {name!r} has no vNIC at position {position}")
        instance.vnics.remove(vnic)
        await _bump_host(s, instance)
    _notify(ctx, instance)
    return await get_vnf(ctx, name)


async def _changeable(s: AsyncSession, name: str) -> Instance:
    instance = await repository.by_name(s, Instance, name, "VNF")
    if instance.desired_state == "deleted":
        raise Conflict(f"VNF {name!r} is being deleted")
    await _not_migrating(s, instance)
    return instance


async def _not_migrating(s: AsyncSession, instance: Instance) -> None:
    """A migrating VNF's domain is the migration's until it ends (services/migrations.py)."""
    if await vnf_migrations.active_for(s, instance.id) is not None:
        raise Conflict(
            f"VNF {instance.name!r} is being migrated: try again when its migration has ended "
            "(edgecloud migration list)"
        )


def _refuse_repeated_macs(nics: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for i, nic in enumerate(nics):
        mac = nic.get("mac")
        if mac in seen:
            raise InvalidInput(f"MAC {mac} is given twice", field=f"nics[{i}].mac")
        if mac:
            seen.add(mac)


async def _unused_mac(s: AsyncSession) -> str:
    while True:
        mac = new_mac()
        if not await instances.macs_in_use(s, [mac]):
            return mac


async def act(ctx: ServiceContext, name: str, action: str) -> Instance:
    """start / stop / reboot: change the desired state; the agent does the rest."""
    async with transaction(ctx.sessions) as s:
        instance = await _changeable(s, name)
        if action == "reboot":
            if instance.desired_state != "running":
                raise Conflict(f"VNF {name!r} is stopped; start it instead of rebooting")
            instance.reboots += 1
        else:
            instance.desired_state = "running" if action == "start" else "stopped"
        await _bump_host(s, instance)
    _notify(ctx, instance)
    return instance


async def delete_vnf(ctx: ServiceContext, name: str) -> Instance:
    """Mark for deletion; gone once its host reports the domain removed (at once if unplaced)."""
    async with transaction(ctx.sessions) as s:
        instance = await repository.by_name(s, Instance, name, "VNF")
        await _not_migrating(s, instance)
        await mark_deleted(s, instance)
    _notify(ctx, instance)
    return instance


async def mark_deleted(s: AsyncSession, instance: Instance) -> None:
    """Delete in the caller's transaction: at once if unplaced, else via its host's agent.
    Its vNICs go at once, so their MACs are free for a replacement (a stack's Port)."""
    instance.desired_state, instance.status = "deleted", "deleting"
    instance.vnics.clear()
    if instance.host_id is None:
        await s.delete(instance)
    else:
        await _bump_host(s, instance)


async def resize(s: AsyncSession, instance: Instance, flavor_name: str) -> None:
    """Give a VNF another flavor in the caller's transaction; it reboots into it."""
    instance.flavor = await _field_ref(s, Flavor, flavor_name, "flavor")
    if instance.desired_state == "running":
        instance.reboots += 1
    await _bump_host(s, instance)


def notify(ctx: ServiceContext, instance: Instance) -> None:
    """Tell the reconcilers an instance changed (after the commit)."""
    _notify(ctx, instance)


async def console(ctx: ServiceContext, name: str, max_bytes: int = 65536) -> tuple[Instance, str]:
    """The VNF's serial console, read by its host's agent over the agent channel."""
    instance = await get_vnf(ctx, name)
    if instance.host is None or ctx.nodes is None:
        raise Conflict(f"VNF {name!r} is not placed on a host yet")
    output = await ctx.nodes.call(
        instance.host.id, "console", {"instance_id": instance.id, "max_bytes": max_bytes}, 30.0
    )
    return instance, str(output)


async def _bump_host(s: AsyncSession, instance: Instance) -> None:
    if instance.host_id is not None:
        await bump(s, [instance.host_id])


def _notify(ctx: ServiceContext, instance: Instance) -> None:
    ctx.notifier.instance_changed(instance.id)
    if instance.host_id is not None:
        ctx.notifier.host_changed(instance.host_id)
