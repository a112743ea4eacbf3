"""Host lock / unlock through the API on a fake-driver site: refusals change nothing, an empty
host locks at once, a locked host takes no new VNF and changes state only through unlock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.fake import FakeComputeDriver
from tests.integration.harness import Site, eventually, running_site
from tests.integration.test_migrations import _two_hosts
from tests.integration.test_site import create_vnf


async def test_a_lock_the_other_hosts_cannot_absorb_is_refused_and_changes_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running")
        response = await site.api.post("/v1/hosts/node1/lock")
        assert response.status_code == 409
        assert "cannot be emptied, so it was not locked" in response.json()["error"]["message"]
        assert "v1" in response.json()["error"]["message"]
        host = await site.host("node1")
        assert host["state"] == "enabled" and host["maintenance"] is None


async def test_an_empty_host_locks_at_once_and_only_unlock_returns_it(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.join("node2")
        await site.catalogue()
        response = await site.api.post("/v1/hosts/node2/lock")
        assert response.status_code == 202, response.text
        m = response.json()["maintenance"]
        assert response.json()["state"] == "locked"
        assert (m["status"], m["total"], m["moved"]) == ("done", 0, [])
        refused = await site.api.patch("/v1/hosts/node2", json={"state": "enabled"})
        assert (
            refused.status_code == 409 and "unlock it first" in refused.json()["error"]["message"]
        )
        bad = await site.api.patch("/v1/hosts/node2", json={"state": "locked"})
        assert bad.status_code == 422
        for i in range(3):
            await create_vnf(site, f"v{i}")
        for i in range(3):
            assert (await site.wait_vnf(f"v{i}", "running"))["host"] == "node1"
        assert (await site.api.post("/v1/hosts/node2/unlock")).json()["state"] == "enabled"
        again = await site.api.post("/v1/hosts/node2/unlock")
        assert again.status_code == 409 and "is not locked" in again.json()["error"]["message"]
        events = (await site.api.get("/v1/events")).json()
        texts = [e["message"] for e in events if e.get("entity") == "host=node2"]
        assert any("locked" in t for t in texts) and any("unlocked" in t for t in texts)


async def _lock_settled(site: Site, name: str, timeout: float = 60.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        host = await site.host(name)
        status = (host.get("maintenance") or {}).get("status")
        return host if status not in (None, "evacuating") else None

    return dict(await eventually(check, timeout, f"host {name}'s evacuation ended"))


async def test_lock_moves_every_vnf_live_and_unlock_returns_the_host(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        await site.api.post("/v1/hosts/h2/lock")  # everything starts on h1
        boots = {}
        for name in ("v1", "v2"):
            await create_vnf(site, name)
            boots[name] = (await site.wait_vnf(name, "running"))["boot_id"]
        assert (await site.api.post("/v1/hosts/h2/unlock")).status_code == 200
        response = await site.api.post("/v1/hosts/h1/lock")
        assert response.status_code == 202, response.text
        assert response.json()["maintenance"]["total"] == 2
        host = await _lock_settled(site, "h1")
        m = host["maintenance"]
        assert (host["state"], m["status"], sorted(m["moved"])) == ("locked", "done", ["v1", "v2"])
        for name in ("v1", "v2"):
            vnf = await site.wait_vnf(name, "running")
            assert vnf["host"] == "h2" and vnf["boot_id"] == boots[name]  # moved live
        migrations = (await site.api.get("/v1/migrations")).json()
        assert {(x["status"], x["kind"]) for x in migrations} == {("done", "live")}
        await create_vnf(site, "v3")  # a locked host takes nothing new
        assert (await site.wait_vnf("v3", "running"))["host"] == "h2"
        assert (await site.api.post("/v1/hosts/h1/unlock")).json()["state"] == "enabled"
        await site.api.post("/v1/hosts/h2/lock")
        assert (await _lock_settled(site, "h2"))["maintenance"]["status"] == "done"
        for name in ("v1", "v2", "v3"):
            assert (await site.wait_vnf(name, "running"))["host"] == "h1"


async def test_a_failed_move_stops_the_lock_and_leaves_the_vnf_running_where_it_was(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await _two_hosts(site)
        await site.api.post("/v1/hosts/h2/lock")
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running")
        await site.api.post("/v1/hosts/h2/unlock")
        driver = site.agents["h1"].agent.compute
        assert isinstance(driver, FakeComputeDriver)
        driver.slow_migrations(2.0)
        assert (await site.api.post("/v1/hosts/h1/lock")).status_code == 202

        async def moving() -> bool:
            current = ((await site.host("h1"))["maintenance"] or {}).get("current") or {}
            if not current.get("migration"):
                return False
            found = await site.api.get(f"/v1/migrations/{current['migration']}")
            return bool(found.json()["status"] == "migrating")

        await eventually(moving, 30, "the first VNF on its way")
        await site.agents["h2"].stop()  # the destination goes away mid-way
        host = await _lock_settled(site, "h1")
        m = host["maintenance"]
        assert host["state"] == "locked" and m["status"] == "failed" and m["moved"] == []
        assert m["error"].startswith("vnf v1: ")
        assert (await site.wait_vnf("v1", "running"))["host"] == "h1"
        events = (await site.api.get("/v1/events", params={"limit": 200})).json()
        assert any("lock stopped, the host is not empty" in e["message"] for e in events)
