"""The vNIC binding of a guest that prints no console report: verified through its guest agent,
or shown as ``unverifiable`` (no mismatch alarm) when it has none; a late answer still verifies.

A real controller and a real agent over mTLS on loopback, with the fake compute driver, whose
hooks make a boot silent on the console (``silence_next_boot``) and its guest agent answer or
not (``set_guest_agent``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.fake import FakeComputeDriver
from tests.integration.harness import Site, eventually, running_site

NICS = [{"network": "lan"}, {"network": "wan", "model": "e1000"}, {"network": "mgmt"}]
MISMATCH = "700.002"


async def test_silent_guest_is_verified_by_its_agent_or_unverifiable(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        agent = (await site.join("node1")).agent
        await site.catalogue()
        body = {"name": "v1", "image": "img", "flavor": "small", "nics": NICS}
        assert (await site.api.post("/v1/vnfs", json=body)).status_code == 201
        first = await eventually(lambda: _binding(site, "v1", "verified"), what="verified")
        assert [n["guest_name"] for n in first["nics"]] == ["eth0", "eth1", "eth2"]  # console
        compute = agent.compute
        assert isinstance(compute, FakeComputeDriver)
        domain = (await compute.list_domains())[0].name

        # a new boot that prints nothing, with a guest agent: verified through the agent
        compute.set_guest_agent(domain, True)
        after = await _silent_reboot(site, compute, domain, first["boot_id"], "verified")
        assert [n["guest_name"] for n in after["nics"]] == ["ens3", "ens5", "ens7"]
        assert [n["guest_pci"] for n in after["nics"]] == [n["pci_address"] for n in after["nics"]]

        # nothing on the console and no agent: unverifiable once the node stops waiting
        compute.set_guest_agent(domain, False)
        agent.applier.guests.unverifiable_after = 0.0
        silent = await _silent_reboot(site, compute, domain, after["boot_id"], "unverifiable")
        assert not silent["binding_verified"]
        assert [n["guest_mac"] for n in silent["nics"]] == [None, None, None]
        alarms = (await site.api.get("/v1/alarms")).json()
        assert not any(a["alarm_id"] == MISMATCH and a["state"] == "active" for a in alarms)
        events = (await site.api.get("/v1/events")).json()
        assert any(e.get("message") == "vNIC binding unverifiable" for e in events)
        listed = (await site.api.get("/v1/vnfs")).json()
        assert [v["binding"] for v in listed] == ["unverifiable"]

        # the agent answers late (it started after all): the same boot becomes verified
        compute.set_guest_agent(domain, True)
        late = await eventually(lambda: _binding(site, "v1", "verified"), what="late answer")
        assert late["boot_id"] == silent["boot_id"]


async def _binding(site: Site, name: str, binding: str) -> dict[str, Any] | None:
    vnf = await site.vnf(name)
    return vnf if vnf and vnf["binding"] == binding else None


async def _silent_reboot(
    site: Site, compute: FakeComputeDriver, domain: str, old_boot: str, binding: str
) -> dict[str, Any]:
    compute.silence_next_boot(domain)
    compute.crash(domain)  # the agent starts it again: a new boot

    async def rebooted() -> dict[str, Any] | None:
        vnf = await _binding(site, "v1", binding)
        return vnf if vnf and vnf["boot_id"] != old_boot and vnf["status"] == "running" else None

    return dict(await eventually(rebooted, what=f"a new boot, binding {binding}"))
