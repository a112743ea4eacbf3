"""Networks, flavors and images: the catalogue objects VNFs are built from (uploading and
deleting images: services/images.py).

Rules: names are unique per kind; VLAN ids are unique per site (auto-assigned from
VLAN_RANGE when not given; flat networks get a local VLAN on the integration bridge too; the
ids of chain hop tags, chains.planning.HOP_TAGS, are never a network's); nothing in use by a
VNF can be deleted.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.chains.planning import HOP_TAGS
from edgecloud.errors import Conflict, InvalidInput
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Flavor, Image, Instance, Network, Vnic

VLAN_RANGE = range(100, HOP_TAGS.start)
T = TypeVar("T", Network, Flavor, Image)
KIND_NAMES = {Network: "network", Flavor: "flavor", Image: "image"}


async def list_all(ctx: ServiceContext, model: type[T]) -> list[T]:
    async with transaction(ctx.sessions) as s:
        return await repository.all_of(s, model)


async def get_one(ctx: ServiceContext, model: type[T], name: str) -> T:
    async with transaction(ctx.sessions) as s:
        return await repository.by_name(s, model, name, KIND_NAMES[model])


async def _create(ctx: ServiceContext, obj: T, prepare: Any = None) -> T:
    async with transaction(ctx.sessions) as s:
        what = KIND_NAMES[type(obj)]
        if await repository.find_by_name(s, type(obj), obj.name) is not None:
            raise Conflict(f"{what} {obj.name!r} already exists")
        if prepare is not None:
            await prepare(s, obj)
        s.add(obj)
    return obj


async def create_network(ctx: ServiceContext, fields: dict[str, Any]) -> Network:
    return await _create(ctx, Network(**fields), _assign_vlan)


async def insert_network(s: AsyncSession, fields: dict[str, Any]) -> Network:
    """Create a network in the caller's transaction (stacks create several atomically)."""
    network = Network(**fields)
    if await repository.find_by_name(s, Network, network.name) is not None:
        raise Conflict(f"network {network.name!r} already exists")
    await _assign_vlan(s, network)
    s.add(network)
    await s.flush()
    return network


async def _assign_vlan(s: AsyncSession, network: Network) -> None:
    used = set(await s.scalars(select(Network.segmentation_id)))
    if network.segmentation_id is not None:
        if network.segmentation_id in HOP_TAGS:
            raise InvalidInput(
                f"VLAN {network.segmentation_id} is reserved for chain hops on the uplink "
                f"({HOP_TAGS.start}-{HOP_TAGS.stop - 1}); choose one below {HOP_TAGS.start}",
                field="segmentation_id",
            )
        if network.segmentation_id in used:
            raise Conflict(f"VLAN {network.segmentation_id} is already used by another network")
        return
    free = next((vlan for vlan in VLAN_RANGE if vlan not in used), None)
    if free is None:
        raise Conflict("no free VLAN id left on this site")
    network.segmentation_id = free


async def create_flavor(ctx: ServiceContext, fields: dict[str, Any]) -> Flavor:
    return await _create(ctx, Flavor(**fields))


async def delete(ctx: ServiceContext, model: type[Network] | type[Flavor], name: str) -> None:
    """Delete a network or flavor that no VNF uses."""
    async with transaction(ctx.sessions) as s:
        obj = await repository.by_name(s, model, name, KIND_NAMES[model])
        users = await _users(s, obj)
        if users:
            what = KIND_NAMES[model]
            raise Conflict(f"{what} {name!r} is used by VNF(s): {', '.join(sorted(users)[:5])}")
        await s.delete(obj)


async def _users(s: AsyncSession, obj: Network | Flavor) -> set[str]:
    if isinstance(obj, Network):
        query = select(Instance.name).join(Vnic).where(Vnic.network_id == obj.id)
    else:
        query = select(Instance.name).where(Instance.flavor_id == obj.id)
    return set(await s.scalars(query))
