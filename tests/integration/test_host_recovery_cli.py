"""Host recovery from where an operator stands: `edgecloud up --driver fake --nodes 2
--host-recovery` with sub-second beats; a node's agent frozen (SIGSTOP: its process alive,
its connection open and silent) is judged failed, its VNF is rebuilt on the other node (seen
in `vnf show` and `migration list`), and once thawed the node holds no copy of it."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.images.building import build_blank_disk
from tests.integration.cli_support import Cli, poll, site_down


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Cli, Path]]:
    cli, state = Cli(tmp_path / "config.json"), tmp_path / "site"
    try:
        yield cli, state
    finally:
        site_down(cli, state)


@pytest.mark.timeout(180)
def test_a_frozen_nodes_vnf_is_rebuilt_on_the_other_node(site: tuple[Cli, Path]) -> None:
    cli, state = site
    cli.run(
        "up", "--driver", "fake", "--nodes", "2", "--detach", "--state-dir", str(state),
        "--api-port", "0", "--gateway-port", "0", "--resync-interval", "0.5",
        "--heartbeat-interval", "0.25", "--heartbeat-misses", "4", "--host-recovery",
    )  # fmt: skip
    cli.run("network", "create", "lan")
    cli.run("flavor", "create", "F", "--vcpus", "1", "--ram", "256")
    cli.json("image", "upload", "I", str(build_blank_disk(state.parent / "images")))
    created = cli.json("vnf", "create", "v1", "--image", "I", "--flavor", "F", "--nic", "lan")
    assert created["recovery_policy"] == "recover"
    vnf = poll(lambda: _vnf(cli, "v1", "running"), 30, "v1 running")
    node = str(vnf["host"]).rsplit("-", 1)[1]  # n1 or n2
    pids = json.loads((state / "site.json").read_text())["pids"]

    os.kill(pids[f"agent-{node}"], signal.SIGSTOP)
    moved = poll(lambda: _moved(cli, vnf), 30, "v1 running on the other node")
    assert [n["mac"] for n in moved["nics"]] == [n["mac"] for n in vnf["nics"]]
    assert [n["pci_slot"] for n in moved["nics"]] == [n["pci_slot"] for n in vnf["nics"]]
    [recovery] = [m for m in cli.json("migration", "list") if m["kind"] == "recovery"]
    assert (recovery["source_host"], recovery["destination_host"]) == (vnf["host"], moved["host"])

    os.kill(pids[f"agent-{node}"], signal.SIGCONT)
    poll(lambda: _online(cli, str(vnf["host"])), 30, "the thawed node online again")
    domains = state / "nodes" / node / "agent" / "fake-domains.json"
    poll(lambda: vnf["id"] not in domains.read_text(), 15, "no copy of v1 left on the node")
    assert cli.json("vnf", "show", "v1")["host"] == moved["host"]


def _vnf(cli: Cli, name: str, status: str) -> dict[str, Any] | None:
    vnf = cli.json("vnf", "show", name)
    return vnf if vnf["status"] == status else None


def _moved(cli: Cli, before: dict[str, Any]) -> dict[str, Any] | None:
    vnf = cli.json("vnf", "show", "v1")
    return vnf if vnf["host"] != before["host"] and vnf["status"] == "running" else None


def _online(cli: Cli, host: str) -> bool:
    return any(
        h["name"] == host and h["availability"] == "online" for h in cli.json("host", "list")
    )
