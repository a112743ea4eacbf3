"""Unit tests of the OVS network driver's pure parts (drivers/network/ovs.py): no OVS, no root.

Port names, OVSDB JSON parsing, command error mapping and input checks; the driver against a
real Open vSwitch is tested in tests/e2e/test_ovs_network.py and test_ovs_conformance.py.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from edgecloud.chains import planning
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import (
    OvsNetworkDriver,
    _tables,
    default_datapath_type,
    port_name_for,
    run_command,
)
from edgecloud.errors import DriverError

# What `ovs-vsctl --format=json -- --columns=ports list Bridge B -- ... list Port -- ... list
# Interface` printed on OVS 3.1: one table per line.
VSCTL_OUTPUT = """\
{"data":[[["set",[["uuid","p1"],["uuid","p2"]]]]],"headings":["ports"]}
{"data":[[["uuid","p1"],"ecq1",55,["uuid","i1"]],[["uuid","p2"],"br",["set",[]],["uuid","i2"]]],\
"headings":["_uuid","name","tag","interfaces"]}
{"data":[[["uuid","i1"],"ecq1",["map",[["vm-uuid","abc"]]]],[["uuid","i2"],"br",["map",[]]]],\
"headings":["_uuid","name","external_ids"]}
"""


def test_port_names_are_stable_short_and_distinct() -> None:
    sequential = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(10)]
    names = {port_name_for(i, 0) for i in sequential}
    assert len(names) == 10
    instance = str(uuid.uuid4())
    assert port_name_for(instance, 3) == port_name_for(instance, 3)
    assert len(port_name_for(instance, 999)) == 15 and port_name_for(instance, 0).startswith("ec")


@pytest.mark.parametrize("index", [-1, 1000])
def test_port_name_index_out_of_range(index: int) -> None:
    with pytest.raises(DriverError, match="out of range"):
        port_name_for("x", index)


def test_vsctl_tables_decode_sets_maps_and_uuids() -> None:
    bridges, ports, interfaces = _tables(VSCTL_OUTPUT)
    assert bridges == [{"ports": ["p1", "p2"]}]
    assert ports[0] == {"_uuid": "p1", "name": "ecq1", "tag": 55, "interfaces": "i1"}
    assert ports[1]["tag"] == []
    assert interfaces[0]["external_ids"] == {"vm-uuid": "abc"}


async def test_failed_command_is_one_sentence_with_its_stderr() -> None:
    script = "import sys; sys.stderr.write('first line.\\nsecond line\\n'); sys.exit(3)"
    with pytest.raises(DriverError, match=r"^could not do it: first line; second line$"):
        await run_command([sys.executable, "-c", script], "do it")


async def test_missing_binary_and_hung_command_are_driver_errors() -> None:
    with pytest.raises(DriverError, match="cannot run /nonexistent/ovs-vsctl"):
        await run_command(["/nonexistent/ovs-vsctl"], "list ports")
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(DriverError, match=r"gave no answer in 0\.2 s"):
        await run_command(hang, "wait", limit=0.2)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (NetworkSpec("t", "i", "vxlan", 5000), "supports flat, vlan"),
        (NetworkSpec("f", "i", "flat", None), "needs a VLAN id 1-4094"),
        (NetworkSpec("v", "i", "vlan", 4095), "needs a VLAN id 1-4094"),
    ],
)
async def test_networks_need_a_supported_kind_and_a_vlan(
    tmp_path: Path, network: NetworkSpec, message: str
) -> None:
    driver = OvsNetworkDriver(tmp_path, bridge="ect-unit")
    with pytest.raises(DriverError, match=message):
        await driver.ensure_network(network)


def test_datapath_defaults_to_the_host_and_can_be_forced(tmp_path: Path) -> None:
    assert default_datapath_type() in ("netdev", "system")
    assert OvsNetworkDriver(tmp_path).datapath_type == default_datapath_type()
    assert OvsNetworkDriver(tmp_path, datapath_type="system").datapath_type == "system"
    assert OvsNetworkDriver(tmp_path).capabilities.openflow_bundles


async def test_steering_bundle_pushes_and_pops_hop_tags(tmp_path: Path) -> None:
    """What one chain bundle says to OVS for a node with an uplink: local outputs first, a
    tagged copy pushed out the uplink, tagged arrivals popped; a node without uplink leaves
    the tagged parts out."""
    driver = OvsNetworkDriver(tmp_path, bridge="br-x", uplink="up0")
    sent: list[str] = []

    async def ofctl(what: str, *args: str, stdin: str | None = None) -> str:
        sent.extend((stdin or "").splitlines())
        return ""

    driver._ofctl = ofctl  # type: ignore[method-assign]
    flows = {"cust0": ["p1", "vlan:3001"], "vlan:3002": "cust0"}
    wanted = driver._resolve(planning.from_wire(flows), {"cust0", "p1"})
    assert await driver._commit_steering({}, wanted) == 2
    assert sent[0].endswith(
        "priority=300,in_port=cust0,actions=output:p1,push_vlan:0x8100,mod_vlan_vid:3001,output:up0"
    )
    assert sent[1].endswith("priority=300,in_port=up0,dl_vlan=3002,actions=strip_vlan,output:cust0")
    assert await driver._commit_steering(driver._steered or {}, wanted) == 0  # nothing changed
    lone = OvsNetworkDriver(tmp_path, bridge="br-x")  # no uplink: only the local output stays
    alone = lone._resolve(planning.from_wire(flows), {"cust0", "p1"})
    assert {match: actions for match, (_, actions) in alone.items()} == {
        "in_port=cust0": "output:p1"
    }
    with pytest.raises(DriverError, match="uplink name"):
        OvsNetworkDriver(tmp_path, bridge="br-x", uplink="not a name")
