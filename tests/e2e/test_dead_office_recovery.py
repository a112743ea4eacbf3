"""Dead office recovery on a real all-in-one site: `edgecloud up` with the libvirt driver, a
two-service chain of real bump-in-the-wire VMs between a customer and a network namespace,
plus a standalone VNF; then the power goes: the supervisor, the controller, the agent and
every QEMU process of the site are SIGKILLed in the same instant and the bridge loses its
flows (as a vSwitch restart does; libvirtd and ovsdb stay up, as the host's own services
would come back first). The site is started again with the same `edgecloud up` and nothing
else: every VNF must run again (a new boot, its vNIC binding verified by the guest) and
the chain must forward again. The times are reported in the test summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.client import Client, load_config
from edgecloud.drivers.network.ovs import port_name_for
from edgecloud.images.building import build_bump_in_the_wire
from edgecloud.probe import probe_in_namespaces
from edgecloud.sim.fleet import free_port
from tests.e2e.chain_support import BOOT, Endpoints, endpoints, service, tx_packets
from tests.e2e.libvirt_support import (
    RunNames,
    create_bridge,
    libvirt_skip_reason,
    our_domains,
    qemu_pid,
    sweep_domains,
)
from tests.e2e.ovs_support import delete_bridge
from tests.integration.cli_support import Cli, alive, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
RATE = 200


class RealSite:
    """`edgecloud up --driver libvirt --detach` on the run's bridge, with fixed ports (the
    enrolled agent keeps dialling the same gateway address across a restart)."""

    def __init__(self, tmp_path: Path, run: RunNames) -> None:
        self.cli = Cli(tmp_path / "config.json")
        self.state = tmp_path / "site"
        self.args = [
            "up", "--driver", "libvirt", "--detach", "--state-dir", str(self.state),
            "--api-port", str(free_port()), "--gateway-port", str(free_port()),
            "--bridge", run.bridge, "--heartbeat-interval", "2", "--resync-interval", "2",
        ]  # fmt: skip

    def up(self) -> None:
        self.cli.run(*self.args)

    def client(self) -> Client:
        return Client(load_config(self.cli.config))

    def pids(self) -> dict[str, int]:
        info = self.state / "site.json"
        return dict(json.loads(info.read_text())["pids"]) if info.exists() else {}


@pytest.fixture
def run_names() -> Iterator[tuple[RunNames, set[str]]]:
    reason = libvirt_skip_reason()
    if reason:
        pytest.skip(reason)
    run = RunNames()
    before = set(our_domains())
    create_bridge(run.bridge)
    try:
        yield run, before
    finally:
        for name in set(our_domains()) - before:  # the site's domains, whatever happened
            sweep_domains(name)
        delete_bridge(run.bridge)


async def test_dead_office_recovery(
    tmp_path: Path,
    run_names: tuple[RunNames, set[str]],
    record_property: Any,
) -> None:
    run, domains_before = run_names
    site = RealSite(tmp_path, run)
    try:
        async with endpoints(run, tmp_path) as ends:
            await asyncio.to_thread(site.up)
            with site.client() as client:
                await asyncio.to_thread(_catalogue, client, tmp_path)
                host = client.list_hosts()[0]["name"]
                client.create_chain(
                    "c1", "acme", host, ends.customer_port, ends.network_port,
                    [service("router"), service("firewall")],
                )  # fmt: skip
                client.create_vnf("lone", "bitw", "small", [{"network": "lan"}, {"network": "wan"}])
                await asyncio.to_thread(client.wait_for_chain, "c1", BOOT + 60)
                before = await asyncio.to_thread(_all_running, client, {})
            assert len(before) == 3, before
            await _forwarding(ends, timeout=60)

            killed = _power_loss(site, set(our_domains()) - domains_before, run.bridge)
            poll(lambda: not any(alive(pid) for pid in killed), 10, "every killed process gone")
            assert not (await _probe(ends, 2.0)).stats.received, "the chain forwarded while down"

            started = time.monotonic()
            await asyncio.to_thread(site.up)
            site_ready = time.monotonic() - started
            with site.client() as client:
                after = await asyncio.to_thread(_all_running, client, before)
                vnfs_running = time.monotonic() - started
                chain = client.get_chain("c1")
            assert chain["path"] == ["router", "firewall"] and chain["operation"] is None
            await _forwarding(ends, timeout=120)
            forwarding = time.monotonic() - started
            assert set(after) == set(before)
            await _through_every_service(ends, chain, run.bridge)

            report = {
                "site ready (s)": round(site_ready, 1),
                "all 3 VNFs running again, bindings verified (s)": round(vnfs_running, 1),
                "chain forwarding again (s)": round(forwarding, 1),
                "processes killed": len(killed),
            }
            for key, value in report.items():
                record_property(f"dead office recovery: {key}", value)
    finally:
        site.cli.run("down", "--purge", "--state-dir", str(site.state), check=False)
        for pid in site.pids().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _catalogue(client: Client, tmp_path: Path) -> None:
    client.create_flavor("small", 1, 256)
    files = build_bump_in_the_wire(tmp_path / "images")
    client.upload_image("bitw-ramdisk", files.initrd, "ramdisk")
    client.upload_image(
        "bitw", files.kernel, "kernel", ramdisk="bitw-ramdisk", cmdline=files.cmdline
    )
    for net in ("lan", "wan"):
        client.create_network(net)


def _all_running(client: Client, previous: dict[str, str]) -> dict[str, str]:
    """Wait until every VNF runs with a verified binding and (when ``previous`` is given) a
    boot id other than before; {name: boot_id}."""

    def check() -> dict[str, str] | None:
        vnfs = client.list_vnfs()
        ready = {
            v["name"]: v["boot_id"]
            for v in vnfs
            if v["status"] == "running"
            and v["binding_verified"]
            and v["boot_id"]
            and v["boot_id"] != previous.get(v["name"])
        }
        return ready if vnfs and len(ready) == len(vnfs) else None

    return dict(poll(check, BOOT + 60, "every VNF running with a verified binding"))


def _power_loss(site: RealSite, domains: set[str], bridge: str) -> list[int]:
    """SIGKILL the site's processes and its VMs' QEMU processes together; wipe the flows."""
    pids = list(site.pids().values()) + [pid for d in domains if (pid := qemu_pid(d))]
    assert len(pids) >= 3 + 3, f"expected supervisor, controller, agent and 3 QEMUs: {pids}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow14", "del-flows", bridge], check=True, capture_output=True
    )
    return pids


async def _probe(ends: Endpoints, seconds: float) -> Any:
    return await probe_in_namespaces(
        ends.customer_ns, ends.network_ns, ends.network_ip, RATE, seconds, port=47813
    )


async def _through_every_service(ends: Endpoints, chain: dict[str, Any], bridge: str) -> None:
    """The probe's packets go through each service's VNF (OVS port counters), not around
    the chain (the endpoints share a VLAN: a bare NORMAL flow would connect them)."""
    ports = [port_name_for(s["instance_id"], s["customer_vnic"], bridge) for s in chain["services"]]
    before = [tx_packets(bridge, port) for port in ports]
    result = await _probe(ends, 2.0)
    sent_to_vnfs = [tx_packets(bridge, port) - b for port, b in zip(ports, before, strict=True)]
    assert result.stats.received > 0
    assert all(n >= result.stats.received for n in sent_to_vnfs), (sent_to_vnfs, result.summary())


async def _forwarding(ends: Endpoints, timeout: float) -> None:
    """Probe in 1 s rounds until one round gets 90 % of its packets through."""
    deadline = time.monotonic() + timeout
    while True:
        result = await _probe(ends, 1.0)
        if result.stats.received >= 0.9 * result.stats.sent:
            return
        assert time.monotonic() < deadline, f"the chain does not forward: {result.summary()}"
