"""A chain whose services run on two hosts (real controller, two real agents, fake drivers).

The services' templates put them in one anti-affinity group, so two of them land on
different hosts (the minimal way to spread a chain; nothing chain-specific in the
scheduler). A sampler walks the two agents' steering tables as they are at that instant
(each fake bundle is atomic, as an OpenFlow bundle is) every millisecond while the chain is
changed: a frame from the ingress must reach the egress through every service in order,
and back, at every sample (the make-before-break claim across hosts, on what the agents
really hold). node2 commits each bundle 0.2 s late, so hosts switching at different moments
is what is tested (without the prepare phase this test fails). Each switch reaches each host
as a steering-only message ahead of the snapshot of its version (gateway/steering.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from edgecloud.chains.planning import HOP_TAGS, tag_of
from edgecloud.gateway.sessions import AgentSession
from edgecloud.protocol import messages
from edgecloud.services import chain_paths as chain_service
from edgecloud.store.database import transaction
from tests.integration.harness import AgentHandle, Site, eventually, running_site
from tests.integration.test_chains import chain, settled

SPREAD = """
heat_template_version: 2018-08-31
parameters:
  group: {type: string, default: spread}
resources:
  left: {type: OS::Neutron::Net}
  right: {type: OS::Neutron::Net}
  vnf:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      scheduler_hints: {group: {get_param: group}}
      networks:
        - {network: {get_resource: left}}
        - {network: {get_resource: right}}
  service:
    type: Edgecloud::Chain::Service
    properties: {server: {get_resource: vnf}, customer_nic: 0, network_nic: 1}
"""
NODES = ("node1", "node2")


def service(name: str, group: str = "spread") -> dict[str, Any]:
    return {"name": name, "template": SPREAD, "parameters": {"group": group}}


class Wire:
    """The two agents' steering tables, walked like frames on the wire (a ``vlan:<tag>``
    output reaches every other node, whose ``vlan:<tag>`` flow delivers it)."""

    def __init__(self, site: Site, agents: dict[str, AgentHandle]) -> None:
        self.site, self.agents = site, agents
        self.ports: dict[str, tuple[str, str]] = {}  # port name -> (VNF name, other vNIC port)
        self.hosts: dict[str, str] = {}  # VNF name -> host name (where its copy runs)
        self.samples, self.failures = 0, list[str]()

    async def learn(self) -> None:
        """Remember every service port the chain ever had (retiring ones included)."""
        c = await chain(self.site)
        vnfs = {v["id"]: v for v in (await self.site.api.get("/v1/vnfs")).json()}
        net = self.agents["node1"].agent.network
        for svc in c["services"]:
            vnf = vnfs.get(svc["instance_id"])
            if vnf is None or vnf["host"] is None:
                continue
            cust = net.vnic_port(svc["instance_id"], svc["customer_vnic"])
            netp = net.vnic_port(svc["instance_id"], svc["network_vnic"])
            self.ports[cust], self.ports[netp] = (vnf["name"], netp), (vnf["name"], cust)
            self.hosts[vnf["name"]] = vnf["host"]

    def flows(self, node: str) -> dict[str, tuple[str, ...]]:
        return dict(self.agents[node].agent.network.steering)  # type: ignore[attr-defined]

    def walk(self, start: str, goal: str) -> list[str]:
        """The VNFs a frame entering at ``start`` on node1 crosses to ``goal``."""
        node, port, crossed = "node1", start, list[str]()
        tables = {n: self.flows(n) for n in NODES}  # one instant: no await while walking
        for _ in range(20):
            reached = set()
            for out in tables[node].get(port, ()):
                if tag_of(out) is None:
                    reached.add((node, out))
                    continue
                for other in NODES:
                    if other != node:
                        reached |= {(other, p) for p in tables[other].get(out, ())}
            running = {(n, p) for n, p in reached if self._runs(n, p)}
            if len(running) != 1:
                raise AssertionError(f"frame from {port}@{node} reached {running}: {crossed}")
            ((node, port),) = running
            if port == goal:
                return crossed
            vnf, port = self.ports[port]
            crossed.append(vnf)
        raise AssertionError(f"frame loops: {crossed}")

    def _runs(self, node: str, port: str) -> bool:
        if port in ("cust0", "net0"):
            return node == "node1"
        return port in self.ports and self.hosts[self.ports[port][0]] == node

    def check(self, path: list[str]) -> None:
        """Both directions cross the chain's VNFs (named ``c1-<service>-vnf``) in order."""
        assert self.walk("cust0", "net0") == [f"c1-{s}-vnf" for s in path]
        assert self.walk("net0", "cust0") == [f"c1-{s}-vnf" for s in reversed(path)]

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.samples % 20 == 0:
                await self.learn()
            try:
                self.walk("cust0", "net0")
                self.walk("net0", "cust0")
            except (AssertionError, KeyError) as exc:
                self.failures.append(repr(exc))
            self.samples += 1
            await asyncio.sleep(0.001)


def slow_down(handle: AgentHandle) -> None:
    """This node commits every chain bundle 0.2 s after it was asked to."""
    network = handle.agent.network
    commit = network.apply_steering

    async def late(flows: Any, fresh: bool = True) -> int:
        await asyncio.sleep(0.2)
        return await commit(flows, fresh)

    network.apply_steering = late  # type: ignore[method-assign]


class Sent:
    """What the gateway sends each host: (type, version) in wire order, and the steering
    each carried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_host: dict[str, list[tuple[str, int]]] = {}
        self.tables: dict[tuple[str, str, int], Any] = {}
        send = AgentSession.send
        sent = self

        async def recording(session: AgentSession, message: dict[str, Any]) -> None:
            await send(session, message)
            kind = message["t"]
            if kind in ("steer", "steer_chain", "desired"):
                kinds = sent.by_host.setdefault(session.host_id, [])
                kinds.append((kind, message["version"]))
                table = {
                    "steer": lambda m: m["steering"],
                    "steer_chain": lambda m: (m["before"], m["after"]),
                    "desired": lambda m: m["spec"]["steering"],
                }[kind](message)
                sent.tables[(session.host_id, kind, message["version"])] = table

        monkeypatch.setattr(AgentSession, "send", recording)

    def steered_ahead(self, versions: dict[str, int], kind: str = "steer_chain") -> None:
        """Each host got the ``kind`` push of its version before the snapshot of that
        version, carrying the snapshot's flows: a ``steer`` all of them; a ``steer_chain``
        the chain's flows after the change, none of its flows before it that the change
        removed, over the table of the host's previous snapshot."""
        for host_id, version in versions.items():
            sent = self.by_host.get(host_id, [])
            assert (kind, version) in sent and ("desired", version) in sent, sent
            assert sent.index((kind, version)) < sent.index(("desired", version)), sent
            pushed, table = (
                self.tables[(host_id, kind, version)],
                self.tables[(host_id, "desired", version)],
            )
            if kind == "steer":
                assert pushed and pushed == table
                continue
            before, after = pushed
            assert after and after.items() <= table.items(), (after, table)
            assert not (before.keys() - after.keys()) & table.keys(), (before, table)
            earlier = [v for k, v in sent if k == "desired" and v < version]
            if earlier:  # the change was made over the table the host had
                held = self.tables[(host_id, "desired", max(earlier))]
                assert before.items() <= held.items(), (before, held)


@contextlib.asynccontextmanager
async def sampling(wire: Wire) -> Any:
    stop = asyncio.Event()
    task = asyncio.create_task(wire.sample(stop))
    try:
        yield
    finally:
        stop.set()
        await task
    assert wire.samples > 10 and not wire.failures, (wire.samples, wire.failures[:3])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # 24 s a run: SQLite's
async def test_chain_across_two_hosts_changes_without_a_gap(  # chains are test_chains.py's
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(monkeypatch)
    async with running_site(tmp_path, db_url) as site:
        agents = {name: await site.join(name) for name in NODES}
        agents["node1"].agent.network.extra_ports.update({"cust0", "net0"})  # type: ignore[attr-defined]
        slow_down(agents["node2"])
        await site.catalogue(networks=())
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router"), service("firewall")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        c = await settled(site)
        wire = Wire(site, agents)
        await wire.learn()
        assert set(wire.hosts.values()) == set(NODES), wire.hosts  # spread over both
        wire.check(["router", "firewall"])
        tags = [h["tags"] for h in c["hops"]]  # [forward, reverse] per hop
        flat = [t for pair in tags for t in pair]
        assert len(set(flat)) == 6 and all(t in HOP_TAGS for t in flat), c["hops"]
        assert any(tag_of(k) for k in wire.flows("node2")), "node2 receives tagged hops"

        async with sampling(wire):  # insert after the router (anywhere: its own group)
            response = await site.api.post(
                "/v1/chains/c1/services", json={**service("wanopt", "w"), "after": "router"}
            )
            assert response.status_code == 202, response.text
            c = await settled(site)
        assert c["path"] == ["router", "wanopt", "firewall"]
        wire.check(c["path"])
        result = c["last_result"]
        assert result["kind"] == "insert" and result["switchover_ms"] >= 0, result
        assert result["prepare_ms"] >= 0 and result["per_host_ms"], result
        sent.steered_ahead({h: int(v) for h, v in result["flows_versions"].items()})
        kept = [h["tags"] for h in c["hops"]]
        assert kept[0] == tags[0] and kept[3] == tags[2], (tags, kept)  # unchanged hops
        assert not set(kept[1] + kept[2]) & set(flat), (tags, kept)  # new hops: fresh tags

        async with sampling(wire):  # replace the firewall
            response = await site.api.put(
                "/v1/chains/c1/services/firewall", json=service("firewall2", "f")
            )
            assert response.status_code == 202, response.text
            c = await settled(site)
        wire.check(["router", "wanopt", "firewall2"])
        sent.steered_ahead({h: int(v) for h, v in c["last_result"]["flows_versions"].items()})

        async with sampling(wire):  # remove the wanopt
            assert (await site.api.delete("/v1/chains/c1/services/wanopt")).status_code == 202
            c = await settled(site)
        wire.check(["router", "firewall2"])
        assert len(c["hops"]) == 3

        assert (await site.api.delete("/v1/chains/c1")).status_code == 202

        async def flows_gone() -> bool:
            return (await site.api.get("/v1/chains/c1")).status_code == 404 and not any(
                wire.flows(n) for n in NODES
            )

        await eventually(flows_gone, 30, "chain and its flows gone from both nodes")


def older_agents(monkeypatch: pytest.MonkeyPatch, says: dict[str, tuple[str, ...]]) -> None:
    """Agents of hosts in ``says`` speak protocol 1 only (no ``protocols``, ``release``: a
    version-1 session gets optional messages only when asked) and leave out of their hello the
    capabilities not listed (``steers``, ``chain_steers``): agents from before those messages."""
    make = messages.make

    def hello(type_: str, **fields: Any) -> dict[str, Any]:
        if type_ == "hello" and fields.get("host") in says:
            fields.pop("protocols", None)
            fields.pop("release", None)
            for capability in ("steers", "chain_steers"):
                if capability not in says[fields["host"]]:
                    fields.pop(capability, None)
        return make(type_, **fields)

    monkeypatch.setattr(messages, "make", hello)


async def test_older_agents_switch_without_a_gap_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """node1's agent takes whole tables only (``steers``): it gets the host's table read
    after the commit, as ``steer``; node2's takes neither: it gets the snapshot alone. Both
    tables walked every millisecond through a replace."""
    sent = Sent(monkeypatch)
    async with running_site(tmp_path) as site:
        tokens = {name: await site.add_host(name) for name in NODES}
        ids = {name: (await site.host(name))["id"] for name in NODES}
        older_agents(monkeypatch, {"node1": ("steers",), "node2": ()})
        for name in NODES:
            await site.start_agent(name, tokens[name])
            await site.wait_host(name, "online")
        agents = site.agents
        agents["node1"].agent.network.extra_ports.update({"cust0", "net0"})  # type: ignore[attr-defined]
        slow_down(agents["node2"])
        await site.catalogue(networks=())
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router"), service("firewall")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        await settled(site)
        wire = Wire(site, agents)
        await wire.learn()
        assert set(wire.hosts.values()) == set(NODES), wire.hosts  # spread over both
        gateway = site.controller.gateway
        assert gateway is not None
        sessions = {n: gateway.sessions[ids[n]] for n in NODES}
        assert [sessions[n].protocol for n in NODES] == [1, 1]
        assert (sessions["node1"].steers, sessions["node1"].chain_steers) == (True, False)
        assert (sessions["node2"].steers, sessions["node2"].chain_steers) == (False, False)

        async with sampling(wire):  # replace the firewall
            response = await site.api.put(
                "/v1/chains/c1/services/firewall", json=service("firewall2", "f")
            )
            assert response.status_code == 202, response.text
            c = await settled(site)
        assert c["path"] == ["router", "firewall2"], c
        wire.check(c["path"])
        node1 = sent.by_host[ids["node1"]]  # its pushes of every phase: whole tables
        steered = [v for k, v in node1 if k == "steer" and ("desired", v) in node1]
        assert steered, node1
        for version in steered:
            sent.steered_ahead({ids["node1"]: version}, kind="steer")
        pushed = {kind for host, kinds in sent.by_host.items() for kind, _ in kinds}
        assert "steer_chain" not in pushed, sent.by_host
        assert {k for k, _ in sent.by_host[ids["node2"]]} == {"desired"}, sent.by_host


async def test_a_migrating_service_is_fed_on_both_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an instance is on two hosts (services.chain_paths.instance_hosts: what migration
    reports), each of its hops reaches both copies, whichever runs; afterwards only the
    destination's."""
    async with running_site(tmp_path) as site:
        agents = {name: await site.join(name) for name in NODES}
        agents["node1"].agent.network.extra_ports.update({"cust0", "net0"})  # type: ignore[attr-defined]
        await site.catalogue(networks=())
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router"), service("firewall")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        c = await settled(site)
        wire = Wire(site, agents)
        await wire.learn()
        router = next(s for s in c["services"] if s["name"] == "router")
        src = wire.hosts["c1-router-vnf"]
        dst = next(n for n in NODES if n != src)
        ids = {n: (await site.host(n))["id"] for n in NODES}
        ports = {p for p, (vnf, _) in wire.ports.items() if vnf == "c1-router-vnf"}
        agents[dst].agent.network.extra_ports.update(ports)  # type: ignore[attr-defined]
        ctx = site.controller.gateway.ctx  # type: ignore[union-attr]
        located = chain_service.instance_hosts

        async def moved(where: tuple[str, ...], before: list[str]) -> None:
            async def hosts(s: Any, ids: Any) -> dict[str, tuple[str, ...]]:
                found = await located(s, ids)
                return {i: where if i == router["instance_id"] else h for i, h in found.items()}

            monkeypatch.setattr(chain_service, "instance_hosts", hosts)
            async with transaction(ctx.sessions) as s:
                versions = await chain_service.instance_moved(s, router["instance_id"], before)
            for host_id in versions:
                ctx.notifier.host_changed(host_id)

            async def applied() -> bool:
                for name in NODES:
                    host = await site.host(name)
                    if host["id"] in versions and host["applied_version"] < versions[host["id"]]:
                        return False
                return True

            await eventually(applied, 15, "both nodes applied the moved steering")

        await moved((ids[src], ids[dst]), [])  # the migration starts: on both hosts
        for runs_on in (src, dst):
            wire.hosts["c1-router-vnf"] = runs_on
            wire.check(["router", "firewall"])
        assert ports & set(wire.flows(dst)), "the destination steers the router's ports"

        await moved((ids[dst],), [ids[src]])  # done: only the destination
        wire.check(["router", "firewall"])
        assert not ports & set(wire.flows(src)), "the source no longer steers them"


async def test_networks_never_take_a_hop_tag(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        template = "\n".join([
            "heat_template_version: 2018-08-31",
            "resources:",
            "  n: {type: OS::Neutron::Net, properties: {segmentation_id: 3001}}",
        ])  # fmt: skip
        response = await site.api.post("/v1/stacks", json={"name": "s1", "template": template})
        assert response.status_code == 422, response.text
        assert "reserved for chain hops" in response.json()["error"]["message"]
        assert (await site.api.get("/v1/stacks")).json() == []
        response = await site.api.post("/v1/networks", json={"name": "n1", "segmentation_id": 3500})
        assert response.status_code == 422, response.text  # the schema says so (le=2999)
        assert response.json()["error"]["field"] == "segmentation_id", response.text
        assert (await site.api.get("/v1/networks")).json() == []  # nothing half-created
        response = await site.api.post("/v1/networks", json={"name": "n1"})
        assert response.status_code == 201 and response.json()["segmentation_id"] < HOP_TAGS.start
