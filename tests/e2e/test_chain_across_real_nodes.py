"""Issue 10's acceptance on `edgecloud up --nodes 2` with real QEMU guests and Open vSwitch:

- a 3-service chain (bump-in-the-wire VNFs) spread over both nodes forwards a UDP probe
  between two namespaces plugged into node 1's bridge (the chain's attachment host);
- inserting, removing and replacing a service while the probe runs loses 0 packets;
- the middle service migrated live to the other node under a 1,000 pps probe: the guest
  prints, from inside, the same kernel boot id and the same vNICs (PCI address and MAC, in
  its own order) on the destination's console; the API shows the same slots and MACs; the
  probe's loss and longest gap are printed;
- `host lock` of node 2 empties it (its services move live to node 1) with the chain still
  forwarding; `host unlock` returns it to service.

Traffic stays inside the test's namespaces (10.252.0.x). The site is taken down afterwards
whatever happens (the ``site`` fixture), the namespaces deleted.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.chain_support import service
from tests.e2e.multinode_support import MultiNodeSite
from tests.e2e.site_chain import (
    RATE,
    Chain,
    bridge_endpoints,
    guest_alive,
    lock_done,
    site_api,
)

# a long real-VM scenario (2-3 min a test): `make scenarios`, not `make test` (README, Tests)
pytestmark = [pytest.mark.e2e, pytest.mark.scenario, pytest.mark.timeout(1500)]
MIGRATION_RATE = 1000  # the probe rate for the live migration


@pytest.fixture
def namespaces() -> Any:
    names = [f"ecx{secrets.token_hex(3)}-{side}" for side in ("c", "n")]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


async def test_a_chain_across_two_nodes_changes_migrates_and_survives_a_host_lock(
    tmp_path: Path, site: MultiNodeSite, namespaces: list[str]
) -> None:
    site.up()
    site.cli.run("image", "build", "bump-in-the-wire", "--name", "bitw")
    site.cli.run("flavor", "create", "small", "--vcpus", "1", "--ram", "256")
    node1, node2 = site.layout().nodes
    assert node1.bridge and node2.bridge
    async with site_api(site) as api, bridge_endpoints(tmp_path, node1.bridge, namespaces) as ports:
        chain = Chain(api, *namespaces)
        body = {"name": "c1", "customer": "acme", "host": node1.host, "ingress_port": ports[0],
                "egress_port": ports[1],
                "services": [service("router"), service("firewall"), service("nat")]}  # fmt: skip
        assert (await api.post("/v1/chains", json=body)).status_code == 202, "chain create"
        await chain.settled()
        where = await chain.hosts()
        assert set(where.values()) == {node1.host, node2.host}, f"not spread: {where}"
        baseline = await chain.probe(3.0)
        assert baseline.stats.received > 0.9 * baseline.stats.sent, baseline.summary()

        # insert, remove, replace across nodes while the probe runs
        insert = api.post("/v1/chains/c1/services", json=service("wanopt", after="firewall"))
        result, c = await chain.change(insert)
        assert c["path"] == ["router", "firewall", "wanopt", "nat"]
        assert result.stats.lost == 0, f"insert lost packets: {result.summary()}"
        result, c = await chain.change(api.delete("/v1/chains/c1/services/wanopt"), 10.0)
        assert c["path"] == ["router", "firewall", "nat"]
        assert result.stats.lost == 0, f"remove lost packets: {result.summary()}"
        result, c = await chain.change(api.put("/v1/chains/c1/services/nat", json=service("nat2")))
        assert c["path"] == ["router", "firewall", "nat2"]
        assert result.stats.lost == 0, f"replace lost packets: {result.summary()}"

        # live migration of the middle service under 1,000 pps
        before = await chain.vnf_of("firewall")
        alive_before = await guest_alive(api, before["name"])
        target = node2.host if before["host"] == node1.host else node1.host
        result, migration = await chain.migrate_under_probe(before, target, 20.0, MIGRATION_RATE)
        print(f"live migration under {MIGRATION_RATE} pps: {result.summary()}; "
              f"QEMU: {migration['stats']}")  # fmt: skip
        after = await chain.vnf_of("firewall")
        assert after["host"] == target and after["boot_id"] == before["boot_id"]
        assert [(n["pci_slot"], n["mac"]) for n in after["nics"]] == [
            (n["pci_slot"], n["mac"]) for n in before["nics"]
        ]
        alive_after = await guest_alive(api, after["name"])
        assert alive_after.boot == alive_before.boot, "the guest rebooted (kernel boot id)"
        assert alive_after.vnics == alive_before.vnics, "the guest's vNICs changed"
        assert result.stats.received > 0.5 * result.stats.sent, result.summary()
        check = await chain.probe(3.0)
        assert check.stats.lost == 0, f"after the migration: {check.summary()}"

        # host lock empties node 2 with the chain forwarding; unlock returns it
        probing = asyncio.create_task(chain.probe(60.0))
        await asyncio.sleep(2)
        locked = await api.post(f"/v1/hosts/{node2.host}/lock")
        assert locked.status_code == 202, locked.text
        host = await lock_done(api, node2.host)
        assert host["maintenance"]["status"] == "done", host["maintenance"]
        assert set((await chain.hosts()).values()) == {node1.host}
        result = await probing
        print(f"host lock under {RATE} pps: {result.summary()}")
        assert result.stats.received > 0.9 * result.stats.sent, result.summary()
        unlocked = await api.post(f"/v1/hosts/{node2.host}/unlock")
        assert unlocked.status_code == 200 and unlocked.json()["state"] == "enabled"
        assert (await api.delete("/v1/chains/c1")).status_code == 202
