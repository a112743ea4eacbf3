"""Host lock / unlock through the API on a fake-driver site: refusals change nothing, an empty
host locks at once, a locked host takes no new VNF and changes state only through unlock."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import running_site
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
        assert refused.status_code == 409 and "unlock it first" in refused.json()["error"]["message"]
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
