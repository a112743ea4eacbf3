"""Shared pieces of the chain e2e tests: the one-VNF service template (a bump-in-the-wire
VM with an in and an out vNIC), a customer and a network namespace plugged into the run's
bridge, and live OVS port counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from tests.e2e.libvirt_support import RunNames

BOOT = 240.0

SERVICE = """
heat_template_version: 2018-08-31
parameters:
  image: {type: string, default: bitw}
resources:
  left: {type: OS::Neutron::Net}
  right: {type: OS::Neutron::Net}
  vnf:
    type: OS::Nova::Server
    properties:
      image: {get_param: image}
      flavor: small
      networks:
        - {network: {get_resource: left}, tag: in}
        - {network: {get_resource: right}, tag: out}
  service:
    type: Edgecloud::Chain::Service
    properties: {server: {get_resource: vnf}, customer_nic: 0, network_nic: 1}
"""


@dataclass
class Endpoints:
    customer_ns: str
    network_ns: str
    customer_port: str
    network_port: str
    network_ip: str = "10.252.0.2"


@contextlib.asynccontextmanager
async def endpoints(run: RunNames, tmp_path: Path) -> AsyncIterator[Endpoints]:
    """A customer and a network namespace, each with a port on the run's bridge."""
    ovs = OvsNetworkDriver(tmp_path / "ovs-endpoints", bridge=run.bridge)
    ends = Endpoints(f"ecc{run.token}", f"ecn{run.token}", f"ecc{run.token}", f"ecn{run.token}")
    spec = NetworkSpec("chain-endpoints", "chain-endpoints", "vlan", 4000)
    try:
        for ns in (ends.customer_ns, ends.network_ns):
            await asyncio.to_thread(subprocess.run, ["ip", "netns", "add", ns], check=True)
        await ovs.ensure_network(spec)
        await ovs.plug_namespace_port(
            ends.customer_ns, ends.customer_port, spec, ip_cidr="10.252.0.1/24"
        )
        await ovs.plug_namespace_port(
            ends.network_ns, ends.network_port, spec, ip_cidr="10.252.0.2/24"
        )
        yield ends
    finally:
        for port in (ends.customer_port, ends.network_port):
            with contextlib.suppress(Exception):
                await ovs.unplug_port(port)
        for ns in (ends.customer_ns, ends.network_ns):
            await asyncio.to_thread(
                subprocess.run, ["ip", "netns", "del", ns], check=False, capture_output=True
            )


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": SERVICE, "health_timeout": BOOT, **extra}


def tx_packets(bridge: str, port: str) -> int:
    """Packets OVS sent out of ``port`` (into the VNF), read live from the switch (the
    statistics column of OVSDB is refreshed only every few seconds)."""
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow14", "dump-ports", bridge, port],
        capture_output=True,
        text=True,
    )
    ports = subprocess.run(
        ["ovs-vsctl", "list-ports", bridge], capture_output=True, text=True
    ).stdout.split()
    assert out.returncode == 0, f"{out.stderr.strip()} (ports on {bridge}: {ports})"
    found = re.search(r"tx pkts=(\d+)", out.stdout)
    assert found, out.stdout
    return int(found[1])
