"""IP address rules, as pure functions: subnets, allocation pools, routes and fixed IPs.

No I/O: services/subnets.py and services/vnfs.py load what is stored, call these, and store the
result; tests/unit/services/test_addressing.py checks them with Hypothesis. The rules are
Neutron's: a subnet's cidr has no host bits; the gateway is inside it (or there is none); pools
are inside it, do not overlap each other and do not hold the gateway; a fixed IP is inside its
subnet, is not the network (or IPv4 broadcast) address, not the gateway, not the subnet's DHCP
server address and not used twice. Allocation takes the lowest free address of the pools, so
it is reproducible and needs no more than ``len(used) + 1`` steps per pool even for an IPv6 /64.

Pools are ``{"start": ip, "end": ip}`` and host routes ``{"destination": cidr, "nexthop": ip}``,
the JSON Neutron speaks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecloud.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_POOLS = 16
MAX_DNS = 8
MAX_ROUTES = 32


@dataclass(frozen=True)
class Pool:
    """An inclusive range of addresses."""

    start: IPAddress
    end: IPAddress

    def __contains__(self, address: object) -> bool:
        return isinstance(address, type(self.start)) and (
            int(self.start) <= int(address) <= int(self.end)
        )

    def as_json(self) -> dict[str, str]:
        return {"start": str(self.start), "end": str(self.end)}


@dataclass(frozen=True)
class SubnetPlan:
    """A validated subnet, normalized: what services/subnets.py stores."""

    cidr: IPNetwork
    gateway: IPAddress | None
    pools: tuple[Pool, ...]
    dns_nameservers: tuple[IPAddress, ...]
    host_routes: tuple[tuple[IPNetwork, IPAddress], ...]

    @property
    def ip_version(self) -> int:
        return self.cidr.version


def parse_cidr(text: str, ip_version: int | None = None, field: str = "cidr") -> IPNetwork:
    """A network in CIDR notation without host bits, of ``ip_version`` when given."""
    if "/" not in text:
        raise InvalidInput(
            f"{text!r} is not a CIDR such as 10.0.0.0/24 (an address and a prefix length)",
            field=field,
        )
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidInput(f"{text!r} is not a CIDR such as 10.0.0.0/24", field=field) from None
        raise InvalidInput(
            f"{text!r} has host bits set; did you mean {loose}?", field=field
        ) from None
    if ip_version is not None and net.version != ip_version:
        raise InvalidInput(f"{text} is not an IPv{ip_version} network", field=field)
    return net


def parse_address(text: str, field: str, version: int | None = None) -> IPAddress:
    """One IP address (of ``version`` when given)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not an IP address", field=field) from None
    if version is not None and address.version != version:
        raise InvalidInput(f"{text} is not an IPv{version} address", field=field)
    return address


def reserved(net: IPNetwork) -> set[IPAddress]:
    """Addresses of ``net`` no host may have: the network address, and IPv4 broadcast."""
    if net.prefixlen >= net.max_prefixlen - (1 if net.version == 4 else 0):
        return set()  # /31, /32 (RFC 3021) and IPv6 /128 use every address
    found: set[IPAddress] = {net.network_address}
    if net.version == 4:
        found.add(net.broadcast_address)
    return found


def usable_range(net: IPNetwork) -> Pool:
    """The first and last address a host may have in ``net``."""
    skip = reserved(net)
    first = net.network_address + (1 if net.network_address in skip else 0)
    last = net.broadcast_address - (1 if net.version == 4 and net.broadcast_address in skip else 0)
    return Pool(first, last)


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> tuple[Pool, ...]:
    """The whole usable range, less the gateway (as Neutron): one or two pools."""
    whole = usable_range(net)
    if gateway is None or gateway not in whole:
        return (whole,)
    pools = []
    if int(gateway) > int(whole.start):
        pools.append(Pool(whole.start, gateway - 1))
    if int(gateway) < int(whole.end):
        pools.append(Pool(gateway + 1, whole.end))
    return tuple(pools)


def plan_subnet(
    cidr: str,
    ip_version: int = 4,
    gateway_ip: str | None = "auto",
    allocation_pools: Sequence[dict[str, str]] | None = None,
    dns_nameservers: Sequence[str] = (),
    host_routes: Sequence[dict[str, str]] = (),
    others: Iterable[str] = (),
) -> SubnetPlan:
    """Validate a subnet request against the rules; ``others``: CIDRs already on the network.

    ``gateway_ip`` "auto" takes the first usable address (as Neutron), None means no gateway.
    """
    net = parse_cidr(cidr, ip_version)
    for other in others:
        other_net = ipaddress.ip_network(other)
        if other_net.version == net.version and net.overlaps(other_net):
            raise InvalidInput(f"{net} overlaps subnet {other} of the same network", field="cidr")
    gateway = _gateway(net, gateway_ip)
    pools = (
        default_pools(net, gateway)
        if allocation_pools is None
        else _pools(net, gateway, allocation_pools)
    )
    if len(dns_nameservers) > MAX_DNS:
        raise InvalidInput(f"at most {MAX_DNS} DNS servers", field="dns_nameservers")
    dns = tuple(parse_address(d, f"dns_nameservers[{i}]") for i, d in enumerate(dns_nameservers))
    routes = _routes(net, host_routes)
    return SubnetPlan(net, gateway, pools, dns, routes)


def _gateway(net: IPNetwork, gateway_ip: str | None) -> IPAddress | None:
    if gateway_ip is None:
        return None
    if gateway_ip == "auto":
        return usable_range(net).start
    gateway = parse_address(gateway_ip, "gateway_ip", net.version)
    if not inside(gateway, net):
        raise InvalidInput(f"gateway {gateway} is not inside {net}", field="gateway_ip")
    if gateway in reserved(net):
        raise InvalidInput(
            f"gateway {gateway} is the network or broadcast address of {net}", field="gateway_ip"
        )
    return gateway


def _pools(
    net: IPNetwork, gateway: IPAddress | None, raw: Sequence[dict[str, str]]
) -> tuple[Pool, ...]:
    if len(raw) > MAX_POOLS:
        raise InvalidInput(f"at most {MAX_POOLS} allocation pools", field="allocation_pools")
    pools: list[Pool] = []
    usable = usable_range(net)
    for i, item in enumerate(raw):
        where = f"allocation_pools[{i}]"
        start = parse_address(item["start"], f"{where}.start", net.version)
        end = parse_address(item["end"], f"{where}.end", net.version)
        pool = Pool(start, end)
        if int(start) > int(end):
            raise InvalidInput(f"pool {start}-{end} starts after it ends", field=where)
        if start not in usable or end not in usable:
            raise InvalidInput(
                f"pool {start}-{end} is not inside the usable addresses of {net} "
                f"({usable.start}-{usable.end})",
                field=where,
            )
        if gateway is not None and gateway in pool:
            raise InvalidInput(f"pool {start}-{end} holds the gateway {gateway}", field=where)
        for other in pools:
            if int(start) <= int(other.end) and int(other.start) <= int(end):
                raise InvalidInput(
                    f"pool {start}-{end} overlaps pool {other.start}-{other.end}", field=where
                )
        pools.append(pool)
    return tuple(sorted(pools, key=lambda p: int(p.start)))


def _routes(
    net: IPNetwork, raw: Sequence[dict[str, str]]
) -> tuple[tuple[IPNetwork, IPAddress], ...]:
    if len(raw) > MAX_ROUTES:
        raise InvalidInput(f"at most {MAX_ROUTES} host routes", field="host_routes")
    routes = []
    for i, item in enumerate(raw):
        where = f"host_routes[{i}]"
        destination = parse_cidr(item["destination"], net.version, f"{where}.destination")
        nexthop = parse_address(item["nexthop"], f"{where}.nexthop", net.version)
        if not inside(nexthop, net):
            raise InvalidInput(
                f"next hop {nexthop} of route {destination} is not inside {net}", field=where
            )
        routes.append((destination, nexthop))
    return tuple(routes)


def parse_pools(stored: Iterable[dict[str, str]]) -> tuple[Pool, ...]:
    """Pools as stored (already validated) back to ``Pool`` values."""
    return tuple(
        Pool(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])) for p in stored
    )


def first_free(pools: Sequence[Pool], used: Collection[IPAddress]) -> IPAddress | None:
    """The lowest address of ``pools`` not in ``used``, or None when every one is taken."""
    for pool in sorted(pools, key=lambda p: int(p.start)):
        address = pool.start
        while int(address) <= int(pool.end):
            if address not in used:
                return address
            address += 1
    return None


def inside(address: IPAddress, cidr: str | IPNetwork) -> bool:
    """True when ``address`` is in the network (of the same IP version)."""
    net = ipaddress.ip_network(cidr) if isinstance(cidr, str) else cidr
    return address.version == net.version and address in net


def check_fixed_ip(
    address: IPAddress,
    net: IPNetwork,
    gateway: IPAddress | None,
    taken_by_subnet: IPAddress | None = None,
) -> None:
    """Refuse a requested fixed IP that no vNIC may have in ``net`` (InvalidInput)."""
    if not inside(address, net):
        raise InvalidInput(f"{address} is not inside subnet {net}", field="ip_address")
    if address in reserved(net):
        raise InvalidInput(
            f"{address} is the network or broadcast address of {net}", field="ip_address"
        )
    if address == gateway:
        raise InvalidInput(f"{address} is the gateway of subnet {net}", field="ip_address")
    if address == taken_by_subnet:
        raise InvalidInput(
            f"{address} is the DHCP server address of subnet {net}", field="ip_address"
        )


def plan_as_fields(plan: SubnetPlan) -> dict[str, Any]:
    """A plan as the Subnet model's fields (strings and JSON)."""
    return {
        "ip_version": plan.ip_version,
        "cidr": str(plan.cidr),
        "gateway_ip": None if plan.gateway is None else str(plan.gateway),
        "allocation_pools": [p.as_json() for p in plan.pools],
        "dns_nameservers": [str(d) for d in plan.dns_nameservers],
        "host_routes": [
            {"destination": str(dest), "nexthop": str(hop)} for dest, hop in plan.host_routes
        ],
    }
