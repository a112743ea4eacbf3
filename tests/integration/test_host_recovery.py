"""Host failure and instance recovery on a fake-driver site with real agents over real TLS on
loopback (services/recovery.py, agent/fencing.py): a dead host is judged failed within 3 s
with sub-second beats and its VNFs are rebuilt on the survivor with the same vNICs; recovery
policies; many hosts lost at once raise one alarm and move nothing; a host that is only cut
off fences its VNFs itself before the controller recovers them, and returns with no copy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.gateway.admission import Protection
from tests.integration.harness import (
    RESYNC,
    AgentHandle,
    Site,
    eventually,
    running_site,
    second_controller,
)

# a two-node site's settings: beats every 0.25 s, lost after 4 silent ones (1 s)
FAST: dict[str, Any] = {"heartbeat_interval": 0.25, "heartbeat_misses": 4, "host_recovery": True}
# the cut-off tests on PostgreSQL: a controller vouches for its agents only while its durable heartbeat
# (a commit every interval/2) began within ``grace`` (controller/vouching.py: 2 refreshes). With
# beats of 0.25 s that is 0.25 s, and in a full suite's PostgreSQL a commit stalled longer (CI,
# twice): the agents fenced before the test's cut. Beats of 0.5 s give the commits 0.5 s.
SHARED: dict[str, Any] = {**FAST, "heartbeat_interval": 0.5}


_NUMBERS = itertools.count(1)


def _nics(n: int) -> list[dict[str, Any]]:
    """Given address, model, PCI slot and MAC: what recovery must keep."""
    return [
        {"network": "lan", "fixed_ips": [{"ip_address": f"10.0.0.{50 + n}"}]},
        {"network": "wan", "model": "e1000", "pci_slot": 9},
        {"network": "mgmt", "mac": f"52:54:00:aa:bb:{n:02x}"},
    ]


async def _catalogue(site: Site) -> None:
    await site.catalogue()
    subnet = {"name": "lan-v4", "network": "lan", "cidr": "10.0.0.0/24"}
    assert (await site.api.post("/v1/subnets", json=subnet)).status_code == 201


async def _create(site: Site, name: str, **extra: Any) -> dict[str, Any]:
    nics = _nics(next(_NUMBERS))
    body = {"name": name, "image": "img", "flavor": "small", "nics": nics, **extra}
    response = await site.api.post("/v1/vnfs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _all_on(site: Site, host: str, other: str, names_policies: dict[str, str]) -> None:
    """Create the VNFs with their policies, all placed on ``host`` (``other`` locked)."""
    assert (await site.api.post(f"/v1/hosts/{other}/lock")).status_code == 202
    for name, policy in names_policies.items():
        await _create(
            site, name, recovery_policy=policy, user_data=base64.b64encode(b"hi").decode()
        )
    for name in names_policies:
        assert (await site.wait_vnf(name, "running"))["host"] == host
    assert (await site.api.post(f"/v1/hosts/{other}/unlock")).status_code == 200


def _identity(vnf: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (n["network"], n["mac"], n["pci_slot"], [ip["ip_address"] for ip in n["fixed_ips"]])
        for n in vnf["nics"]
    ]


async def _kill(site: Site, name: str) -> AgentHandle:
    """The agent dies: its task cancelled, its connection dropped (its domains stay on disk)."""
    handle = site.agents.pop(name)
    handle.task.cancel()
    await asyncio.gather(handle.task, return_exceptions=True)
    return handle


async def _events(site: Site, entity: str) -> list[str]:
    events = (await site.api.get("/v1/events", params={"limit": 1000})).json()
    return [e["message"] for e in events if e["entity"] == entity]


async def _recoveries(site: Site) -> list[dict[str, Any]]:
    return [m for m in (await site.api.get("/v1/migrations")).json() if m["kind"] == "recovery"]


async def _running(agent: Agent) -> set[str]:
    """Instance ids whose domains run on the agent's (fake) hypervisor."""
    return {d.instance_id for d in await agent.compute.list_domains() if d.state.value == "running"}


async def test_a_dead_host_is_failed_within_3_s_and_its_vnfs_rebuilt_on_the_survivor(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url, **FAST) as site:
        await site.join("h1")
        await site.join("h2")
        await _catalogue(site)
        policies = {"v-rec": "recover", "v-restart": "restart", "v-none": "none"}
        await _all_on(site, "h1", "h2", policies)
        before = {n: await site.vnf(n) for n in policies}
        ids = {n: str(v["id"]) for n, v in before.items() if v}

        killed = time.monotonic()
        await _kill(site, "h1")
        await site.wait_host("h1", "offline", timeout=3.0)
        detected = time.monotonic() - killed
        assert detected < 3.0

        moved = await eventually(
            lambda: _on(site, "v-rec", "h2", "running"), 15, "v-rec running on h2"
        )
        assert _identity(moved) == _identity(before["v-rec"] or {})  # same vNICs, in order
        assert moved["boot_id"] != (before["v-rec"] or {})["boot_id"]  # rebuilt: a new boot
        h2_spec = site.agents["h2"].agent.applier.instances()[ids["v-rec"]]
        assert h2_spec.user_data == base64.b64encode(b"hi").decode()
        [recovery] = await _recoveries(site)
        assert (recovery["vnf"], recovery["source_host"], recovery["destination_host"]) == (
            "v-rec",
            "h1",
            "h2",
        )
        assert recovery["status"] == "done"
        assert any(
            "recovered on h2 from failed host h1" in t for t in await _events(site, "vnf=v-rec")
        )
        assert any("recovered v-rec -> h2" in t for t in await _events(site, "host=h1"))
        # restart: waits for its host; none: left stopped there
        assert (await site.vnf("v-restart") or {})["host"] == "h1"
        assert any("recovery policy restart" in t for t in await _events(site, "vnf=v-restart"))
        none = await site.vnf("v-none") or {}
        assert (none["host"], none["desired_state"]) == ("h1", "stopped")
        assert any("recovery policy none" in t for t in await _events(site, "vnf=v-none"))

        # h1 comes back after longer than the fence timeout: it stops its stale copy of v-rec
        # before its first hello, starts v-restart again and leaves v-none stopped
        back = await site.start_agent("h1")
        await asyncio.wait_for(back.agent.connected.wait(), 15)
        assert back.agent.fence.fenced == (ids["v-rec"],)
        assert ids["v-rec"] not in await _running(back.agent)
        await site.wait_host("h1", "online")
        await site.wait_vnf("v-restart", "running")
        assert (await site.wait_vnf("v-none", "stopped"))["host"] == "h1"

        async def stale_gone() -> bool:
            return ids["v-rec"] not in {
                d.instance_id for d in await back.agent.compute.list_domains()
            }

        await eventually(stale_gone, 10, "h1 deleted its stale copy of v-rec")
        assert (await site.vnf("v-rec") or {})["host"] == "h2"


async def _on(site: Site, name: str, host: str, status: str) -> dict[str, Any] | None:
    vnf = await site.vnf(name)
    return vnf if vnf and vnf["host"] == host and vnf["status"] == status else None


async def test_many_hosts_silent_at_once_raise_one_alarm_and_move_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    protection = Protection(mass_loss_min=2, mass_loss_ratio=0.3)
    async with running_site(tmp_path, db_url, protection=protection, **FAST) as site:
        for name in ("h1", "h2", "h3", "h4"):
            await site.join(name)
        await _catalogue(site)
        for i in range(4):
            await _create(site, f"v{i}")
        placed = {f"v{i}": (await site.wait_vnf(f"v{i}", "running"))["host"] for i in range(4)}
        await asyncio.gather(_kill(site, "h1"), _kill(site, "h2"))

        async def alarms() -> list[dict[str, Any]]:
            active = (await site.api.get("/v1/alarms")).json()
            return [a for a in active if a["alarm_id"] == "200.020"]

        [alarm] = await eventually(alarms, 5, "the multi-host loss alarm")
        # held off: for twice the failure timeout after the alarm nothing is declared failed
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert not await _recoveries(site)
            assert (await site.host("h1"))["availability"] == "online"
            assert len(await alarms()) == 1
            await asyncio.sleep(0.1)
        for name, host in placed.items():
            assert (await site.vnf(name) or {})["host"] == host
        assert "not declaring them offline" in alarm["reason"]


class Relay:
    """A TCP relay between one agent and the gateway that can be cut (nothing forwarded,
    nothing closed: both processes live on) and mended (the cut connections dropped)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.open = asyncio.Event()
        self.open.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.open.clear()

    def mend(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self.open.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.mend()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self.open.wait()
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.append(up_writer)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self.open.wait()  # cut: held, never delivered
                writer.write(data)
                await writer.drain()
            await self.open.wait()  # a close is not passed on while cut either
            writer.close()


async def test_a_cut_off_host_fences_its_vnfs_before_they_are_recovered_elsewhere(
    tmp_path: Path, db_url: str | None
) -> None:
    # beats of 0.5 s (SHARED): on PostgreSQL a commit stall past 0.25 s made the agent fence
    # again after the mend (CI, 2026-12-02), its alarm 200.040 raised anew
    async with running_site(tmp_path, db_url, **SHARED) as site:
        relay = Relay(site.info["gateway"])
        try:
            token = await site.add_host("h1")
            identity = await enroll(token, tmp_path / "agents" / "h1")
            identity = dataclasses.replace(identity, controller=await relay.start())
            agent = Agent(identity, resync_interval=RESYNC)
            site.agents["h1"] = AgentHandle(
                agent, asyncio.create_task(agent.run()), identity.state_dir
            )
            await site.wait_host("h1", "online")
            await site.join("h2")
            await _catalogue(site)
            await _all_on(site, "h1", "h2", {"v-rec": "recover", "v-restart": "restart"})
            ids = {n: str((await site.vnf(n) or {})["id"]) for n in ("v-rec", "v-restart")}

            relay.cut()
            await site.wait_host("h1", "offline", timeout=10.0)
            [recovery] = await eventually(lambda: _recoveries(site), 10, "the recovery")
            recovered_at = dt.datetime.fromisoformat(recovery["created_at"]).timestamp()
            assert agent.fence.fenced_at is not None, "the cut-off agent did not fence itself"
            assert agent.fence.fenced_at < recovered_at  # fenced first
            assert agent.fence.fenced == (ids["v-rec"],)  # only what is recovered elsewhere
            assert await _running(agent) == {ids["v-restart"]}
            assert agent.connected.is_set()  # its connection looks alive: it fenced on silence
            await eventually(lambda: _on(site, "v-rec", "h2", "running"), 15, "v-rec on h2")

            relay.mend()  # back: it follows the controller's snapshot, holds no stale copy
            await site.wait_host("h1", "online")

            async def settled() -> bool:
                domains = {d.instance_id for d in await agent.compute.list_domains()}
                return ids["v-rec"] not in domains and ids["v-restart"] in await _running(agent)

            await eventually(settled, 10, "h1 without v-rec, running v-restart")
            alarms = (await site.api.get("/v1/alarms")).json()
            assert not [a for a in alarms if a["alarm_id"] == "200.040"]
            assert any(
                "fenced" in t.lower() or "200.040" in t for t in await _events(site, "host=h1")
            )
        finally:
            await relay.close()


STACK = """
heat_template_version: 2018-08-31
resources:
  fw:
    type: OS::Nova::Server
    properties:
      name: fw
      image: img
      flavor: small
      networks: [{network: lan}]
      recovery_policy: restart
"""


async def test_the_policy_comes_from_the_api_or_a_template_and_bad_ones_are_refused(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path) as site:
        await site.join("h1")
        await _catalogue(site)
        assert (await _create(site, "plain"))["recovery_policy"] == "recover"
        bad = await site.api.post(
            "/v1/vnfs",
            json={"name": "x", "image": "img", "flavor": "small", "recovery_policy": "evacuate"},
        )
        assert bad.status_code == 422 and "recovery_policy" in bad.text
        assert (await site.api.get("/v1/vnfs/x")).status_code == 404  # nothing half-created
        response = await site.api.post("/v1/stacks", json={"name": "s1", "template": STACK})
        assert response.status_code == 201, response.text
        assert (await site.vnf("fw") or {})["recovery_policy"] == "restart"
        wrong = STACK.replace("recovery_policy: restart", "recovery_policy: sometimes")
        refused = await site.api.post("/v1/stacks", json={"name": "s2", "template": wrong})
        assert refused.status_code in (400, 422) and "recovery_policy" in refused.text


@contextlib.asynccontextmanager
async def _h1_on_the_follower(
    tmp_path: Path, url_a: str, url_b: str, settings: dict[str, Any] = FAST
) -> AsyncIterator[tuple[Site, Site]]:
    """Controllers a (leading) and b on one store (b's through ``url_b``), h2's agent on a,
    h1's on b, and v-rec (policy recover) running on h1."""
    from tests.integration.test_leadership import leads, share_images

    async with (
        running_site(tmp_path / "a", url_a, **settings) as a,
        second_controller(tmp_path / "b", a, url_b, **settings) as b,
    ):
        assert leads(a) and not leads(b)
        await a.join("h2")
        await _catalogue(a)
        share_images(a, b)
        await b.join("h1")
        await _all_on(a, "h1", "h2", {"v-rec": "recover"})
        yield a, b


async def test_with_two_controllers_the_leader_recovers_a_host_whose_agent_was_on_the_other(
    tmp_path: Path, db_url: str | None
) -> None:
    """h1's agent is connected to the follower; it dies; the follower's announcements of it
    stop and the leader (gateway/presence.py) judges it failed and recovers its VNF on h2."""
    if db_url is None:
        pytest.skip("two controllers share a store only on PostgreSQL")
    async with _h1_on_the_follower(tmp_path, db_url, db_url) as (a, b):
        killed = time.monotonic()
        await _kill(b, "h1")
        await a.wait_host("h1", "offline", timeout=3.0)
        assert time.monotonic() - killed < 3.0
        await eventually(lambda: _on(a, "v-rec", "h2", "running"), 15, "v-rec on h2")
        [recovery] = await _recoveries(a)
        assert (recovery["source_host"], recovery["destination_host"]) == ("h1", "h2")


async def test_a_controller_cut_off_from_the_store_stops_answering_so_its_host_fences_first(
    tmp_path: Path, db_url: str | None
) -> None:
    """The partition between the two nodes of a redundant site (issue 11 (c)): h1's agent
    keeps its session with controller b, but b no longer reaches the store (every connection
    of b to PostgreSQL goes through a relay that is cut: nothing forwarded, nothing closed).
    The leader (a) stops hearing of h1 and rebuilds its VNF on h2; b must stop answering h1's
    heartbeats (controller/vouching.py) so that h1 fences its copy BEFORE the recovery, and
    holds no copy once b reaches the store again. Before, b echoed on: two copies ran."""
    if db_url is None:
        pytest.skip("two controllers share a store only on PostgreSQL")
    prefix, _, rest = db_url.partition("@")
    server, _, database = rest.partition("/")
    store = Relay(server)
    try:
        relayed = f"{prefix}@{await store.start()}/{database}"
        async with _h1_on_the_follower(tmp_path, db_url, relayed) as (a, b):
            agent = b.agents["h1"].agent
            v_rec = str((await a.vnf("v-rec") or {})["id"])

            store.cut()
            await a.wait_host("h1", "offline", timeout=10.0)
            [recovery] = await eventually(lambda: _recoveries(a), 10, "the recovery")
            recovered_at = dt.datetime.fromisoformat(recovery["created_at"]).timestamp()
            assert agent.fence.fenced_at is not None, "h1 did not fence: b answered on"
            assert agent.fence.fenced_at < recovered_at  # fenced first
            assert agent.connected.is_set()  # its session with b lived on: b fell silent
            await eventually(lambda: _on(a, "v-rec", "h2", "running"), 15, "v-rec on h2")

            store.mend()  # b reaches the store again: h1 follows the snapshot, no stale copy
            await a.wait_host("h1", "online", timeout=15.0)

            async def clean() -> bool:
                return v_rec not in {d.instance_id for d in await agent.compute.list_domains()}

            await eventually(clean, 10, "h1 without its stale copy")
    finally:
        await store.close()


async def test_a_chain_through_a_failed_host_forwards_again_through_the_recovered_copies(
    tmp_path: Path,
) -> None:
    """Both services of a chain attached on node1 run on node2; node2 dies; they are rebuilt
    on node1 and the chain's steering is planned again: a frame walks through both, in order,
    on node1 alone (tests/integration/test_chains_across_hosts.py's walker)."""
    from tests.integration.test_chains import settled
    from tests.integration.test_chains_across_hosts import Wire, service

    async with running_site(tmp_path, **FAST) as site:
        agents = {name: await site.join(name) for name in ("node1", "node2")}
        agents["node1"].agent.network.extra_ports.update({"cust0", "net0"})  # type: ignore[attr-defined]
        await site.catalogue(networks=())
        assert (await site.api.post("/v1/hosts/node1/lock")).status_code == 202
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router", "a"), service("firewall", "b")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        await settled(site)
        assert (await site.api.post("/v1/hosts/node1/unlock")).status_code == 200
        wire = Wire(site, agents)
        await wire.learn()
        assert set(wire.hosts.values()) == {"node2"}, wire.hosts
        wire.check(["router", "firewall"])

        await _kill(site, "node2")

        async def forwards_on_node1() -> bool:
            await wire.learn()
            if set(wire.hosts.values()) != {"node1"}:
                return False
            try:
                wire.check(["router", "firewall"])
            except (AssertionError, KeyError):
                return False
            return True

        await eventually(forwards_on_node1, 15, "the chain forwarding through node1 alone")
        assert {m["vnf"] for m in await _recoveries(site)} == {"c1-router-vnf", "c1-firewall-vnf"}
