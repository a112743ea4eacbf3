"""E2E: `edgecloud up --nodes 2 --redundant` on real nodes (each its own libvirtd and bridge),
run as a user would (the `edgecloud` command as a subprocess, its own --config file): a
controller on each node, on the replicated PostgreSQL (issue 11, acceptance (a)).

- the client config and the agents' agent.json name both controllers; `status` says which
  leads, on which node, the database's primary and replica and each host's state;
- SIGKILL of the leading controller's process: the other leads within 2 s (measured from the
  kill until its own API names it leader; printed);
- a write loop (keypairs, through the SDK client with the site's client config: it fails over
  between the two addresses by itself) runs through the failover: every write that got a 2xx
  is there afterwards, and writes are acknowledged again after the kill;
- both hosts stay online (their agents move to the surviving controller), and the killed
  controller, started again by the supervisor, follows.

Prints each controller's RSS and PSS (the second controller's footprint, docs/operations.md).
Whatever happens, the site is taken down and the database removed.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgecloud.allinone import replicated_db
from edgecloud.client import Client
from edgecloud.client.config import load_config
from edgecloud.errors import ClientError
from tests.e2e.multinode_support import MultiNodeSite
from tests.integration.cli_support import poll

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as the postgres user"),
]
LEADER_WITHIN = 2.0
WRITES_AFTER_KILL = 30


@pytest.fixture
def redundant(site: MultiNodeSite) -> Iterator[MultiNodeSite]:
    """The e2e ``site`` (taken down whatever happened), and its database removed after it
    (this finalizer runs before the ``site`` one: the site goes down here first)."""
    try:
        yield site
    finally:
        site.cli.run("down", "--state-dir", str(site.state), check=False)
        replicated_db.teardown(site.state)


def _tls(ca_cert: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_cert)
    context.check_hostname = False
    return context


def _leader(api_url: str, headers: dict[str, str], tls: ssl.SSLContext) -> str | None:
    """The leader's id as the controller at ``api_url`` reports it (None: no answer yet)."""
    try:
        response = httpx.get(f"{api_url}/v1/controllers", headers=headers, verify=tls, timeout=1)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    leader = response.json().get("leader")
    return str(leader["id"]) if leader else None


def _memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
    return fields["Rss"] / 1024, fields["Pss"] / 1024


class WriteLoop:
    """Creates keypairs one after the other through one SDK client until stopped; keeps the
    names that were acknowledged (2xx) and the refusals (any ClientError, with its text)."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.acked: list[tuple[float, str]] = []
        self.refused: list[tuple[float, str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="write-loop", daemon=True)

    def _run(self) -> None:
        with Client(self.config, timeout=10) as client:
            index = 0
            while not self.stop.is_set():
                name = f"kp{index}"
                index += 1
                try:
                    client.create_keypair(name)
                except ClientError as exc:
                    self.refused.append((time.monotonic(), name, str(exc)))
                else:
                    self.acked.append((time.monotonic(), name))

    def acked_after(self, moment: float) -> int:
        return sum(1 for at, _ in self.acked if at > moment)


def test_sigkill_of_the_leading_controller(redundant: MultiNodeSite) -> None:
    site = redundant
    site.cli.run(
        "--config", str(site.cli.config), "up", "--nodes", "2", "--redundant", "--detach",
        "--state-dir", str(site.state), "--api-port", "0", "--gateway-port", "0",
        "--heartbeat-interval", "1", "--resync-interval", "2",
    )  # fmt: skip
    info = site.info()
    config = load_config(site.cli.config)
    by_child = {c["child"]: c for c in info["controllers"]}
    assert set(by_child) == {"controller", "controller-n2"}
    assert set(config.every_url) == {c["api_url"] for c in by_child.values()}
    for node in site.layout().nodes:  # every agent knows both controllers' gateways
        agent = json.loads((node.state_dir / "agent.json").read_text())
        assert set(agent["controllers"]) == {c["gateway"] for c in by_child.values()}
    for child in by_child:
        rss, pss = _memory(info["pids"][child])
        print(f"{child}: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")

    status = site.cli.json("status", "--state-dir", str(site.state))
    leaders = [c for c in status["controllers"]["controllers"] if c["leads"] and c["up"]]
    assert len(leaders) == 1 and leaders[0]["node"] is not None, status["controllers"]
    assert status["database"]["primary"] == "n1" and status["database"]["replicas"] == ["n2"]
    assert {(h["name"], h["availability"]) for h in status["hosts"]} == {
        (n.host, "online") for n in site.layout().nodes
    }
    text = site.cli.run("status", "--state-dir", str(site.state)).stdout
    assert "database primary n1  replica n2" in text and "  leads  " in text, text

    leading = next(c for c in by_child.values() if c["api_url"] == leaders[0]["api_url"])
    other = next(c for c in by_child.values() if c is not leading)
    headers = {"Authorization": f"Bearer {config.token}"}
    tls = _tls(config.ca_cert)
    was = _leader(other["api_url"], headers, tls)
    assert was == leaders[0]["id"]

    loop = WriteLoop(site.cli.config)
    loop.thread.start()
    try:
        poll(lambda: len(loop.acked) >= 10, 30, "the write loop's first writes")
        os.kill(info["pids"][leading["child"]], signal.SIGKILL)
        killed = time.monotonic()

        def new_leader() -> str | None:
            got = _leader(other["api_url"], headers, tls)
            return got if got not in (None, was) else None

        now_leads = poll(new_leader, 10, "the other controller leading")
        took = time.monotonic() - killed
        print(f"new leader {now_leads} {took:.2f} s after SIGKILL of {leading['child']}")
        poll(
            lambda: loop.acked_after(killed) >= WRITES_AFTER_KILL,
            60,
            f"{WRITES_AFTER_KILL} writes acknowledged after the kill",
        )
    finally:
        loop.stop.set()
        loop.thread.join(30)
    after = [at - killed for at, _ in loop.acked if at > killed]
    print(
        f"write loop: {len(loop.acked)} acknowledged ({len(after)} after the kill, the first "
        f"{after[0]:.2f} s after it), {len(loop.refused)} refused: "
        f"{sorted({why for _, _, why in loop.refused})}"
    )
    assert took < LEADER_WITHIN, f"a new leader took {took:.2f} s"

    with Client(config) as client:
        stored = {k["name"] for k in client.list_keypairs()}
        missing = [name for _, name in loop.acked if name not in stored]
        assert not missing, f"acknowledged writes lost: {missing}"
        # the agents found the surviving controller; the killed one is back and follows
        poll(
            lambda: all(h["availability"] == "online" for h in client.list_hosts()),
            30,
            "both hosts online after the failover",
        )
    restarted = site.info()["pids"][leading["child"]]
    assert restarted != info["pids"][leading["child"]]

    def settled() -> bool:  # the killed one's row counts as down 5 s after its last refresh
        found = site.cli.json("status", "--state-dir", str(site.state))["controllers"]
        up = [(c["api_url"], c["leads"]) for c in found["controllers"] if c["up"]]
        return sorted(up) == sorted([(other["api_url"], True), (leading["api_url"], False)])

    poll(settled, 30, "the killed controller back, following")
