"""The orchestrated upgrade of a site, as an operator runs it (issue 12): a controller and two
nodes, each a real ``edgecloud`` process (fake hypervisor, so the VNFs are processes' state
files, not VMs), the wheel of release N.0.1 (this checkout's code under a patch version)
uploaded and signed, then through the CLI: ``upgrade start`` (the controller restarts itself
into the release, then each node's agent, one batch at a time) until it is activated, every
part at the new release and every VNF still on its first boot; ``upgrade abort`` back to the
installed release, VNFs untouched; ``upgrade start`` again and ``upgrade complete``. The
processes keep their PIDs throughout (each re-executes itself): a supervisor sees nothing; the
controller, started with ``--api-port 0``, comes back on the port it took."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud import __version__, staging
from edgecloud.client.config import ClientConfig, save_config
from edgecloud.images.building import build_blank_disk
from edgecloud.upgrades.releases import parse
from tests.integration.cli_support import Cli
from tests.integration.release_processes import CURRENT, Api, Processes
from tests.integration.wheels import source_wheel

pytestmark = pytest.mark.timeout(300)
NODES = ("node1", "node2")
PATCH = f"{parse(__version__).major}.{parse(__version__).minor}.{parse(__version__).patch + 1}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _releases(api: Api) -> dict[str, str]:
    found = api.get("/v1/controllers")["controllers"]
    parts = {f"controller {c['id'].split('/')[0]}": c["release"] for c in found if c["up"]}
    parts |= {f"host {h['name']}": h["release"] for h in api.get("/v1/hosts")}
    return parts


def _boots(api: Api) -> dict[str, str]:
    return {v["name"]: v["boot_id"] for v in api.get("/v1/vnfs") if v["status"] == "running"}


class Site:
    """A controller and two nodes (v1 on one, v2 on the other), each its own process; the
    wheel of PATCH uploaded."""

    def __init__(self, processes: Processes, images: Path) -> None:
        self.processes = processes
        root = self.root = processes.root
        self.state = root / "controller"
        self.gateway_port = _free_port()
        self.start_controller()
        self.api = Api(self.state)
        self.cli = self._cli()
        wheel = root / f"edgecloud-{PATCH}-py3-none-any.whl"
        wheel.write_bytes(source_wheel(PATCH))
        self.cli.run("software", "upload", str(wheel))
        api = self.api
        for name in NODES:
            join = api.call("POST", "/v1/hosts", 201, json={"name": name})["join_token"]
            self.start_agent(name, "--join", join)
        processes.poll(lambda: _all_online(api, 2), "both nodes online")
        api.call("POST", "/v1/networks", 201, json={"name": "lan"})
        api.call("POST", "/v1/flavors", 201, json={"name": "small", "vcpus": 1, "memory_mib": 256})
        image = build_blank_disk(images)
        api.call("PUT", "/v1/images/img", 201, params={"disk_format": "qcow2"},
                 content=image.read_bytes())  # fmt: skip
        for name in ("v1", "v2"):
            api.call("POST", "/v1/vnfs", 201, json={
                "name": name, "image": "img", "flavor": "small", "nics": [{"network": "lan"}],
                "anti_affinity_group": "pair",
            })  # fmt: skip
        self.boots = processes.poll(lambda: _both_running(api), "both VNFs running")

    def start_controller(self) -> None:
        """``edgecloud controller`` as its supervisor starts it (also after it was killed:
        it runs the release selected in its state folder)."""
        (self.state / "controller.json").unlink(missing_ok=True)
        self.processes.start(
            "controller", CURRENT, "controller", "--state-dir", str(self.state),
            "--api-port", "0", "--gateway-port", str(self.gateway_port),
            "--heartbeat-interval", "0.5",
        )  # fmt: skip
        self.processes.poll(lambda: (self.state / "controller.json").exists(), "controller ready")

    def start_agent(self, name: str, *extra: str) -> None:
        self.processes.start(
            name, CURRENT, "agent", "--state-dir", str(self.root / name), "--driver", "fake",
            "--resync-interval", "0.5", *extra,
        )  # fmt: skip

    def _cli(self) -> Cli:
        info = json.loads((self.state / "controller.json").read_text())
        token = (self.state / "admin-token").read_text().strip()
        config = ClientConfig(info["api_url"], token, info["ca_cert"])
        return Cli(save_config(config, self.root / "cli.json"))

    def controller_restarted(self) -> None:
        """Clients of the controller started again (a new API port): as the CLI's config is
        rewritten by `edgecloud up`."""
        self.api.trust_again()
        self.cli = self._cli()

    def upgrade(self) -> dict[str, Any]:
        """The upgrade as `upgrade show` gets it; empty while the controller restarts."""
        try:
            return dict(self.api.get("/v1/upgrade"))
        except httpx.TransportError:
            return {}

    def step(self, name: str) -> str | None:
        steps = self.upgrade().get("steps", [])
        return next((s["state"] for s in steps if s["name"] == name), None)


def test_an_in_service_upgrade_is_started_aborted_and_completed(
    processes: Processes,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    site = Site(processes, tmp_path_factory.getbasetemp() / "images")
    api, cli, boots = site.api, site.cli, site.boots
    try:
        pids = {name: p.pid for name, p in processes.running.items()}
        installed = _releases(api)
        assert set(installed.values()) == {__version__}

        started = cli.run("upgrade", "start", "--to", PATCH, "--max-parallel", "1")
        assert f"upgrade {__version__} -> {PATCH}: activated (3/3 steps)" in started.stdout
        progress = started.stderr
        assert progress.index("controller ") < progress.index("host node1: restarting")
        assert progress.index("host node1: done") < progress.index("host node2: restarting")
        assert set(_releases(api).values()) == {PATCH}, _releases(api)
        assert _boots(api) == boots, "a VNF restarted during the upgrade"
        assert {n: p.pid for n, p in processes.running.items()} == pids
        assert "re-executing as release" in processes.log("controller")

        refused = cli.run("upgrade", "start", "--to", PATCH, check=False)
        assert refused.returncode == 1 and "is activated: complete it" in refused.stderr

        aborted = cli.run("upgrade", "abort")
        assert "aborted (3/3 steps)" in aborted.stdout, aborted.stdout + aborted.stderr
        assert _releases(api) == installed
        assert _boots(api) == boots
        assert _all_online(api, 2)  # aborted once every node is back with the controller
        # as an operator would: check before starting again (beats of 0.5 s: a node slower
        # than 1.5 s to dial the restarted controller is offline a moment, with an alarm)
        processes.poll(lambda: _can_upgrade(cli), "upgrade check passes again")

        cli.run("upgrade", "start", "--to", PATCH, "--max-parallel", "2")
        done = cli.run("upgrade", "complete")
        assert "completed" in done.stdout
        shown = json.loads(cli.run("upgrade", "show", "--json").stdout)
        assert shown["state"] == "completed" and shown["done"] == shown["total"] == 3
        assert set(_releases(api).values()) == {PATCH}
        assert _boots(api) == boots
        assert {n: p.pid for n, p in processes.running.items()} == pids
    finally:
        api.client.close()


def test_an_upgrade_resumes_by_itself_after_its_processes_are_killed(
    processes: Processes,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGKILL, as a crash or a power cut: node1's agent the moment its restart step begins,
    then the controller (the leader running the upgrade) as soon as node1 is done. Each is
    started again as its supervisor would, with the same command: the agent and the
    controller each run the release selected before the kill, and the upgrade goes on from
    where the store says it is, to activated, with no operator step."""
    site = Site(processes, tmp_path_factory.getbasetemp() / "images")
    try:
        site.cli.run("upgrade", "start", "--to", PATCH, "--max-parallel", "1", "--no-wait")
        processes.poll(lambda: site.step("node1") == "restarting", "node1 restarting", 60)
        # killed once its new release is selected on disk (before that, a kill only repeats
        # the step: the agent comes back at the old release and is told to restart again)
        node1 = site.root / "node1"
        processes.poll(lambda: staging.selected(node1) == PATCH, "node1 selected the patch", 60)
        processes.kill("node1")
        site.start_agent("node1")
        processes.poll(lambda: site.step("node1") == "done", "node1 done after its kill", 60)
        assert site.upgrade()["state"] == "hosts", "node2 upgraded before the controller's kill"
        processes.kill("controller")
        site.start_controller()
        site.controller_restarted()
        shown = processes.poll(
            lambda: (u := site.upgrade()).get("state") in ("activated", "failed") and u,
            "the upgrade activated",
            120,
        )
        assert shown["state"] == "activated", shown
        assert set(_releases(site.api).values()) == {PATCH}, _releases(site.api)
        assert _boots(site.api) == site.boots, "a VNF restarted"
        # started again with the installed release's command, each ran the selected one
        for name in ("node1", "controller"):
            assert f"this node runs release {PATCH}: re-executing" in processes.log(name), name
        site.cli.run("upgrade", "complete")
    finally:
        site.api.client.close()


def _can_upgrade(cli: Cli) -> bool:
    return bool(
        json.loads(cli.run("upgrade", "check", "--to", PATCH, "--json", check=False).stdout)[
            "result"
        ]
        != "failure"
    )


def _all_online(api: Api, count: int) -> bool:
    hosts = api.get("/v1/hosts")
    return len(hosts) == count and all(h["availability"] == "online" for h in hosts)


def _both_running(api: Api) -> dict[str, Any] | None:
    boots = _boots(api)
    return boots if len(boots) == 2 else None
