"""Host PCI devices through the real controller: a node's allowlist is what it reports, and a
VNF that needs a device goes only to a node that has it free; no two VNFs share one."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import eventually, running_site

VF = "0000:03:00.1"


def vnf(name: str, address: str, model: str = "sriov-vf") -> dict[str, object]:
    nic = {"network": "lan", "model": model, "hostdev_address": address}
    return {"name": name, "image": "img", "flavor": "small", "nics": [nic]}


async def test_devices_are_allowlisted_and_scheduled_as_a_resource(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await site.catalogue()
        await site.join("plain")
        await site.join("sriov", pci_devices=(f"{VF}=sriov-vf",))
        host = await site.host("sriov")
        assert host["pci_devices"] == [{"address": VF, "kind": "sriov-vf"}]
        assert (await site.host("plain"))["pci_devices"] == []

        assert (await site.api.post("/v1/vnfs", json=vnf("v1", VF))).status_code == 201

        async def placed() -> dict[str, object] | None:
            found = await site.vnf("v1")
            return found if found and found["host"] else None

        assert (await eventually(placed, 10, "v1 placed"))["host"] == "sriov"

        for name, address, model in (
            ("v2", VF, "sriov-vf"),  # the device is taken by v1
            ("v3", "0000:09:00.0", "sriov-vf"),  # on no node's allowlist
            ("v4", VF, "pci-passthrough"),  # listed as another kind
        ):
            assert (
                await site.api.post("/v1/vnfs", json=vnf(name, address, model))
            ).status_code == 201

            async def refused(name: str = name) -> dict[str, object] | None:
                found = await site.vnf(name)
                return found if found and found["fault"] else None

            found = await eventually(refused, 10, f"{name} refused")
            assert found["host"] is None
            assert f"needs PCI device(s) {address} ({model})" in str(found["fault"])
