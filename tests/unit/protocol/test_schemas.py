"""Agent message schemas: what agents send passes; wrong types, unbounded sizes and missing
fields are refused with the field named; unknown extra fields pass (N+1 agents)."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.errors import ProtocolError
from edgecloud.protocol import messages
from edgecloud.protocol.schemas import MAX_INT, SCHEMAS, validate

GOOD: list[dict[str, Any]] = [
    messages.make(
        "hello",
        host="node1",
        agent_version="0.1",
        applied_version=3,
        facts={
            "vcpus": 4,
            "memory_mib": 8192,
            "disk_gib": 100,
            "hypervisor": "fake",
            "details": {"compute_driver": "fake", "cores": 4},
            "pci_devices": [{"address": "0000:01:00.0", "kind": "vf"}],
        },
        observed={"instances": {"i1": {"power": "running", "boot_id": "b", "error": None}}},
    ),
    messages.make("ack", version=7),
    messages.make("nack", version=7, error="disk full"),
    messages.make(
        "observed",
        instances={
            "i1": {
                "power": "running",
                "guest_vnics": [{"index": 0, "name": "eth0", "mac": "52:54:00:00:00:01"}],
                "migration": {"id": "m1", "prepared": True, "placement": {"cpus": [1]}},
            }
        },
    ),
    messages.make("hb", seq=1, ts=1.5),
    messages.make("alarm", action="raise", alarm_id="200.013", reason="full"),
    messages.make("res", id=3, ok=True, result={"anything": ["goes"]}),
    messages.make("fetch_image", sha256="a" * 64, offset=0),
    messages.make("renew", csr="-----BEGIN CERTIFICATE REQUEST-----"),
    messages.make("get_ca"),
    messages.make("enroll", host="node1", secret="s", csr="pem", address="10.0.0.1"),
    messages.make("hb", seq=1, future_field={"from": "an N+1 agent"}),
]

BAD: list[tuple[dict[str, Any], str]] = [
    (messages.make("ack", version="7"), "version"),
    (messages.make("ack", version=MAX_INT + 1), "version"),
    (messages.make("ack", version=-1), "version"),
    (messages.make("ack"), "version"),
    (messages.make("nack", version=1, error="x" * 70000), "error"),
    (messages.make("observed", instances={"i1": {"guest_vnics": [{"name": "e"}]}}), "index"),
    (messages.make("observed", instances={"i1": {"power": ["running"]}}), "power"),
    (messages.make("observed", instances={f"i{n}": {} for n in range(5000)}), "instances"),
    (messages.make("hello", facts={"details": {"k": {"nested": 1}}}), "details"),
    (messages.make("hello", host="n" * 64), "host"),
    (messages.make("alarm", action="explode", alarm_id="1"), "action"),
    (messages.make("res", id=1, ok="yes"), "ok"),
    (messages.make("fetch_image", sha256="../../etc/passwd"), "sha256"),
    (messages.make("renew", csr="x" * 20000), "csr"),
    (messages.make("enroll", host="n", secret=1, csr="pem"), "secret"),
    (messages.make("hb", seq=True), "seq"),
]


def test_every_agent_type_has_a_schema() -> None:
    assert set(SCHEMAS) == set(messages.AGENT_TYPES)


@pytest.mark.parametrize("message", GOOD, ids=lambda m: str(m["t"]))
def test_what_agents_send_passes(message: dict[str, Any]) -> None:
    validate(message, str(message["t"]))


@pytest.mark.parametrize(("message", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_messages_are_refused_naming_the_field(message: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        validate(message, str(message["t"]))


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ProtocolError):
        validate(messages.make("res", id=1, ok=True, result=deep, error=deep), "res")
