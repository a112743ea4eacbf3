"""drivers/network/openflow.py encodes what ovs-ofctl encodes, and refuses what it cannot encode.

The comparison runs ``ovs-ofctl`` offline (no switch): ``parse-flow`` shows how ovs-ofctl
encodes a flow for OpenFlow 1.4, ``ofp-print`` decodes our bytes; both print the same text.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from edgecloud.drivers.network import openflow
from edgecloud.drivers.network.openflow import FlowSyntaxError, encode_flow_mod, parse_line

needs_ofctl = pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl")

# the flows ovs.py's chain steering writes (ports by number), and a few more of the subset
FLOWS = [
    "cookie=0xec5e000000000012,priority=300,in_port=5,actions=output:7",
    "cookie=0xec5e0000abcdef01,priority=300,in_port=5,actions=output:7,output:9",
    "cookie=0xec5e000000000001,priority=300,in_port=1001,"
    "actions=output:7,push_vlan:0x8100,mod_vlan_vid:3001,output:2",
    "cookie=0xec5e0000000000ff,priority=300,in_port=2,dl_vlan=3002,actions=strip_vlan,output:1001",
    "cookie=0x1,table=3,priority=10,in_port=4,dl_vlan=0,actions=pop_vlan,NORMAL",
    "priority=1,actions=drop",
    "in_port=5,actions=push_vlan:0x88a8,mod_vlan_vid:4095,output:6",
]


def _ofctl(*argv: str) -> str:
    done = subprocess.run(["ovs-ofctl", *argv], capture_output=True, text=True, check=True)
    return done.stdout


def _printed(text: str) -> str:
    """The flow mod line of ovs-ofctl's output, without its xid."""
    line = next(x for x in text.splitlines() if x.startswith("OFPT_FLOW_MOD"))
    return re.sub(r"\(xid=0x[0-9a-f]+\)", "", line).strip()


@needs_ofctl
@pytest.mark.parametrize("flow", FLOWS)
def test_an_add_is_encoded_as_ovs_ofctl_encodes_it(flow: str) -> None:
    ours = encode_flow_mod(parse_line(f"add {flow}"), 7, {})
    theirs = _ofctl("-O", "OpenFlow14", "parse-flow", flow)
    assert _printed(_ofctl("ofp-print", ours.hex())) == _printed(theirs)


@needs_ofctl
def test_deletes_and_port_names() -> None:
    strict = encode_flow_mod(
        parse_line("delete_strict priority=300,in_port=cust0,dl_vlan=12"), 9, {"cust0": 1001}
    )
    assert _printed(_ofctl("ofp-print", strict.hex())) == (
        "OFPT_FLOW_MOD (OF1.4) : DEL_STRICT table:255 priority=300,in_port=1001,dl_vlan=12"
        " actions=drop"
    )
    loose = encode_flow_mod(parse_line("delete cookie=0x10/-1"), 9, {})
    assert _printed(_ofctl("ofp-print", loose.hex())) == (
        "OFPT_FLOW_MOD (OF1.4) : DEL table:255 cookie:0x10/0xffffffffffffffff actions=drop"
    )
    named = encode_flow_mod(
        parse_line("add priority=300,in_port=a,actions=output:b"), 9, {"a": 3, "b": 4}
    )
    assert named == encode_flow_mod(
        parse_line("add priority=300,in_port=3,actions=output:4"), 9, {}
    )


@needs_ofctl
def test_bundle_messages_are_what_ovs_ofctl_prints() -> None:
    inner = encode_flow_mod(parse_line("add priority=300,in_port=3,actions=output:4"), 42, {})
    printed = _ofctl("ofp-print", openflow.bundle_add(42, 7, inner).hex())
    assert "OFPT_BUNDLE_ADD_MESSAGE (OF1.4) (xid=0x2a):" in printed
    assert "bundle_id=0x7 flags=atomic ordered" in printed
    assert "ADD priority=300,in_port=3 actions=output:4" in printed
    control = _ofctl("ofp-print", openflow.bundle_control(5, 7, openflow.COMMIT_REQUEST).hex())
    assert "OFPT_BUNDLE_CONTROL (OF1.4) (xid=0x5):" in control
    assert "type=COMMIT_REQUEST" in control


@pytest.mark.parametrize(
    "line",
    [
        "add priority=300,in_port=5,dl_src=52:54:00:00:00:01,actions=output:7",  # field
        "add priority=300,in_port=5,actions=group:4",  # action
        "add priority=300,in_port=5,actions=push_vlan:0x1234,output:7",  # ethertype
        "add priority=300,in_port=5,actions=mod_vlan_vid:4096,output:7",  # vid range
        "add table=255,priority=1,actions=drop",  # no such table to add to
        "add priority=70000,actions=drop",  # priority range
        "add cookie=0x10/-1,priority=1,actions=drop",  # masks are for deletes
        "add priority=1",  # no actions
        "delete_strict priority=1,actions=drop",  # actions on a delete
        "modify priority=1,actions=drop",  # command
        'add priority=1,in_port="a b",actions=drop',  # quoting
        "add in_port=4294967295,actions=drop",  # a reserved port number
    ],
)
def test_what_is_outside_the_subset_is_refused_before_sending(line: str) -> None:
    with pytest.raises(FlowSyntaxError):
        parse_line(line)


def test_an_unknown_port_name_is_a_driver_error_naming_it() -> None:
    with pytest.raises(openflow.DriverError, match="no port 'gone'"):
        encode_flow_mod(parse_line("add in_port=gone,actions=drop"), 1, {"here": 1})


def test_port_descriptions_and_errors_are_decoded() -> None:
    def port(number: int, name: str) -> bytes:
        return struct.pack("!IH2x6s2x16sII", number, 40, b"\0" * 6, name.encode(), 0, 0)

    body = struct.pack("!HH4x", openflow.MULTIPART_PORT_DESC, 0) + port(1, "a") + port(1001, "ec1")
    reply = openflow.message(openflow.MULTIPART_REPLY, 3, body)
    assert openflow.port_numbers([reply]) == {"a": 1, "ec1": 1001}
    error = openflow.message(openflow.ERROR, 3, struct.pack("!HH", 2, 4))
    assert openflow.describe_error(error) == "OFPBAC_BAD_OUT_PORT"
    other = openflow.message(openflow.ERROR, 3, struct.pack("!HH", 5, 99))
    assert openflow.describe_error(other) == "OFPET_FLOW_MOD_FAILED code 99"
