"""A real controller and real agents over mTLS on loopback: enrollment, desired state,
adoption after an agent restart, resume by version, faults and alarms, host loss.
Runs against SQLite and, when reachable, PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgecloud.drivers.compute.base import PowerState
from tests.integration.harness import Site, eventually, running_site

NICS = [{"network": "lan"}, {"network": "wan", "model": "e1000"}, {"network": "mgmt", "tag": "oam"}]


async def create_vnf(
    site: Site, name: str, nics: list[dict[str, object]] = NICS, **extra: object
) -> dict:
    body = {"name": name, "image": "img", "flavor": "small", "nics": nics, **extra}
    response = await site.api.post("/v1/vnfs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_vnf_runs_with_vnics_in_declared_order(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.catalogue()
        created = await create_vnf(site, "v1")
        assert [n["network"] for n in created["nics"]] == ["lan", "wan", "mgmt"]
        assert [n["pci_slot"] for n in created["nics"]] == [3, 5, 7]
        vnf = await site.wait_vnf("v1", "running")
        assert vnf["host"] == "node1"
        assert [n["model"] for n in vnf["nics"]] == ["virtio", "e1000", "virtio"]
        # the fake guest reports its vNICs on the console; the controller verifies them
        vnf = await eventually(lambda: _verified(site, "v1"), what="binding verified")
        assert [n["guest_name"] for n in vnf["nics"]] == ["eth0", "eth1", "eth2"]
        host = await site.host("node1")
        assert host["applied_version"] == host["desired_version"]


async def _verified(site: Site, name: str) -> dict | None:
    vnf = await site.vnf(name)
    return vnf if vnf and vnf["binding_verified"] else None


async def test_agent_restart_adopts_running_vnf_without_restart(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        before = await site.wait_vnf("v1", "running")
        await agent.stop()
        restarted = await site.start_agent("node1")
        await eventually(lambda: _session_in_sync(site, "node1"), what="node1 in sync again")
        after = await site.wait_vnf("v1", "running")
        assert after["boot_id"] == before["boot_id"], "the VNF was restarted"
        domains = await restarted.agent.compute.list_domains()
        assert [d.state for d in domains] == [PowerState.RUNNING]


async def _session_in_sync(site: Site, name: str) -> bool:
    host = await site.host(name)
    return host["availability"] == "online" and host["applied_version"] == host["desired_version"]


async def test_reconnect_with_current_version_gets_no_snapshot(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running")
        applied = agent.agent.applier.applied_version
        await agent.stop()
        restarted = await site.start_agent("node1")
        await eventually(
            lambda: asyncio.sleep(0, restarted.agent.connected.is_set()), what="reconnected"
        )
        gateway = site.controller.gateway
        assert gateway is not None
        session = gateway.sessions[next(iter(gateway.sessions))]
        assert session.sent_version == applied  # nothing was pushed: the agent was current
        assert restarted.agent.applier.applied_version == applied


async def test_crashed_vnf_is_started_again(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        before = await eventually(lambda: _verified(site, "v1"), what="binding verified")
        domain = (await agent.agent.compute.list_domains())[0]
        agent.agent.compute.silence_next_boot(domain.name)  # type: ignore[attr-defined]
        agent.agent.compute.set_guest_agent(domain.name, False)  # type: ignore[attr-defined]
        agent.agent.compute.crash(domain.name)  # type: ignore[attr-defined]

        async def rebooted() -> dict | None:
            vnf = await site.vnf("v1")
            return (
                vnf
                if vnf and vnf["status"] == "running" and vnf["boot_id"] != before["boot_id"]
                else None
            )

        after = await eventually(rebooted, what="VNF running again with a new boot")
        # the previous boot's report does not verify the new boot's binding
        assert not after["binding_verified"]
        assert [n["guest_mac"] for n in after["nics"]] == [None, None, None]


async def test_failed_start_becomes_fault_and_alarm_then_recovers(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        agent.agent.compute.fail_next("start", "image file not found", times=10)  # type: ignore[attr-defined]
        await create_vnf(site, "v1")
        vnf = await site.wait_vnf("v1", "error")
        assert "image file not found" in vnf["fault"]
        alarms = (await site.api.get("/v1/alarms")).json()
        assert any(a["alarm_id"] == "700.001" and a["entity"] == "vnf=v1" for a in alarms)
        vnf = await site.wait_vnf("v1", "running", timeout=20)
        assert vnf["fault"] is None
        alarms = (await site.api.get("/v1/alarms")).json()
        assert not any(a["alarm_id"] == "700.001" for a in alarms)


async def test_a_nacked_version_is_acked_once_a_retry_applies_it(
    tmp_path: Path, db_url: str | None
) -> None:
    """The host's apply-failed alarm (raised by a nack) clears when the agent's periodic
    resync applies that version after all, not only at the controller's next push."""
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        agent.agent.compute.fail_next("start", "image file not found", times=10)  # type: ignore[attr-defined]
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running", timeout=20)

        async def acked() -> bool:
            host = await site.host("node1")
            alarms = (await site.api.get("/v1/alarms")).json()
            return (
                host["applied_version"] == host["desired_version"]
                and host["last_error"] is None
                and not [a for a in alarms if a["entity"] == "host=node1"]
            )

        await eventually(acked, 10, "the retried version acked, the alarm cleared")
        events = [
            e["kind"]
            for e in (await site.api.get("/v1/events")).json()
            if e["alarm_id"] == "200.011" and e["entity"] == "host=node1"
        ]
        assert sorted(events) == ["alarm-cleared", "alarm-raised"], events


async def test_host_loss_raises_alarm_and_clears_on_return(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await agent.stop()
        await site.wait_host("node1", "offline", timeout=10)
        alarms = (await site.api.get("/v1/alarms")).json()
        assert [a["alarm_id"] for a in alarms if a["entity"] == "host=node1"] == ["200.004"]
        await site.start_agent("node1")
        await site.wait_host("node1", "online")
        alarms = (await site.api.get("/v1/alarms")).json()
        assert not [a for a in alarms if a["entity"] == "host=node1"]
        events = (await site.api.get("/v1/events")).json()
        assert any(e["kind"] == "alarm-cleared" and e["entity"] == "host=node1" for e in events)


async def test_stop_start_reboot_delete(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        agent = await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        first = await site.wait_vnf("v1", "running")
        assert (
            await site.api.post("/v1/vnfs/v1/actions", json={"action": "stop"})
        ).status_code == 202
        await site.wait_vnf("v1", "stopped")
        assert (
            await site.api.post("/v1/vnfs/v1/actions", json={"action": "start"})
        ).status_code == 202
        second = await site.wait_vnf("v1", "running")
        assert second["boot_id"] != first["boot_id"]
        assert (
            await site.api.post("/v1/vnfs/v1/actions", json={"action": "reboot"})
        ).status_code == 202

        async def rebooted() -> dict | None:
            vnf = await site.vnf("v1")
            return (
                vnf
                if vnf and vnf["status"] == "running" and vnf["boot_id"] != second["boot_id"]
                else None
            )

        await eventually(rebooted, what="rebooted")
        response = await site.api.delete("/v1/vnfs/v1")
        assert response.status_code == 202 and response.json()["status"] == "deleting"
        await eventually(lambda: _gone(site, "v1"), what="VNF deleted")
        assert await agent.agent.compute.list_domains() == []


async def _gone(site: Site, name: str) -> bool:
    return (await site.api.get(f"/v1/vnfs/{name}")).status_code == 404


async def test_console_is_read_over_the_agent_channel(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running")
        response = await site.api.get("/v1/vnfs/v1/console")
        assert response.status_code == 200
        assert "EDGECLOUD-READY" in response.json()["output"]
        assert response.json()["host"] == "node1"


async def test_scheduler_respects_locked_hosts_and_anti_affinity(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.join("node2")
        await site.catalogue()
        assert (await site.api.post("/v1/hosts/node2/lock")).status_code == 202
        await create_vnf(site, "a1", anti_affinity_group="pair")
        assert (await site.wait_vnf("a1", "running"))["host"] == "node1"
        await create_vnf(site, "a2", nics=[{"network": "lan"}], anti_affinity_group="pair")
        vnf = await eventually(lambda: _faulted(site, "a2"), what="a2 unschedulable")
        assert vnf["status"] == "scheduling" and "no valid host" in vnf["fault"]
        assert (await site.api.post("/v1/hosts/node2/unlock")).status_code == 200
        assert (await site.wait_vnf("a2", "running"))["host"] == "node2"


async def _faulted(site: Site, name: str) -> dict | None:
    vnf = await site.vnf(name)
    return vnf if vnf and vnf["fault"] else None


async def test_hot_detach_and_attach_keep_other_vnics_in_place(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        before = await eventually(lambda: _verified(site, "v1"), what="binding verified")
        slots = {n["index"]: n["pci_slot"] for n in before["nics"]}
        response = await site.api.delete("/v1/vnfs/v1/nics/1")
        assert response.status_code == 202
        assert [(n["index"], n["pci_slot"]) for n in response.json()["nics"]] == [
            (0, slots[0]),
            (2, slots[2]),
        ]
        await eventually(lambda: _verified_with(site, "v1", 2), what="guest reports two vNICs")
        response = await site.api.post("/v1/vnfs/v1/nics", json={"network": "wan", "position": 1})
        assert response.status_code == 202, response.text
        assert [n["pci_slot"] for n in response.json()["nics"]] == [slots[0], slots[1], slots[2]]
        after = await eventually(
            lambda: _verified_with(site, "v1", 3), what="guest reports three vNICs"
        )
        assert after["boot_id"] == before["boot_id"], "hot-plug restarted the VNF"
        assert [n["guest_name"] for n in after["nics"]] == ["eth0", "eth1", "eth2"]
        conflict = await site.api.post("/v1/vnfs/v1/nics", json={"network": "wan", "position": 1})
        assert conflict.status_code == 409


async def _verified_with(site: Site, name: str, count: int) -> dict | None:
    vnf = await site.vnf(name)
    return vnf if vnf and len(vnf["nics"]) == count and vnf["binding_verified"] else None
