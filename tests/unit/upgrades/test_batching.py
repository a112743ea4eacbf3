"""The upgrade's order: controllers one at a time with the leader last; hosts in batches of
at most max-parallel that never hold two members of an anti-affinity group or every host of
a chain spread over several (Hypothesis checks the rules on random sites)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.upgrades.batching import HostLoad, controller_order, plan, plan_batches

GROUPS = ("g1", "g2", "g3")
CHAINS = ("c1", "c2", "c3", "c4")


@st.composite
def sites(draw: st.DrawFn) -> list[HostLoad]:
    count = draw(st.integers(0, 24))
    return [
        HostLoad(
            f"n{i:02d}",
            frozenset(draw(st.sets(st.sampled_from(GROUPS), max_size=2))),
            frozenset(draw(st.sets(st.sampled_from(CHAINS), max_size=2))),
        )
        for i in range(count)
    ]


@settings(max_examples=200, deadline=None)
@given(sites(), st.integers(1, 10))
def test_every_host_once_and_no_batch_breaks_a_group_or_a_chain(
    hosts: list[HostLoad], max_parallel: int
) -> None:
    batches = plan_batches(hosts, max_parallel)
    assert sorted(n for b in batches for n in b) == sorted(h.name for h in hosts)
    by_name = {h.name: h for h in hosts}
    spans = {c: {h.name for h in hosts if c in h.chains} for c in CHAINS}
    for batch in batches:
        assert 1 <= len(batch) <= max_parallel
        for group in GROUPS:
            assert sum(group in by_name[n].groups for n in batch) <= 1
        for span in spans.values():
            assert len(span) <= 1 or not span <= set(batch)
    assert len(batches) >= math.ceil(len(hosts) / max_parallel)


@given(st.integers(0, 40), st.integers(1, 10))
def test_unconstrained_hosts_take_the_fewest_batches_in_name_order(
    count: int, max_parallel: int
) -> None:
    hosts = [HostLoad(f"n{i:02d}") for i in range(count)][::-1]
    batches = plan_batches(hosts, max_parallel)
    assert len(batches) == math.ceil(count / max_parallel)
    assert [n for b in batches for n in b] == sorted(h.name for h in hosts)


def test_examples_a_group_and_a_chain_across_two_hosts() -> None:
    hosts = [
        HostLoad("a", groups=frozenset({"dns"})),
        HostLoad("b", groups=frozenset({"dns"})),
        HostLoad("c", chains=frozenset({"acme"})),
        HostLoad("d", chains=frozenset({"acme"})),
        HostLoad("e", chains=frozenset({"solo"})),  # a chain on one host goes with it
    ]
    assert plan_batches(hosts, 5) == (("a", "c", "e"), ("b", "d"))
    assert plan_batches(hosts, 1) == (("a",), ("b",), ("c",), ("d",), ("e",))
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(hosts, 0)


def test_controllers_followers_first_the_leader_last() -> None:
    assert controller_order(["b:2/y", "a:1/x", "c:3/z"], "a:1/x") == ("b:2/y", "c:3/z", "a:1/x")
    assert controller_order(["a:1/x"], None) == ("a:1/x",)
    whole = plan(["a", "b"], "a", [HostLoad("n1"), HostLoad("n2")], 2)
    assert (whole.controllers, whole.batches) == (("b", "a"), (("n1", "n2"),))
