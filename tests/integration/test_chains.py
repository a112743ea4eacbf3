"""Stacks and service chains on a real controller and agent (fake drivers): make-before-break
changes land as one bundle of only the changed flows; a failed insert leaves the old path and
nothing behind; stack updates touch only what changed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from edgecloud.chains.planning import Port, ServiceHop, steering
from edgecloud.services import chain_paths
from tests.integration.harness import AgentHandle, Site, eventually, running_site

SERVICE = """
heat_template_version: 2018-08-31
description: a bump-in-the-wire service
parameters:
  flavor: {type: string, default: small}
resources:
  left: {type: OS::Neutron::Net}
  right: {type: OS::Neutron::Net}
  vnf:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: {get_param: flavor}
      networks:
        - {network: {get_resource: left}, tag: customer}
        - {network: {get_resource: right}, tag: network}
  service:
    type: Edgecloud::Chain::Service
    properties: {server: {get_resource: vnf}, customer_nic: 0, network_nic: 1}
outputs:
  vnf_name: {value: {get_attr: [vnf, name]}}
"""


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": SERVICE, **extra}


async def chain(site: Site, name: str = "c1") -> dict[str, Any]:
    response = await site.api.get(f"/v1/chains/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def settled(site: Site, name: str = "c1", timeout: float = 30.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        c = await chain(site, name)
        return c if c["operation"] is None and c["path_applied"] else None

    return dict(await eventually(check, timeout, f"chain {name} settled"))


def expected_flows(c: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    by_name = {s["name"]: s for s in c["services"]}
    hops = [ServiceHop(by_name[n]["instance_id"], 0, 1) for n in c["path"]]
    flows = steering(Port(name="cust0"), Port(name="net0"), hops)
    return {_port(agent_ports, k): (_port(agent_ports, v),) for k, v in flows.items()}


agent_ports: Any = None


def _port(network: Any, key: str) -> str:
    port = Port.parse(key)
    return port.name if port.name else network.vnic_port(port.instance_id, port.vnic_index)


async def setup(site: Site) -> AgentHandle:
    global agent_ports
    handle = await site.join("node1")
    handle.agent.network.extra_ports.update({"cust0", "net0"})  # type: ignore[attr-defined]
    agent_ports = handle.agent.network
    await site.catalogue(networks=())
    return handle


class SwitchStatements:
    """The statements each chain switch's transaction sends the store
    (``services.chain_paths.switch_path``; told apart by the connection its session holds)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, site: Site) -> None:
        self.runs: list[list[str]] = []
        self._current: list[str] | None = None
        self._connections: set[int] = set()
        switch, open_transaction = chain_paths.switch_path, chain_paths.transaction
        recorder = self

        @contextlib.asynccontextmanager
        async def transaction(sessions: Any) -> AsyncIterator[Any]:
            async with open_transaction(sessions) as s:
                if recorder._current is not None:
                    recorder._connections.add(id((await s.connection()).sync_connection))
                yield s

        async def switching(ctx: Any, chain_id: str) -> dict[str, int]:
            self._current, self._connections = [], set()
            try:
                return await switch(ctx, chain_id)
            finally:
                self.runs.append(self._current)
                self._current = None

        def executed(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if self._current is not None and id(conn) in self._connections:
                self._current.append(statement.split(None, 1)[0].upper())

        monkeypatch.setattr(chain_paths, "transaction", transaction)
        monkeypatch.setattr(chain_paths, "switch_path", switching)
        engine = site.controller.gateway.ctx.sessions.kw["bind"]  # type: ignore[union-attr]
        event.listen(engine.sync_engine, "before_cursor_execute", executed)

    def check(self) -> None:
        """Each switch: the chain, where its instances are, then only writes (the bump and
        the chain's rows): no read after a write, six statements at most."""
        assert self.runs, "no switch seen"
        for run in self.runs:
            assert run[:2] == ["SELECT", "SELECT"] and "SELECT" not in run[2:], run
            assert len(run) <= 6, run


async def test_chain_changes_are_make_before_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_site(tmp_path) as site:
        switches = SwitchStatements(monkeypatch, site)
        handle = await setup(site)
        network = handle.agent.network
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router"), service("firewall")]}  # fmt: skip
        response = await site.api.post("/v1/chains", json=body)
        assert response.status_code == 202, response.text
        c = await settled(site)
        assert c["path"] == ["router", "firewall"] and c["status"] == "active"
        assert network.steering == expected_flows(c)  # type: ignore[attr-defined]
        boots = {v["name"]: v["boot_id"] for v in (await site.api.get("/v1/vnfs")).json()}

        # insert in the middle: the new service's 2 flows first (prepare), then ONE bundle
        # re-points the 2 neighbours (switch); nothing else restarted
        bundles = len(network.bundles)  # type: ignore[attr-defined]
        response = await site.api.post(
            "/v1/chains/c1/services", json=service("wanopt", after="router")
        )
        assert response.status_code == 202, response.text
        c = await settled(site)
        assert c["path"] == ["router", "wanopt", "firewall"]
        assert network.steering == expected_flows(c)  # type: ignore[attr-defined]
        new_bundles = network.bundles[bundles:]  # type: ignore[attr-defined]
        assert [len(b) for b in new_bundles] == [2, 2]
        assert c["last_result"]["kind"] == "insert" and c["last_result"]["switchover_ms"] >= 0
        after = {v["name"]: v["boot_id"] for v in (await site.api.get("/v1/vnfs")).json()}
        assert all(after[name] == boot for name, boot in boots.items())

        # remove it again; its stack and VNF go
        assert (await site.api.delete("/v1/chains/c1/services/wanopt")).status_code == 202
        c = await settled(site)
        assert c["path"] == ["router", "firewall"]
        assert network.steering == expected_flows(c)  # type: ignore[attr-defined]
        await eventually(lambda: _stack_gone(site, "c1-wanopt"), 30, "wanopt's stack deleted")

        # replace the firewall
        response = await site.api.put("/v1/chains/c1/services/firewall", json=service("firewall2"))
        assert response.status_code == 202, response.text
        c = await settled(site)
        assert c["path"] == ["router", "firewall2"]
        assert network.steering == expected_flows(c)  # type: ignore[attr-defined]
        await eventually(
            lambda: _stack_gone(site, "c1-firewall"), 30, "old firewall's stack deleted"
        )

        # reorder
        assert (
            await site.api.post("/v1/chains/c1/order", json={"services": ["firewall2", "router"]})
        ).status_code == 202
        c = await settled(site)
        assert c["path"] == ["firewall2", "router"]
        assert network.steering == expected_flows(c)  # type: ignore[attr-defined]

        # delete: flows, stacks, VNFs all go
        assert (await site.api.delete("/v1/chains/c1")).status_code == 202
        await eventually(lambda: _chain_gone(site, "c1"), 30, "chain deleted")
        await eventually(lambda: _no_vnfs(site), 30, "every VNF deleted")
        await eventually(lambda: _stacks_empty(site), 30, "every stack deleted")
        assert network.steering == {}  # type: ignore[attr-defined]
        switches.check()
        assert len(switches.runs) == 6, switches.runs  # create, insert, remove, replace, ...


async def test_failed_insert_keeps_old_path_and_leaves_nothing(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        handle = await setup(site)
        network = handle.agent.network
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router")]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 202
        c = await settled(site)
        flows_before = dict(network.steering)  # type: ignore[attr-defined]
        handle.agent.compute.fail_next("start", "injected: the new VNF never boots", times=1000)  # type: ignore[attr-defined]
        response = await site.api.post(
            "/v1/chains/c1/services", json=service("broken", health_timeout=3)
        )
        assert response.status_code == 202
        c = await settled(site, timeout=40)
        assert c["path"] == ["router"]
        assert "insert failed, old path kept" in c["last_error"]
        assert network.steering == flows_before  # type: ignore[attr-defined]
        await eventually(
            lambda: _stack_gone(site, "c1-broken"), 30, "the broken service's stack removed"
        )
        names = [v["name"] for v in (await site.api.get("/v1/vnfs")).json()]
        assert not [n for n in names if "broken" in n]


async def test_bad_templates_are_refused_before_anything_exists(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await setup(site)
        bad = SERVICE.replace("OS::Nova::Server", "OS::Nova::Banana")
        response = await site.api.post("/v1/stacks", json={"name": "s1", "template": bad})
        assert response.status_code == 422
        error = response.json()["error"]
        assert "line" in error["message"] and "OS::Nova::Banana" in error["message"]
        missing = {"name": "s2", "template": SERVICE, "parameters": {"nope": 1}}
        response = await site.api.post("/v1/stacks", json=missing)
        assert (
            response.status_code == 422 and response.json()["error"]["field"] == "parameters.nope"
        )
        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [{"name": "x", "template": bad}]}  # fmt: skip
        assert (await site.api.post("/v1/chains", json=body)).status_code == 422
        body["services"] = [service("good"), {"name": "x", "template": bad}]  # the second is bad
        assert (await site.api.post("/v1/chains", json=body)).status_code == 422
        no_marker = SERVICE[: SERVICE.index("  service:")]
        body["services"] = [{"name": "y", "template": no_marker}]
        response = await site.api.post("/v1/chains", json=body)
        assert response.status_code == 422 and "Edgecloud::Chain::Service" in response.text
        await eventually(lambda: _no_vnfs(site), 30, "the good service's VNF deleted too")
        await eventually(
            lambda: _stacks_empty(site), 30, "every stack of the refused chain deleted"
        )
        assert (await site.api.get("/v1/chains")).json() == []
        await eventually(lambda: _networks_empty(site), 30, "the stacks' networks deleted")


VCPE = """
heat_template_version: 2018-08-31
parameters:
  router_flavor: {type: string, default: small}
resources:
  lan: {type: OS::Neutron::Net}
  wan: {type: OS::Neutron::Net}
  wan_port:
    type: OS::Neutron::Port
    properties: {network: {get_resource: wan}}
  router:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: {get_param: router_flavor}
      networks:
        - {network: {get_resource: lan}, tag: lan, vif_model: e1000}
        - {port: {get_resource: wan_port}, tag: wan}
  firewall:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      networks:
        - {network: {get_resource: lan}, tag: inside}
outputs:
  router_wan_mac: {value: {get_attr: [wan_port, mac_address]}}
  names: {value: {list_join: [",", [{get_attr: [router, name]}, {get_attr: [firewall, name]}]]}}
"""


async def test_stack_update_touches_only_the_changed_server(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await setup(site)
        assert (
            await site.api.post("/v1/flavors", json={"name": "big", "vcpus": 2, "memory_mib": 512})
        ).status_code == 201
        response = await site.api.post("/v1/stacks", json={"name": "s1", "template": VCPE})
        assert response.status_code == 201, response.text
        stack = response.json()
        assert stack["outputs"]["names"] == "s1-router,s1-firewall"
        router = await site.wait_vnf("s1-router", "running")
        firewall = await site.wait_vnf("s1-firewall", "running")
        assert [n["tag"] for n in router["nics"]] == ["lan", "wan"]
        assert router["nics"][1]["mac"] == stack["outputs"]["router_wan_mac"]
        response = await site.api.put(
            "/v1/stacks/s1", json={"template": VCPE, "parameters": {"router_flavor": "big"}}
        )
        assert response.status_code == 202, response.text
        assert "1 update in place" in response.json()["status_reason"]

        async def resized() -> dict[str, Any] | None:
            vnf = await site.vnf("s1-router")
            return (
                vnf
                if vnf
                and vnf["flavor"] == "big"
                and vnf["boot_id"] != router["boot_id"]
                and vnf["status"] == "running"
                else None
            )

        await eventually(resized, 20, "router rebooted into the big flavor")
        after = await site.vnf("s1-firewall")
        assert after is not None and after["boot_id"] == firewall["boot_id"], (
            "the firewall was touched"
        )
        # a network change replaces the network and the servers on it, nothing else
        vlan = VCPE.replace(
            "  lan: {type: OS::Neutron::Net}",
            "  lan: {type: OS::Neutron::Net, properties: {segmentation_id: 2333}}",
        )
        response = await site.api.put(
            "/v1/stacks/s1", json={"template": vlan, "parameters": {"router_flavor": "big"}}
        )
        assert response.status_code == 202, response.text
        assert (
            "2 replace" in response.json()["status_reason"]
            or "3 replace" in response.json()["status_reason"]
        )
        nets = {
            n["name"]: n["segmentation_id"] for n in (await site.api.get("/v1/networks")).json()
        }
        assert nets.get("s1-lan-r2") == 2333, nets
        await eventually(
            lambda: _network_gone(site, "s1-lan"), 30, "the replaced network removed once unused"
        )
        assert (await site.api.delete("/v1/stacks/s1")).status_code == 202
        await eventually(lambda: _stacks_empty(site), 30, "stack deleted")
        assert (await site.api.get("/v1/networks")).json() == []


async def _stack_gone(site: Site, name: str) -> bool:
    return (await site.api.get(f"/v1/stacks/{name}")).status_code == 404


async def _chain_gone(site: Site, name: str) -> bool:
    return (await site.api.get(f"/v1/chains/{name}")).status_code == 404


async def _no_vnfs(site: Site) -> bool:
    return (await site.api.get("/v1/vnfs")).json() == []


async def _network_gone(site: Site, name: str) -> bool:
    return (await site.api.get(f"/v1/networks/{name}")).status_code == 404


async def _networks_empty(site: Site) -> bool:
    return (await site.api.get("/v1/networks")).json() == []


async def _stacks_empty(site: Site) -> bool:
    return (await site.api.get("/v1/stacks")).json() == []


pytestmark = pytest.mark.timeout(120)
