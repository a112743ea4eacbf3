"""The all-in-one site driven only through the `edgecloud` command, as an operator would:
up --detach, create a VNF with three ordered vNICs, SIGKILL the agent, down.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud import __version__
from edgecloud.images.building import build_blank_disk
from edgecloud.protocol.messages import PROTOCOL_VERSION
from tests.integration.cli_support import Cli, alive, poll, site_down


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Cli, Path]]:
    cli, state = Cli(tmp_path / "config.json"), tmp_path / "site"
    try:
        yield cli, state
    finally:
        site_down(cli, state)


@pytest.mark.timeout(180)
def test_up_vnf_agent_kill_down(site: tuple[Cli, Path]) -> None:
    cli, state = site
    up = cli.run(
        "up",
        "--driver",
        "fake",
        "--detach",
        "--state-dir",
        str(state),
        "--api-port",
        "0",
        "--gateway-port",
        "0",
        "--heartbeat-interval",
        "1",
        "--resync-interval",
        "0.5",
    )
    assert "site running" in up.stdout
    hosts = cli.json("host", "list")
    assert [(h["state"], h["availability"]) for h in hosts] == [("enabled", "online")]
    for net in ("lan", "wan", "mgmt"):
        cli.run("network", "create", net)
    cli.run("flavor", "create", "F", "--vcpus", "1", "--ram", "256")
    disk = build_blank_disk(state.parent / "images")
    uploaded = cli.json("image", "upload", "I", str(disk))
    assert (uploaded["disk_format"], uploaded["virtual_size"]) == ("qcow2", 64 * 2**20)
    created = cli.json(
        "vnf",
        "create",
        "v1",
        "--image",
        "I",
        "--flavor",
        "F",
        "--nic",
        "lan",
        "--nic",
        "wan",
        "--nic",
        "mgmt",
    )
    assert [n["network"] for n in created["nics"]] == ["lan", "wan", "mgmt"]
    vnf = poll(lambda: _status(cli, "v1", "running"), what="v1 running")
    boot_id = vnf["boot_id"]

    pids = json.loads((state / "site.json").read_text())["pids"]
    killed_at = datetime.datetime.now(datetime.UTC)
    os.kill(pids["agent"], signal.SIGKILL)
    new_agent = poll(
        lambda: _new_agent_pid(state, pids["agent"]), what="agent restarted by the supervisor"
    )
    assert alive(new_agent)
    poll(lambda: _host_online_after(cli, killed_at), what="host online again (a new hello)")
    after = poll(lambda: _status(cli, "v1", "running"), what="v1 running")
    assert after["boot_id"] == boot_id, "the VNF was restarted when the agent restarted"

    down = cli.run("down", "--state-dir", str(state))
    assert "site stopped" in down.stdout
    current = (
        json.loads((state / "site.json").read_text())["pids"]
        if (state / "site.json").exists()
        else {}
    )
    for pid in {**pids, **current, "agent": new_agent}.values():
        poll(lambda pid=pid: not alive(pid), 10, f"pid {pid} gone")


def _status(cli: Cli, name: str, status: str) -> dict[str, Any] | None:
    vnf = cli.json("vnf", "show", name)
    return vnf if vnf["status"] == status else None


def _new_agent_pid(state: Path, old: int) -> int | None:
    pid = json.loads((state / "site.json").read_text())["pids"]["agent"]
    return pid if pid != old else None


def _host_online_after(cli: Cli, since: datetime.datetime) -> bool:
    host = cli.json("host", "list")[0]
    seen = datetime.datetime.fromisoformat(host["last_seen_at"]).replace(tzinfo=datetime.UTC)
    return host["availability"] == "online" and seen > since


def test_cli_errors_are_one_sentence(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "missing.json")
    result = cli.run("vnf", "list", check=False)
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: no edgecloud config") and "Traceback" not in result.stderr
    )
    result = cli.run("down", "--state-dir", str(tmp_path / "nothing"), check=False)
    assert result.returncode == 0 and "no site is running" in result.stdout


@pytest.mark.timeout(120)
def test_fake_nodes_up_restart_status_down(site: tuple[Cli, Path]) -> None:
    """`up --driver fake --nodes 3`: three fake agents, each its own host; a killed node agent
    is started again; status lists the nodes; an out-of-range count is refused at once."""
    cli, state = site
    refused = cli.run(
        "up", "--driver", "fake", "--nodes", "9", "--state-dir", str(state), check=False
    )
    assert refused.returncode != 0 and "'--nodes': 9 is not in the range" in refused.stderr
    assert not state.exists()
    up = (
        "up", "--driver", "fake", "--nodes", "3", "--detach", "--state-dir", str(state),
        "--api-port", "0", "--gateway-port", "0", "--heartbeat-interval", "1",
    )  # fmt: skip
    cli.run(*up)
    hosts = sorted((h["name"], h["availability"]) for h in cli.json("host", "list"))
    assert [availability for _, availability in hosts] == ["online"] * 3
    assert [name.rsplit("-", 1)[1] for name, _ in hosts] == ["n1", "n2", "n3"]
    status = cli.json("status", "--state-dir", str(state))
    assert [n["host"] for n in status["nodes"]] == [name for name, _ in hosts]
    assert [n["hypervisor"] for n in status["nodes"]] == [None] * 3  # fake: no libvirtd
    # every controller and agent says its release and the protocol negotiated (issue 12)
    version = cli.json("version")
    assert version["cli"] == {"release": __version__, "protocols": [1, PROTOCOL_VERSION]}
    [controller] = version["site"]["controllers"]
    assert (controller["release"], controller["protocols"]) == (__version__, [1, PROTOCOL_VERSION])
    assert {(h["release"], h["protocol"]) for h in version["site"]["hosts"]} == {
        (__version__, PROTOCOL_VERSION)
    }
    shown = cli.run("version").stdout
    assert f"hosts at {__version__} (protocol {PROTOCOL_VERSION}): 3" in shown, shown

    pids = json.loads((state / "site.json").read_text())["pids"]
    os.kill(pids["agent-n2"], signal.SIGKILL)
    poll(
        lambda: (
            json.loads((state / "site.json").read_text())["pids"]["agent-n2"] != pids["agent-n2"]
        ),
        30,
        "node 2's agent started again",
    )
    # a supervisor killed with SIGKILL leaves its children; the next `up` stops them first
    pids = json.loads((state / "site.json").read_text())["pids"]
    os.kill(pids["supervisor"], signal.SIGKILL)
    poll(lambda: not _running(pids["supervisor"]), 10, "the supervisor gone")
    again = cli.run(*up)
    assert "took down what a previous site left" in again.stderr, again.stderr
    assert not any(_running(pid) for pid in pids.values())
    assert len(cli.json("host", "list")) == 3
    pids = json.loads((state / "site.json").read_text())["pids"]
    cli.run("down", "--state-dir", str(state))
    poll(lambda: not any(_running(p) for p in pids.values()), 10, "every process of the site gone")


def _running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 here does not reap the detached supervisor)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False
