"""protocol/steering.py: the steering-only messages are built and read through one schema
each: a host's flows (``steer``), and one chain's flows before -> after (``steer_chain``), at
a desired version pass; a version below 1, outputs of the wrong type or unbounded, an empty
match and a missing table are refused with the field named; unknown extra fields pass (an
N+1 controller); one type is never read as the other."""

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
    assert message["t"] == "steer" and message["v"] == messages.OLDEST_VERSION
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


# steer_chain: one chain's flows before -> after ------------------------------------------------
def test_a_chain_change_goes_and_comes_back_unchanged() -> None:
    before, after = {"cust0": "net0"}, FLOWS
    message = steering.make_chain(8, before, after)
    assert message["t"] == "steer_chain" and message["v"] == messages.OLDEST_VERSION
    assert messages.check(message, messages.CONTROLLER_TYPES) == "steer_chain"
    assert steering.read_chain(message) == (8, before, after)
    assert steering.read_chain(steering.make_chain(2, FLOWS, {})) == (2, FLOWS, {})  # all go


def test_the_steer_chain_type_is_not_an_agents_message() -> None:
    with pytest.raises(ProtocolError, match="unexpected message type"):
        messages.check(steering.make_chain(1, {}, {}), messages.AGENT_TYPES)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"before": {"cust0": 5}}, "before.cust0"),
        ({"after": {"cust0": []}}, "after.cust0"),
        ({"after": {"": "p"}}, "after"),
        ({"before": None}, "before"),
        ({"after": {f"p{i}": "q" for i in range(steering.MAX_FLOWS + 1)}}, "after"),
    ],
)
def test_a_chain_change_that_does_not_fit_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    message = {**messages.make("steer_chain", version=1, before={}, after={}), **change}
    with pytest.raises(ProtocolError, match=rf"steer_chain message: {field}\b"):
        steering.read_chain(message)
    with pytest.raises(ProtocolError, match=rf"steer_chain message: {field}\b"):
        steering.make_chain(message["version"], message["before"], message["after"])


def test_a_chain_change_without_its_after_is_refused() -> None:
    with pytest.raises(ProtocolError, match="steer_chain message: after: Field required"):
        steering.read_chain(messages.make("steer_chain", version=1, before={}))


def test_a_whole_table_is_not_a_chain_change() -> None:  # nor the other way round
    with pytest.raises(ProtocolError, match="steer_chain message: t"):
        steering.read_chain(steering.make(1, FLOWS))
    with pytest.raises(ProtocolError, match="steer message: t"):
        steering.read(steering.make_chain(1, {}, FLOWS))
