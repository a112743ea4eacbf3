"""The site switch's names (allinone/fabric.py): short enough for an interface, distinct per
site and per node, stable for a state folder; a site has 1 to 8 nodes. The switch against a
real Open vSwitch is tested in tests/e2e/test_site_fabric.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.allinone.fabric import MAX_NODES, Fabric, FabricError, site_short


def test_names_fit_an_interface_and_never_repeat() -> None:
    fabric = Fabric(site_short(Path("/var/lib/site-a")), MAX_NODES)
    names = fabric.bridges() + [
        port for i in range(1, MAX_NODES + 1) for port in (fabric.uplink(i), fabric.downlink(i))
    ]
    assert len(set(names)) == len(names) == 1 + 3 * MAX_NODES
    assert all(len(name) <= 15 for name in names)
    assert fabric.switch.startswith("ecsw-") and fabric.node_bridge(2).startswith("ecn2-")


def test_the_short_name_is_per_state_folder_and_stable() -> None:
    assert site_short(Path("/var/lib/site-a")) == site_short(Path("/var/lib/site-a"))
    assert site_short(Path("/var/lib/site-a")) != site_short(Path("/var/lib/site-b"))


@pytest.mark.parametrize("nodes", [0, MAX_NODES + 1])
def test_node_count_is_bounded(nodes: int) -> None:
    with pytest.raises(FabricError, match="1 to 8 nodes"):
        Fabric("abcdef", nodes)
