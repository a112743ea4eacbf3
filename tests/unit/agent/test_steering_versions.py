"""agent/applying.py ``steer`` with steering-only messages (protocol/steering.py) and
snapshots on one node (fake drivers): the highest version steered wins, whichever form it
came in; a message older than the snapshot steered is skipped (also by the resync that
follows); the same flows twice commit nothing; a node that never got the message converges
from the snapshot; the ack (applied_version) comes from the snapshot alone. ``steer_chain``:
one chain's change lands over the table last committed (only its flows, one bundle), only
when that table holds its ``before`` and no whole table of its version was steered; changes
of two chains land in either order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.agent.applying import Applier
from edgecloud.agent.image_cache import ImageCache
from edgecloud.drivers.compute.fake import FakeComputeDriver
from edgecloud.drivers.network.fake import FakeNetworkDriver
from edgecloud.protocol.desired import DesiredState, read

OLD = {"cust0": "net0", "net0": "cust0"}  # the old path (no service)
NEW = {"cust0": "vlan:3001", "vlan:3002": "cust0", "net0": "cust0"}  # the new path


class _NoFetch:
    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        raise AssertionError("no image in these snapshots")


def _node(tmp_path: Path) -> tuple[Applier, FakeNetworkDriver]:
    network = FakeNetworkDriver()
    network.extra_ports.update({"cust0", "net0"})
    return Applier(
        FakeComputeDriver(), network, tmp_path, ImageCache(tmp_path / "i", _NoFetch())
    ), network


def _snapshot(version: int, flows: dict[str, Any]) -> DesiredState:
    return read(
        {"version": version, "host": "n1", "networks": [], "instances": [], "steering": flows}
    )


def _message(version: int, flows: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """What agent/connection.py hands the agent for a ``steer`` message."""
    return version, flows


def _table(network: FakeNetworkDriver) -> dict[str, tuple[str, ...]]:
    return dict(network.steering)


async def test_the_message_steers_ahead_and_its_snapshot_commits_nothing(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(1, OLD)) == []
    bundles = len(network.bundles)
    await node.steer(*_message(2, NEW))
    assert _table(network) == {"cust0": ("vlan:3001",), "vlan:3002": ("cust0",), "net0": ("cust0",)}
    assert len(network.bundles) == bundles + 1
    assert node.last_steer["version"] == 2 and node.applied_version == 1  # not acked by it
    await node.steer(*_message(2, NEW))  # twice: nothing to commit
    assert await node.apply(_snapshot(2, NEW)) == []  # its snapshot: steers (no-op), acks
    assert len(network.bundles) == bundles + 1
    assert node.applied_version == 2


async def test_an_older_message_never_overrides_a_newer_snapshot(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(5, NEW)) == []
    await node.steer(*_message(4, OLD))  # late: a snapshot of version 5 was steered
    assert _table(network)["cust0"] == ("vlan:3001",)
    assert await node.resync() == []
    assert _table(network)["cust0"] == ("vlan:3001",)


async def test_an_older_snapshot_never_overrides_a_newer_message(tmp_path: Path) -> None:
    """The snapshot of version 1 was already on its way when the switch to 2 was steered:
    applying it (and the resync in it) keeps the flows of 2 until the snapshot of 2."""
    node, network = _node(tmp_path)
    await node.steer(*_message(2, NEW))
    assert await node.apply(_snapshot(1, OLD)) == []
    assert _table(network)["cust0"] == ("vlan:3001",) and node.applied_version == 1
    assert await node.apply(_snapshot(3, OLD)) == []  # a newer snapshot wins
    assert _table(network) == {"cust0": ("net0",), "net0": ("cust0",)}


async def test_a_node_that_missed_the_message_converges_from_the_snapshot(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(1, OLD)) == []
    assert await node.apply(_snapshot(2, NEW)) == []
    assert _table(network) == {"cust0": ("vlan:3001",), "vlan:3002": ("cust0",), "net0": ("cust0",)}
    assert node.applied_version == 2


# one chain's change (``steer_chain``) over the table last committed --------------------------
OTHER = {"cust9": "net9", "net9": "cust9"}  # another chain's flows on the node: never touched
MIDDLE = {"cust0": "vnic:i-1:0", "vnic:i-1:1": "net0", "net0": "vnic:i-1:1", "vnic:i-1:0": "cust0"}


async def test_a_chain_change_lands_over_the_table_in_one_bundle(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    network.extra_ports.update({"cust9", "net9"})
    assert await node.apply(_snapshot(1, OLD | OTHER)) == []
    bundles = len(network.bundles)
    assert await node.steer_chain(2, OLD, NEW)
    assert _table(network) == {
        "cust0": ("vlan:3001",),
        "vlan:3002": ("cust0",),
        "net0": ("cust0",),
        "cust9": ("net9",),
        "net9": ("cust9",),
    }
    assert len(network.bundles) == bundles + 1
    change = network.bundles[-1]
    assert set(change.put) == {"cust0", "vlan:3002"} and change.remove == ()  # only the chain's
    assert node.last_steer["version"] == 2 and node.applied_version == 1  # not acked by it
    assert await node.apply(_snapshot(2, NEW | OTHER)) == []  # its snapshot: nothing left to do
    assert len(network.bundles) == bundles + 1 and node.applied_version == 2


async def test_a_chain_change_leaves_what_it_removes_out(tmp_path: Path) -> None:
    """The chain's ``before`` keys that ``after`` does not have go (the retire phase)."""
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(1, NEW)) == []
    assert await node.steer_chain(2, NEW, OLD)
    assert _table(network) == {"cust0": ("net0",), "net0": ("cust0",)}
    assert network.bundles[-1].remove == ("vlan:3002",)


async def test_a_chain_change_not_from_this_table_waits_for_the_snapshot(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(1, OLD)) == []
    bundles = len(network.bundles)
    assert not await node.steer_chain(2, MIDDLE, NEW)  # computed from flows this node lacks
    assert not await node.steer_chain(2, {**OLD, "cust0": "vlan:3009"}, NEW)  # other output
    assert _table(network) == {"cust0": ("net0",), "net0": ("cust0",)}
    assert len(network.bundles) == bundles
    assert await node.apply(_snapshot(2, NEW)) == []  # the snapshot carries it
    assert _table(network)["cust0"] == ("vlan:3001",)


async def test_a_chain_change_needs_a_table_steered_first(tmp_path: Path) -> None:
    """A restarted agent knows no committed table until it steers a snapshot."""
    node, network = _node(tmp_path)
    assert not await node.steer_chain(2, {}, NEW)
    assert _table(network) == {} and network.bundles == []


async def test_a_chain_change_a_whole_table_holds_already_is_skipped(tmp_path: Path) -> None:
    node, network = _node(tmp_path)
    assert await node.apply(_snapshot(3, NEW)) == []
    assert not await node.steer_chain(3, OLD, NEW)  # the snapshot of its version was steered
    assert not await node.steer_chain(2, NEW, OLD)  # late: older than that snapshot
    assert _table(network)["cust0"] == ("vlan:3001",)


async def test_changes_of_two_chains_land_in_either_order(tmp_path: Path) -> None:
    """Chain 9's change (version 3) arrives before chain 0's (version 2): both land; the
    snapshot of version 2, late, does not undo chain 9's; the snapshot of 3 is the truth."""
    node, network = _node(tmp_path)
    network.extra_ports.update({"cust9", "net9"})
    assert await node.apply(_snapshot(1, OLD)) == []
    assert await node.steer_chain(3, {}, OTHER)
    assert await node.steer_chain(2, OLD, NEW)
    both = {"cust0": ("vlan:3001",), "vlan:3002": ("cust0",), "net0": ("cust0",)}
    assert _table(network) == both | {"cust9": ("net9",), "net9": ("cust9",)}
    assert await node.apply(_snapshot(2, NEW)) == []  # older than a change steered: skipped
    assert _table(network) == both | {"cust9": ("net9",), "net9": ("cust9",)}
    assert await node.apply(_snapshot(3, NEW)) == []  # the truth: chain 9 is not in it
    assert _table(network) == both
