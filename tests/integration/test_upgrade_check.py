"""`GET /v1/upgrade/check` on a fake-driver site, through the API as an operator's tools see
it: a healthy site can upgrade one train; the same release, a malformed one, a host that went
offline and a host no other can empty (with a release that reboots) are each refused naming
why; nothing is changed by asking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud import __version__
from edgecloud.upgrades.releases import parse
from tests.integration.harness import Site, running_site
from tests.integration.test_site import create_vnf
from tests.integration.wheels import wheel

NEXT = f"{parse(__version__).major}.{parse(__version__).minor + 1}.0"


async def _check(
    site: Site, to: str, reboot: bool = False, max_parallel: int = 1
) -> dict[str, Any]:
    params = {"to": to, "reboot": str(reboot).lower(), "max_parallel": str(max_parallel)}
    response = await site.api.get("/v1/upgrade/check", params=params)
    assert response.status_code == 200, response.text
    found = dict(response.json())
    found["by_name"] = {c["name"]: c for c in found["checks"]}
    return found


async def test_upgrade_check_says_whether_and_why_not(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.catalogue()
        await create_vnf(site, "v1")
        await site.wait_vnf("v1", "running")
        bare = await _check(site, NEXT)
        assert bare["result"] == "failure"
        assert f"software upload edgecloud-{NEXT}-py3" in bare["by_name"]["software"]["detail"]
        filename = f"edgecloud-{NEXT}-py3-none-any.whl"
        uploaded = await site.api.post(
            "/v1/software", params={"filename": filename}, content=wheel(NEXT)
        )
        assert uploaded.status_code == 201, uploaded.text
        found = await _check(site, NEXT)
        assert (found["current"], found["to"]) == (__version__, NEXT)
        assert found["result"] == "warning", found  # one controller; n1 cannot be emptied
        assert found["by_name"]["release"]["result"] == "ok"
        assert found["by_name"]["controllers"]["result"] == "warning"
        room = found["by_name"]["room to empty hosts"]
        assert room["result"] == "warning" and "host node1 (v1: " in room["detail"]
        rebooting = await _check(site, NEXT, reboot=True)
        assert rebooting["result"] == "failure"
        assert rebooting["by_name"]["room to empty hosts"]["result"] == "failure"

        same = await _check(site, __version__)
        assert same["result"] == "failure"
        assert f"already runs {__version__}" in same["by_name"]["release"]["detail"]
        bad = await site.api.get("/v1/upgrade/check", params={"to": "latest"})
        assert bad.status_code == 422 and "to" in bad.text
        missing = await site.api.get("/v1/upgrade/check")
        assert missing.status_code == 422

        await site.join("node2")  # now node1 can be emptied onto node2
        roomy = await _check(site, NEXT, reboot=True, max_parallel=2)
        assert roomy["by_name"]["room to empty hosts"]["result"] == "ok", roomy
        assert roomy["plan"]["controllers"] == [site.controller.id]
        assert roomy["plan"]["batches"] == [["node1", "node2"]]
        too_many = await site.api.get("/v1/upgrade/check", params={"to": NEXT, "max_parallel": "0"})
        assert too_many.status_code == 422 and "max_parallel" in too_many.text
        await site.agents["node2"].stop()
        await site.wait_host("node2", "offline", timeout=30)
        offline = await _check(site, NEXT)
        assert offline["result"] == "failure"
        assert "host node2 (offline) is not online" in offline["by_name"]["hosts"]["detail"]
        assert (await site.host("node1"))["state"] == "enabled"  # asking changed nothing
