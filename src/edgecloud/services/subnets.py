"""Subnets of networks (IPv4 and IPv6): create, list, show, delete.

The rules are pure functions in services/addressing.py; this module loads what they need from
the store (the network's other subnets) and stores the result. A subnet with DHCP on takes the
first free address of its pools for the DHCP server (as Neutron's DHCP port does; the node's
dnsmasq answers from it, drivers/network/ovs.py). A subnet that holds any fixed IP cannot be
deleted. Called by api/routers/subnets.py; stacks create subnets with ``insert_subnet`` in their
own transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.services import addressing
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import FixedIp, Instance, Network, Subnet, Vnic

IPV6_ADDRESS_MODES = (None, "dhcpv6-stateful")


async def list_subnets(ctx: ServiceContext, network: str | None = None) -> list[Subnet]:
    async with transaction(ctx.sessions) as s:
        if network is None:
            return await repository.all_of(s, Subnet)
        net = await repository.by_name(s, Network, network, "network")
        return list(
            await s.scalars(select(Subnet).where(Subnet.network_id == net.id).order_by(Subnet.name))
        )


async def get_subnet(ctx: ServiceContext, name: str) -> Subnet:
    async with transaction(ctx.sessions) as s:
        return await repository.by_name(s, Subnet, name, "subnet")


async def create_subnet(ctx: ServiceContext, request: dict[str, Any]) -> Subnet:
    async with transaction(ctx.sessions) as s:
        subnet = await insert_subnet(s, request)
    return await get_subnet(ctx, subnet.name)


async def insert_subnet(s: AsyncSession, request: dict[str, Any]) -> Subnet:
    """Validate and create a subnet in the caller's transaction.

    ``request``: name, network (name), cidr, and optionally ip_version (4), gateway_ip ("auto":
    the first usable address, None: no gateway), allocation_pools ([{"start", "end"}]; default:
    the usable range less the gateway), dns_nameservers, host_routes ([{"destination",
    "nexthop"}]), enable_dhcp (True), ipv6_address_mode (None or "dhcpv6-stateful").
    """
    name = request["name"]
    if await repository.find_by_name(s, Subnet, name) is not None:
        raise Conflict(f"subnet {name!r} already exists")
    try:
        network = await repository.by_name(s, Network, request["network"], "network")
    except NotFound as exc:
        raise InvalidInput(str(exc), field="network") from exc
    mode = request.get("ipv6_address_mode")
    if mode not in IPV6_ADDRESS_MODES:
        raise InvalidInput(
            f"ipv6_address_mode {mode!r} is not supported", field="ipv6_address_mode"
        )
    ip_version = int(request.get("ip_version") or 4)
    if mode is not None and ip_version != 6:
        raise InvalidInput("ipv6_address_mode needs ip_version 6", field="ipv6_address_mode")
    others = await s.scalars(select(Subnet.cidr).where(Subnet.network_id == network.id))
    plan = addressing.plan_subnet(
        request["cidr"],
        ip_version,
        request.get("gateway_ip", "auto"),
        request.get("allocation_pools"),
        request.get("dns_nameservers") or (),
        request.get("host_routes") or (),
        list(others),
    )
    enable_dhcp = bool(request.get("enable_dhcp", True))
    subnet = Subnet(
        name=name,
        network_id=network.id,
        enable_dhcp=enable_dhcp,
        ipv6_address_mode=mode,
        dhcp_address=_dhcp_address(plan) if enable_dhcp else None,
        **addressing.plan_as_fields(plan),
    )
    s.add(subnet)
    await s.flush()
    return subnet


def _dhcp_address(plan: addressing.SubnetPlan) -> str:
    taken = {plan.gateway} if plan.gateway is not None else set()
    address = addressing.first_free(plan.pools, taken)
    if address is None:
        raise InvalidInput(
            "DHCP needs a free address in the allocation pools for its server",
            field="allocation_pools",
        )
    return str(address)


async def delete_subnet(ctx: ServiceContext, name: str) -> None:
    """Delete a subnet that no vNIC has an address in."""
    async with transaction(ctx.sessions) as s:
        subnet = await repository.by_name(s, Subnet, name, "subnet")
        users = await s.scalars(
            select(Instance.name)
            .join(Vnic, Vnic.instance_id == Instance.id)
            .join(FixedIp, FixedIp.vnic_id == Vnic.id)
            .where(FixedIp.subnet_id == subnet.id)
            .distinct()
        )
        names = sorted(users)
        if names:
            raise Conflict(
                f"subnet {name!r} has addresses in use by VNF(s): {', '.join(names[:5])}"
            )
        await s.delete(subnet)
