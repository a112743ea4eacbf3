"""Unit tests of the OVS network driver's pure parts (drivers/network/ovs.py): no OVS, no root.

Port names, OVSDB JSON parsing, command error mapping and input checks; the driver against a
real Open vSwitch is tested in tests/e2e/test_ovs_network.py and test_ovs_conformance.py.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

import pytest

from edgecloud.chains import planning
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import (
    OFPORT_COUNT,
    OFPORT_FIRST,
    OvsNetworkDriver,
    _renamed,
    _tables,
    default_datapath_type,
    dhcp_mac,
    dhcp_namespace,
    dhcp_port_name,
    ofport_for,
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
    names = {port_name_for(i, 0, "br-int") for i in sequential}
    assert len(names) == 10
    instance = str(uuid.uuid4())
    assert port_name_for(instance, 3, "br-int") == port_name_for(instance, 3, "br-int")
    longest = port_name_for(instance, 999, "br-int")
    assert len(longest) == 15 and longest.startswith("ec")


def test_machine_global_names_differ_per_node_and_stay_short() -> None:
    """Two nodes on one machine (or a VNF's two copies during a migration between them)
    never share a device, port or namespace name; each name is the same after a restart."""
    instance, network = str(uuid.uuid4()), str(uuid.uuid4())
    n1, n2 = "ecn1-site", "ecn2-site"
    assert port_name_for(instance, 0, n1) != port_name_for(instance, 0, n2)
    assert OvsNetworkDriver(Path("/x"), bridge=n1).vnic_port(instance, 0) == port_name_for(
        instance, 0, n1
    )
    assert dhcp_port_name(network, n1) != dhcp_port_name(network, n2)
    assert len(dhcp_port_name(network, n1)) <= 15
    assert dhcp_namespace(network, n1) != dhcp_namespace(network, n2)
    assert dhcp_namespace(network, n1).startswith("ec-dhcp-")


def test_default_bridge_names_are_those_before_nodes_shared_a_machine() -> None:
    """An upgraded agent on br-int must find the ports of VMs that kept running."""
    instance, network = "3f2b8c1e-0000-4000-8000-000000000001", "net-1"
    assert port_name_for(instance, 2, "br-int") == (
        "ec" + hashlib.sha256(instance.encode()).hexdigest()[:10] + "2"
    )
    assert dhcp_port_name(network, "br-int") == (
        "ecdh" + hashlib.sha256(network.encode()).hexdigest()[:10]
    )
    assert dhcp_namespace(network, "br-int") == "ec-dhcp-net-1"


def test_dhcp_mac_is_the_same_on_every_node_and_unicast() -> None:
    network = str(uuid.uuid4())
    mac = dhcp_mac(network)
    assert mac == dhcp_mac(network) != dhcp_mac(str(uuid.uuid4()))
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    assert not mac.startswith("52:54:00")  # never a vNIC's


@pytest.mark.parametrize("index", [-1, 1000])
def test_port_name_index_out_of_range(index: int) -> None:
    with pytest.raises(DriverError, match="out of range"):
        port_name_for("x", index, "br-int")


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


@pytest.mark.parametrize("uplink", ["", "way-too-long-uplink-name", "bad name"])
def test_uplink_must_be_an_interface_name(uplink: str) -> None:
    with pytest.raises(DriverError, match="uplink name"):
        OvsNetworkDriver(Path("/x"), bridge="ecn1-x", uplink=uplink)


def test_dhcp_guard_flows_keep_the_dhcp_mac_off_the_uplink() -> None:
    """Only the node's own DHCP port may send from the DHCP MAC; frames to it arriving on
    the uplink are dropped (another node's DHCP server is not ours)."""
    mac = dhcp_mac("net-1")
    single = OvsNetworkDriver(Path("/x"), bridge="br-int")._dhcp_guard_flows("ecdhp", mac)
    assert any(f"in_port=ecdhp,dl_src={mac},actions=NORMAL" in flow for flow in single)
    assert any(flow.endswith(f"priority=200,dl_src={mac},actions=drop") for flow in single)
    node = OvsNetworkDriver(Path("/x"), bridge="ecn1-x", uplink="ecn1-x-up")
    flows = node._dhcp_guard_flows("ecdhp", mac)
    assert any(f"in_port=ecn1-x-up,dl_dst={mac},actions=drop" in flow for flow in flows)
    assert len(flows) == len(single) + 1


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


def test_a_port_without_its_device_yet_is_steered_by_its_requested_number(tmp_path: Path) -> None:
    """A VNF migrating in: its ports are in OVSDB, their taps not yet; its flows name the
    OpenFlow port number each port asked for, so the bundle commits before the guest arrives."""
    driver = OvsNetworkDriver(tmp_path, bridge="br-x", uplink="up0")
    flows = {"cust0": ["p1", "vlan:3001"], "p1": "cust0", "vlan:3002": "p1"}
    number = ofport_for("p1")
    assert OFPORT_FIRST <= number < OFPORT_FIRST + OFPORT_COUNT and number == ofport_for("p1")
    wanted = driver._resolve(planning.from_wire(flows), {"cust0", "p1"}, {"p1": number})
    assert wanted["in_port=cust0"][1] == (
        f"output:{number},push_vlan:0x8100,mod_vlan_vid:3001,output:up0"
    )
    assert wanted[f"in_port={number}"][1] == "output:cust0"
    assert wanted["in_port=up0,dl_vlan=3002"][1] == f"output:{number}"


def test_renaming_a_port_leaves_ports_that_share_its_prefix() -> None:
    assert _renamed("in_port=p10", "p1", 7) == "in_port=p10"
    assert _renamed("output:p1,output:p10", "p1", 7) == "output:7,output:p10"
    assert _renamed("in_port=p1,dl_vlan=5", "p1", 7) == "in_port=7,dl_vlan=5"
