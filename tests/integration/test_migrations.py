"""Migrations on a real controller with two joined fake-driver agents: a live migration moves
the VNF (same boot, one copy), a cold one restarts it on the destination, refusals are 4xx
sentences, and a destination that goes away mid-way leaves the VNF running on its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.fake import FakeComputeDriver
from edgecloud.drivers.network.fake import FakeNetworkDriver, port_name
from tests.integration.harness import Site, eventually, running_site
from tests.integration.test_site import create_vnf

ADDRESSES = {"h1": "10.9.0.1", "h2": "10.9.0.2"}


async def _two_hosts(site: Site) -> None:
    for name, address in ADDRESSES.items():
        await site.join(name, address=address)
    await site.catalogue()


def _driver(site: Site, host: str) -> FakeComputeDriver:
    driver = site.agents[host].agent.compute
    assert isinstance(driver, FakeComputeDriver)
    return driver


async def _running_on(site: Site, vnf: str) -> tuple[dict[str, Any], str, str]:
    found = await site.wait_vnf(vnf, "running")
    source = str(found["host"])
    return found, source, next(h for h in ADDRESSES if h != source)


async def _finished(site: Site, migration_id: str, timeout: float = 20.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await site.api.get(f"/v1/migrations/{migration_id}")
        assert response.status_code == 200, response.text
        body = dict(response.json())
        return body if body["status"] in ("done", "failed") else None

    return dict(await eventually(check, timeout, f"migration {migration_id} finished"))


async def _domains(site: Site, host: str) -> dict[str, Any]:
    return {d.instance_id: d for d in await _driver(site, host).list_domains()}


async def _events(site: Site, text: str) -> list[str]:
    response = await site.api.get("/v1/events", params={"limit": 200})
    return [e["message"] for e in response.json() if text in e["message"]]


async def test_live_migration_moves_the_running_guest(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        assert (await site.host("h1"))["address"] == ADDRESSES["h1"]
        await create_vnf(site, "v1")
        before, source, destination = await _running_on(site, "v1")

        body = {"host": destination, "max_downtime_ms": 40}
        response = await site.api.post("/v1/vnfs/v1/migrate", json=body)
        assert response.status_code == 202, response.text
        started = response.json()
        assert (started["source_host"], started["destination_host"]) == (source, destination)
        assert started["kind"] == "live" and started["status"] == "queued"
        assert started["memory_copy"] == "auto"
        done = await _finished(site, started["id"])

        assert done["status"] == "done", done
        assert done["stats"]["total_ms"] >= 0 and "downtime_ms" in done["stats"]
        assert done["stats"]["memory_copy"] == "pre-copy"  # the fake hypervisor's auto
        assert done["max_downtime_ms"] == 40  # the limit the source's hypervisor was given:
        assert [p.max_downtime_ms for p in _driver(site, source).migrations_asked] == [40]
        after = await site.wait_vnf("v1", "running")
        assert after["host"] == destination
        assert after["boot_id"] == before["boot_id"]  # the same boot: not restarted
        assert [n["mac"] for n in after["nics"]] == [n["mac"] for n in before["nics"]]
        assert before["id"] not in await _domains(site, source)  # one copy
        moved = (await _domains(site, destination))[before["id"]]
        assert moved.state.value == "running" and moved.boot_id == before["boot_id"]
        listed = (await site.api.get("/v1/migrations")).json()
        assert [m["id"] for m in listed] == [started["id"]]
        assert await _events(site, f"live migration {started['id'][:8]} to {destination} done")

        async def settled() -> bool:  # both agents applied the move
            hosts = [await site.host(h) for h in ADDRESSES]
            return all(h["applied_version"] == h["desired_version"] for h in hosts)

        await eventually(settled, what="both hosts applied the move")
        moved_vnf = await site.vnf("v1") or {}
        assert moved_vnf["boot_id"] == before["boot_id"]
        # what the guest reported of its vNICs at boot (on the source's console) still holds
        assert before["binding"] == "verified" and moved_vnf["binding"] == "verified", moved_vnf
        # the destination's ports kept few packets until the guest arrived, then a normal queue
        network = site.agents[destination].agent.network
        assert isinstance(network, FakeNetworkDriver)
        ports = {port_name(before["id"], i) for i in range(len(before["nics"]))}
        assert ports and ports <= network.ever_held
        assert not network.held


async def test_cold_migration_restarts_it_on_the_destination(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        await create_vnf(site, "v1")
        before, source, destination = await _running_on(site, "v1")
        response = await site.api.post("/v1/vnfs/v1/migrate", json={"cold": True})
        assert response.status_code == 202, response.text
        assert response.json()["destination_host"] == destination  # the scheduler's choice
        done = await _finished(site, response.json()["id"])
        assert done["status"] == "done" and done["kind"] == "cold", done

        async def restarted() -> dict[str, Any] | None:
            vnf = await site.vnf("v1")
            ok = vnf and vnf["status"] == "running" and vnf["boot_id"] != before["boot_id"]
            return vnf if ok else None

        after = await eventually(restarted, what="v1 started on the destination")
        assert after["host"] == destination
        assert before["id"] not in await _domains(site, source)


async def test_refusals_are_sentences(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        await site.join("h3")  # no internal address
        await create_vnf(site, "v1")
        _before, source, destination = await _running_on(site, "v1")

        async def refused(body: dict[str, Any], status: int, text: str, vnf: str = "v1") -> None:
            response = await site.api.post(f"/v1/vnfs/{vnf}/migrate", json=body)
            assert response.status_code == status, response.text
            assert text in response.json()["error"]["message"], response.text

        await refused({"host": source}, 422, f"is on host {source} already")
        await refused({"host": "nowhere"}, 404, "no host named 'nowhere'")
        await refused({}, 404, "no VNF named 'ghost'", vnf="ghost")
        await refused({"host": "h3"}, 409, "host h3 has no internal address")
        await refused({"colder": True}, 422, "colder")
        await refused({"memory_copy": "post-copy"}, 422, "memory_copy")
        await refused({"cold": True, "memory_copy": "paused"}, 422, "leave memory_copy out")
        await refused({"max_downtime_ms": 5}, 422, "max_downtime_ms")
        await refused({"cold": True, "max_downtime_ms": 50}, 422, "leave max_downtime_ms out")
        locked = await site.api.post(f"/v1/hosts/{destination}/lock")
        assert locked.status_code == 202, locked.text
        await refused({"host": destination}, 409, f"host {destination} cannot take VNF v1")
        assert (await site.api.post(f"/v1/hosts/{destination}/unlock")).status_code == 200
        assert (await site.api.post("/v1/vnfs/v1/actions", json={"action": "stop"})).is_success
        await site.wait_vnf("v1", "stopped")
        await refused({"host": destination}, 409, "only a running VNF migrates")
        assert (await site.api.get("/v1/migrations")).json() == []  # nothing half-created


async def test_destination_gone_mid_way_leaves_the_vnf_on_its_source(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        await create_vnf(site, "v1")
        before, source, destination = await _running_on(site, "v1")
        _driver(site, source).slow_migrations(2.0)
        response = await site.api.post("/v1/vnfs/v1/migrate", json={"host": destination})
        assert response.status_code == 202, response.text
        migration_id = response.json()["id"]
        assert response.json()["max_downtime_ms"] == 50  # the default limit
        again = await site.api.post("/v1/vnfs/v1/migrate", json={"host": destination})
        assert (
            again.status_code == 409
            and "being migrated already" in again.json()["error"]["message"]
        )
        for refused in (
            await site.api.delete("/v1/vnfs/v1"),
            await site.api.post("/v1/vnfs/v1/actions", json={"action": "reboot"}),
        ):
            assert refused.status_code == 409, refused.text
            assert "is being migrated: try again" in refused.json()["error"]["message"]

        async def migrating() -> bool:
            found = await site.api.get(f"/v1/migrations/{migration_id}")
            return bool(found.json()["status"] == "migrating")

        await eventually(migrating, what="the source moving the guest")
        await site.agents[destination].stop()  # its hypervisor goes away with it

        failed = await _finished(site, migration_id)
        assert failed["status"] == "failed", failed
        assert f"host {source} could not move it" in failed["error"]
        vnf = await site.wait_vnf("v1", "running")
        assert vnf["host"] == source and vnf["boot_id"] == before["boot_id"]
        assert (await _domains(site, source))[before["id"]].state.value == "running"
        assert await _events(site, f"failed, the VNF stays on {source}")


async def test_a_vnf_with_host_pci_devices_does_not_move_live(tmp_path: Path) -> None:
    vf = "0000:03:00.1"
    async with running_site(tmp_path) as site:
        await site.catalogue()
        await site.join("h1", pci_devices=(f"{vf}=sriov-vf",), address=ADDRESSES["h1"])
        await site.join("h2", pci_devices=(f"{vf}=sriov-vf",), address=ADDRESSES["h2"])
        nic = {"network": "lan", "model": "sriov-vf", "hostdev_address": vf}
        body = {"name": "v1", "image": "img", "flavor": "small", "nics": [nic]}
        assert (await site.api.post("/v1/vnfs", json=body)).status_code == 201

        async def placed() -> dict[str, Any] | None:
            found = await site.vnf("v1")
            return found if found and found["host"] else None

        await eventually(placed, what="v1 placed")
        response = await site.api.post("/v1/vnfs/v1/migrate", json={})
        assert response.status_code == 409, response.text
        message = response.json()["error"]["message"]
        assert f"host PCI devices ({vf}), which cannot move live: migrate it cold" in message
