"""The simulated nodes' source addresses: one per node by default, as in the field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edgecloud.gateway.admission import Protection
from edgecloud.sim import anonymous
from edgecloud.sim.fleet import Fleet, source_addresses


def _fleet(nodes: int, workers: int, sources: int | None) -> Fleet:
    dirs = [Path(f"/nodes/sim-{i:05d}") for i in range(nodes)]
    return Fleet(Path("/state"), dirs, workers, sources, protection=True)


def test_by_default_every_node_dials_from_its_own_address() -> None:
    fleet = _fleet(20000, 8, None)
    every = [a for k in range(8) for a in fleet.sources_of(k)]
    assert len(every) == 20000
    per_source = Counter(every)
    # a storm reconnects every node at once: none may meet the gateway's per-source bound
    # on connections not authenticated yet (gateway/preauth.py), which real nodes never do
    assert max(per_source.values()) == 1 < Protection().preauth_per_source


def test_a_given_number_of_addresses_is_shared_round_the_fleet() -> None:
    fleet = _fleet(10, 3, 2)
    assert fleet.sources_of(0) == ["127.1.1.1", "127.1.1.2", "127.1.1.1", "127.1.1.2"]  # 0 3 6 9
    assert fleet.sources_of(1) == ["127.1.1.2", "127.1.1.1", "127.1.1.2"]  # nodes 1 4 7


def test_addresses_are_loopback_apart_from_the_controller_and_the_anonymous_peers() -> None:
    addresses = source_addresses(70000)
    assert len(set(addresses)) == 70000
    assert addresses[:2] == ["127.1.1.1", "127.1.1.2"]
    assert addresses[254] == "127.1.2.1" and addresses[254 * 254] == "127.2.1.1"
    for address in addresses:
        octets = [int(o) for o in address.split(".")]
        assert octets[0] == 127 and octets[1] >= 1 and all(1 <= o <= 254 for o in octets[1:])
    assert not set(addresses) & {"127.0.0.1", *anonymous.sources(55)}


def test_a_count_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        source_addresses(0)
