"""protocol/steering.py: the steering-only message is built and read through one schema:
a host's flows at a desired version pass; a version below 1, outputs of the wrong type or
unbounded, an empty match and a missing table are refused with the field named; unknown
extra fields pass (an N+1 controller)."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.errors import ProtocolError
from edgecloud.protocol import messages, steering

FLOWS: dict[str, Any] = {
    "cust0": "vnic:i-1:0",
    "vnic:i-1:1": "vlan:3001",
    "vlan:3002": ["vnic:i-1:1", "vlan:3003"],  # a port on two hosts: two outputs
}


def test_a_hosts_flows_go_and_come_back_unchanged() -> None:
    message = steering.make(7, FLOWS)
    assert message["t"] == "steer" and message["v"] == messages.PROTOCOL_VERSION
    assert messages.check(message, messages.CONTROLLER_TYPES) == "steer"
    assert steering.read(message) == (7, FLOWS)


def test_an_empty_table_is_a_table() -> None:  # the last chain of the host went
    assert steering.read(steering.make(3, {})) == (3, {})


def test_unknown_extra_fields_pass() -> None:
    message = {**steering.make(4, FLOWS), "chains": ["c1"]}
    assert steering.read(message) == (4, FLOWS)


def test_the_steer_type_is_not_an_agents_message() -> None:
    with pytest.raises(ProtocolError, match="unexpected message type"):
        messages.check(steering.make(1, {}), messages.AGENT_TYPES)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": -1}, "version"),
        ({"version": "7"}, "version"),  # strict: no coercion
        ({"version": 2**63}, "version"),
        ({"steering": {"cust0": 5}}, "steering.cust0"),
        ({"steering": {"cust0": []}}, "steering.cust0"),
        ({"steering": {"cust0": ["p"] * (steering.MAX_OUTPUTS + 1)}}, "steering.cust0"),
        ({"steering": {"": "p"}}, "steering"),
        ({"steering": {"cust0": "x" * 256}}, "steering.cust0"),
        ({"steering": ["cust0"]}, "steering"),
        ({"steering": {f"p{i}": "q" for i in range(steering.MAX_FLOWS + 1)}}, "steering"),
    ],
)
def test_what_does_not_fit_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    message = {**messages.make("steer", version=1, steering={}), **change}
    with pytest.raises(ProtocolError, match=rf"steer message: {field}\b"):
        steering.read(message)
    with pytest.raises(ProtocolError, match=rf"steer message: {field}\b"):
        steering.make(message["version"], message["steering"])


def test_a_missing_table_is_refused() -> None:
    with pytest.raises(ProtocolError, match="steer message: steering: Field required"):
        steering.read(messages.make("steer", version=1))
