"""Fixed IPs of vNICs: given by the caller or allocated from a subnet's pools.

services/vnfs.py calls ``assign`` for each new vNIC (create, hot-plug) with one ``AddressBook``
per request, so two vNICs of one request never get the same address before anything is flushed.
A request entry is ``{"ip_address": str | None, "subnet": str | None}`` (subnet by name);
none at all means one address from every subnet of the network that has an allocation pool.
Addresses go with their vNIC (the FixedIp rows are deleted with it, services/vnfs.py
``mark_deleted`` and ``detach_vnic``); the unique (subnet, address) constraint in the store
catches two concurrent requests. Pure rules: services/addressing.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput
from edgecloud.services import addressing
from edgecloud.store.models import FixedIp, Instance, Network, Subnet, Vnic


class AddressBook:
    """The addresses taken per subnet during one request: stored ones, plus those handed out."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s
        self._used: dict[str, set[addressing.IPAddress]] = {}

    async def used(self, subnet: Subnet) -> set[addressing.IPAddress]:
        if subnet.id not in self._used:
            stored = await self.s.scalars(
                select(FixedIp.ip_address).where(FixedIp.subnet_id == subnet.id)
            )
            taken = {ipaddress.ip_address(a) for a in stored}
            taken |= {
                ipaddress.ip_address(a) for a in (subnet.gateway_ip, subnet.dhcp_address) if a
            }
            self._used[subnet.id] = taken
        return self._used[subnet.id]


async def subnets_of(s: AsyncSession, network: Network) -> list[Subnet]:
    """The network's subnets, IPv4 first, then by creation."""
    found = await s.scalars(select(Subnet).where(Subnet.network_id == network.id))
    return sorted(found, key=lambda n: (n.ip_version, n.created_at, n.name))


async def assign(
    s: AsyncSession,
    network: Network,
    requested: Sequence[dict[str, Any]] | None,
    where: str,
    book: AddressBook,
) -> list[FixedIp]:
    """The FixedIp rows for a new vNIC on ``network``; ``where`` names it in errors."""
    subnets = await subnets_of(s, network)
    if not requested:
        return [
            await _allocate(subnet, book, i, where)
            for i, subnet in enumerate(n for n in subnets if n.allocation_pools)
        ]
    if not subnets:
        raise InvalidInput(
            f"network {network.name!r} has no subnet to take an address from",
            field=f"{where}.fixed_ips",
        )
    fixed = []
    for i, entry in enumerate(requested):
        at = f"{where}.fixed_ips[{i}]"
        subnet = _subnet_for(network, subnets, entry, at)
        if entry.get("ip_address"):
            fixed.append(await _given(s, subnet, entry["ip_address"], book, i, at))
        else:
            fixed.append(await _allocate(subnet, book, i, at))
    return fixed


def _subnet_for(network: Network, subnets: list[Subnet], entry: dict[str, Any], at: str) -> Subnet:
    name, address = entry.get("subnet"), entry.get("ip_address")
    if name:
        subnet = next((n for n in subnets if n.name == name), None)
        if subnet is None:
            raise InvalidInput(
                f"network {network.name!r} has no subnet named {name!r}", field=f"{at}.subnet"
            )
        return subnet
    if not address:
        raise InvalidInput("give ip_address, subnet, or both", field=at)
    parsed = addressing.parse_address(address, f"{at}.ip_address")
    inside = next((n for n in subnets if addressing.inside(parsed, n.cidr)), None)
    if inside is None:
        cidrs = ", ".join(n.cidr for n in subnets)
        raise InvalidInput(
            f"{address} is in no subnet of network {network.name!r} ({cidrs})",
            field=f"{at}.ip_address",
        )
    return inside


async def _given(
    s: AsyncSession, subnet: Subnet, text: str, book: AddressBook, position: int, at: str
) -> FixedIp:
    address = addressing.parse_address(text, f"{at}.ip_address")
    net = ipaddress.ip_network(subnet.cidr)
    gateway = ipaddress.ip_address(subnet.gateway_ip) if subnet.gateway_ip else None
    dhcp = ipaddress.ip_address(subnet.dhcp_address) if subnet.dhcp_address else None
    try:
        addressing.check_fixed_ip(address, net, gateway, dhcp)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field=f"{at}.ip_address") from exc
    used = await book.used(subnet)
    if address in used:
        owner = await _owner(s, subnet, str(address))
        by = f" by VNF {owner!r}" if owner else " by another vNIC of this request"
        raise Conflict(f"{at}.ip_address: {address} is already used in subnet {subnet.name!r}{by}")
    used.add(address)
    return FixedIp(subnet=subnet, ip_address=str(address), position=position)


async def _allocate(subnet: Subnet, book: AddressBook, position: int, at: str) -> FixedIp:
    used = await book.used(subnet)
    address = addressing.first_free(addressing.parse_pools(subnet.allocation_pools), used)
    if address is None:
        raise Conflict(f"{at}: subnet {subnet.name!r} has no free address left in its pools")
    used.add(address)
    return FixedIp(subnet=subnet, ip_address=str(address), position=position)


async def _owner(s: AsyncSession, subnet: Subnet, address: str) -> str | None:
    return (
        await s.scalars(
            select(Instance.name)
            .join(Vnic, Vnic.instance_id == Instance.id)
            .join(FixedIp, FixedIp.vnic_id == Vnic.id)
            .where(FixedIp.subnet_id == subnet.id, FixedIp.ip_address == address)
        )
    ).first()
