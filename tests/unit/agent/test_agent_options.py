"""The agent wires its drivers from its options (the OVS bridge above all: VNFs of a test or
a second site must not land on br-int)."""

from __future__ import annotations

from pathlib import Path

from edgecloud.agent.identity import AgentIdentity
from edgecloud.agent.runner import Agent


def test_bridge_option_reaches_the_ovs_driver(tmp_path: Path) -> None:
    identity = AgentIdentity(tmp_path, "node1", "127.0.0.1:1")
    agent = Agent(identity, compute="fake", network="ovs", bridge="ectest0")
    assert agent.network.name == "ovs"
    assert agent.network.bridge == "ectest0"  # type: ignore[attr-defined]
    assert Agent(identity, compute="fake").network.name == "fake"


def test_libvirt_uri_and_uplink_reach_the_drivers(tmp_path: Path) -> None:
    identity = AgentIdentity(tmp_path, "node1", "127.0.0.1:1")
    uri = f"qemu+unix:///system?socket={tmp_path}/sock/libvirt-sock"
    agent = Agent(identity, compute="libvirt", libvirt_uri=uri, bridge="ecn1-x", uplink="ecn1-x-up")
    assert agent.compute.uri == uri  # type: ignore[attr-defined]
    assert agent.network.uplink == "ecn1-x-up"  # type: ignore[attr-defined]
    single = Agent(identity, compute="libvirt")
    assert single.compute.uri == "qemu:///system"  # type: ignore[attr-defined]
    assert single.network.uplink is None  # type: ignore[attr-defined]
