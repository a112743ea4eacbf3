"""Properties of the pure address rules (services/addressing.py), checked with Hypothesis."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecloud.errors import InvalidInput
from edgecloud.services import addressing

prefixes_v4 = st.integers(min_value=8, max_value=30)
prefixes_v6 = st.integers(min_value=64, max_value=126)


@st.composite
def networks(draw: st.DrawFn) -> addressing.IPNetwork:
    if draw(st.booleans()):
        prefix = draw(prefixes_v4)
        base = draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix)
        return ipaddress.IPv4Network((base, prefix))
    prefix = draw(prefixes_v6)
    base = draw(st.integers(0, 2**128 - 1)) >> (128 - prefix) << (128 - prefix)
    return ipaddress.IPv6Network((base, prefix))


@st.composite
def subnet_with_pools(draw: st.DrawFn) -> tuple[addressing.SubnetPlan, set[addressing.IPAddress]]:
    """A valid plan (pools cut from the usable range at random points) and some used ones."""
    net = draw(networks())
    usable = addressing.usable_range(net)
    span = min(int(usable.end) - int(usable.start), 64)
    cuts = sorted(draw(st.sets(st.integers(0, span), min_size=2, max_size=8)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    pools = [
        {"start": str(usable.start + a), "end": str(usable.start + b)} for a, b in pairs if a <= b
    ]
    plan = addressing.plan_subnet(str(net), net.version, None, pools)
    used = {usable.start + i for i in draw(st.sets(st.integers(0, span), max_size=40))}
    return plan, used


@given(subnet_with_pools())
def test_first_free_is_in_a_pool_unused_and_the_lowest(
    case: tuple[addressing.SubnetPlan, set[addressing.IPAddress]],
) -> None:
    plan, used = case
    found = addressing.first_free(plan.pools, used)
    free = [a for p in plan.pools for a in _addresses(p) if a not in used]
    if found is None:
        assert free == []
    else:
        assert found not in used and any(found in p for p in plan.pools)
        assert found == min(free, key=int)
        assert found not in addressing.reserved(plan.cidr)


@given(subnet_with_pools())
def test_allocating_until_full_hands_out_every_pool_address_once(
    case: tuple[addressing.SubnetPlan, set[addressing.IPAddress]],
) -> None:
    plan, used = case
    given_out: list[addressing.IPAddress] = []
    taken = set(used)
    while (address := addressing.first_free(plan.pools, taken)) is not None:
        given_out.append(address)
        taken.add(address)
    assert len(given_out) == len(set(given_out))
    assert set(given_out) == {a for p in plan.pools for a in _addresses(p)} - used


@given(networks(), st.booleans())
def test_default_pools_cover_the_usable_range_less_the_gateway(
    net: addressing.IPNetwork, with_gateway: bool
) -> None:
    plan = addressing.plan_subnet(str(net), net.version, "auto" if with_gateway else None)
    usable = addressing.usable_range(net)
    assert plan.gateway == (usable.start if with_gateway else None)
    size = sum(int(p.end) - int(p.start) + 1 for p in plan.pools)
    assert size == int(usable.end) - int(usable.start) + 1 - (1 if with_gateway else 0)
    for pool in plan.pools:
        assert plan.gateway not in pool
        assert pool.start in net and pool.end in net
        assert not addressing.reserved(net) & {pool.start, pool.end}


@given(networks(), networks())
def test_overlapping_subnets_on_one_network_are_refused(
    a: addressing.IPNetwork, b: addressing.IPNetwork
) -> None:
    if a.version == b.version and a.overlaps(b):  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="overlaps"):
            addressing.plan_subnet(str(b), b.version, None, None, (), (), [str(a)])
    else:
        addressing.plan_subnet(str(b), b.version, None, None, (), (), [str(a)])


@given(networks(), st.integers(0, 2**128 - 1))
def test_a_fixed_ip_is_accepted_only_inside_and_not_reserved(
    net: addressing.IPNetwork, raw: int
) -> None:
    address = ipaddress.ip_address(raw % (2 ** (32 if net.version == 4 else 128)))
    gateway = addressing.usable_range(net).start
    ok = address in net and address not in addressing.reserved(net) and address != gateway
    if ok:
        addressing.check_fixed_ip(address, net, gateway)
    else:
        with pytest.raises(InvalidInput):
            addressing.check_fixed_ip(address, net, gateway)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"cidr": "10.0.0.5/24"}, "cidr", "host bits"),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.0"}, "gateway_ip", "network or broadcast"),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "2001:db8::1"}, "gateway_ip", "not an IPv4"),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.9", "end": "10.0.0.5"}]},
            "allocation_pools[0]",
            "starts after",
        ),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.9", "end": "10.0.1.5"}]},
            "allocation_pools[0]",
            "not inside",
        ),
        ({"cidr": "10.0.0.0/24", "dns_nameservers": ["dns.example"]}, "dns_nameservers[0]", "not"),
    ],
)
def test_bad_subnets_name_the_field(kwargs: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as caught:
        addressing.plan_subnet(**kwargs)
    assert caught.value.field == field


def _addresses(pool: addressing.Pool) -> list[addressing.IPAddress]:
    return [pool.start + i for i in range(int(pool.end) - int(pool.start) + 1)]
