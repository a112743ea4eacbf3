"""E2E: chain steering bundles over the persistent OpenFlow connection (drivers/network/
openflow.py) on a real Open vSwitch: the switch ends up with exactly what ovs-ofctl installs
from the same lines, a rejected flow changes nothing, ovs-ofctl commits when there is no
connection, and the connection is made again after the switch dropped it.

Needs root and a running OVS (scripts/bootstrap-host). Two per-run bridges ``ect<hex>`` and
``ect<hex>o`` (the ovs-ofctl twin), each with three internal ports at the same OpenFlow port
numbers; both deleted in finalizers. No traffic is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecloud.drivers.network.openflow import BundleConnection, socket_path
from edgecloud.drivers.network.ovs import (
    STEERING_COOKIE_BASE,
    STEERING_COOKIE_MASK,
    OvsNetworkDriver,
)
from edgecloud.errors import DriverError
from tests.e2e.ovs_support import delete_bridge, new_run_id, sh, skip_without_ovs

pytestmark = pytest.mark.e2e

PORTS = {"a": 11, "b": 12, "u": 13}  # suffix -> OpenFlow port number, the same on both bridges


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs() -> None:
    skip_without_ovs()


async def _make_bridge(name: str) -> None:
    await sh(
        "ovs-vsctl", "--timeout=10", "add-br", name, "--",
        "set", "bridge", name, "datapath_type=netdev", "fail_mode=secure",
        "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15",
    )  # fmt: skip
    for suffix, number in PORTS.items():
        await sh(
            "ovs-vsctl", "--timeout=10", "add-port", name, f"{name}{suffix}", "--",
            "set", "interface", f"{name}{suffix}", "type=internal", f"ofport_request={number}",
        )  # fmt: skip


@pytest.fixture
async def bridges() -> AsyncIterator[tuple[str, str]]:
    """(bridge steered over OpenFlow, its twin steered with ovs-ofctl)."""
    name = f"ect{new_run_id()}"
    try:
        await _make_bridge(name)
        await _make_bridge(f"{name}o")
        yield name, f"{name}o"
    finally:
        delete_bridge(name)
        delete_bridge(f"{name}o")


@pytest.fixture
async def driver(tmp_path: Path, bridges: tuple[str, str]) -> AsyncIterator[OvsNetworkDriver]:
    driver = OvsNetworkDriver(tmp_path, bridge=bridges[0], uplink=f"{bridges[0]}u")
    try:
        yield driver
    finally:
        await driver.close()


async def _chain_flows(bridge: str) -> list[str]:
    _, out, _ = await sh(
        "ovs-ofctl", "-O", "OpenFlow14", "--no-stats", "dump-flows", bridge,
        f"cookie={STEERING_COOKIE_BASE:#x}/{STEERING_COOKIE_MASK:#x}",
    )  # fmt: skip
    return sorted(line.strip() for line in out.splitlines() if "cookie=" in line)


def _recording(driver: OvsNetworkDriver) -> list[list[str]]:
    """Records the lines of every bundle the driver sends over its OpenFlow connection."""
    sent: list[list[str]] = []
    commit = driver._openflow.commit

    async def record(lines: list[str]) -> None:
        await commit(lines)
        sent.append(list(lines))

    driver._openflow.commit = record  # type: ignore[method-assign]
    return sent


async def test_steering_over_openflow_installs_what_ovs_ofctl_installs(
    driver: OvsNetworkDriver, bridges: tuple[str, str]
) -> None:
    ours, twin = bridges
    sent = _recording(driver)
    a, b = f"{ours}a", f"{ours}b"
    paths = [
        {a: [b, "vlan:3001"], "vlan:3002": b, b: a},  # across nodes: push and pop
        {a: b, b: a},  # a switch: one re-pointed, one removed
        {a: [b, "vlan:3003"], "vlan:3004": a},
    ]
    for flows in paths:
        assert await driver.apply_steering(flows, fresh=False) > 0
        lines = [line.replace(ours, twin) for line in sent[-1]]
        await sh("ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", twin, "-",
                 stdin="\n".join(lines) + "\n")  # fmt: skip
        assert await _chain_flows(ours) == await _chain_flows(twin) != []
    assert len(sent) == len(paths) and driver._openflow.connects == 1
    assert driver._openflow_down is None
    assert await driver.steering() == driver._steered  # what the switch holds is what we think


async def test_a_rejected_flow_changes_nothing_and_says_why(
    driver: OvsNetworkDriver, bridges: tuple[str, str]
) -> None:
    ours, _ = bridges
    await driver.apply_steering({f"{ours}a": f"{ours}b", f"{ours}b": f"{ours}a"}, fresh=False)
    before = await _chain_flows(ours)
    good = f"add cookie={STEERING_COOKIE_BASE | 1:#x},priority=300,in_port={ours}u,actions=output:{ours}a"
    bad = f"add cookie={STEERING_COOKIE_BASE | 2:#x},priority=300,in_port={ours}a,actions=output:65290"
    remove = f"delete_strict priority=300,in_port={ours}b"
    with pytest.raises(DriverError, match=r"could not test.*output:65290.*OFPBAC_BAD_OUT_PORT"):
        await driver._bundle("test", [remove, good, bad])
    assert await _chain_flows(ours) == before  # not the delete, not the good add
    await driver._bundle("test", [remove, good])  # the connection still serves
    after = await _chain_flows(ours)
    assert len(after) == len(before) and after != before
    assert driver._openflow.connects == 1


async def test_without_the_openflow_socket_ovs_ofctl_commits(
    tmp_path: Path, bridges: tuple[str, str]
) -> None:
    ours, _ = bridges
    driver = OvsNetworkDriver(tmp_path, bridge=ours, uplink=f"{ours}u")
    driver._openflow.path = tmp_path / "no-vswitchd-here" / f"{ours}.mgmt"
    try:
        flows = {f"{ours}a": f"{ours}b", f"{ours}b": f"{ours}a"}
        assert await driver.apply_steering(flows, fresh=False) == 2
        assert driver._openflow_down is not None and "no-vswitchd-here" in driver._openflow_down
        assert driver._openflow.connects == 0
        assert len(await _chain_flows(ours)) == 2
        with pytest.raises(DriverError, match=r"OFPBAC_BAD_OUT_PORT|65290"):
            await driver._bundle("test", [f"add priority=300,in_port={ours}a,actions=output:65290"])
        assert len(await _chain_flows(ours)) == 2
    finally:
        await driver.close()


async def test_the_connection_is_made_again_after_the_switch_dropped_it(
    bridges: tuple[str, str],
) -> None:
    ours, _ = bridges
    connection = BundleConnection(socket_path(ours), 10.0)
    line = f"add cookie={STEERING_COOKIE_BASE | 5:#x},priority=300,in_port={ours}a,actions=output:{ours}b"
    try:
        await connection.commit([line])
        delete_bridge(ours)  # as a vswitchd restart: the socket and the connection go
        await _make_bridge(ours)
        assert await _chain_flows(ours) == []
        await connection.commit([line])
        assert len(await _chain_flows(ours)) == 1 and connection.connects == 2
    finally:
        connection.close()


async def test_a_resync_reads_the_switch_only_when_it_may_have_lost_the_flows(
    driver: OvsNetworkDriver, bridges: tuple[str, str]
) -> None:
    """While the OpenFlow connection the flows were committed over stays open, a fresh
    steer (the agent's resync) commits against what it committed, running no process; once
    the switch dropped it (a vswitchd restart loses every flow) the next one reads the switch
    and puts the flows back."""
    ours, _ = bridges
    flows = {f"{ours}a": f"{ours}b", f"{ours}b": f"{ours}a"}
    assert await driver.apply_steering(flows, fresh=True) == 2
    commands: list[str] = []
    run_ofctl, run_vsctl = driver._ofctl, driver._vsctl

    async def ofctl(what: str, *args: str, stdin: str | None = None) -> str:
        commands.append(what)
        return await run_ofctl(what, *args, stdin=stdin)

    async def vsctl(what: str, *args: str) -> str:
        commands.append(what)
        return await run_vsctl(what, *args)

    driver._ofctl, driver._vsctl = ofctl, vsctl  # type: ignore[method-assign]
    assert await driver.apply_steering(flows, fresh=True) == 0
    assert commands == [] and len(await _chain_flows(ours)) == 2

    delete_bridge(ours)  # as a vswitchd restart: the flows and the connection go
    await _make_bridge(ours)
    assert await _chain_flows(ours) == []
    assert await driver.apply_steering(flows, fresh=True) == 2
    assert any("dump the chain flows" in c for c in commands)
    assert len(await _chain_flows(ours)) == 2 and driver._openflow.connects == 2
