"""Real VNFs through the whole stack: controller + agent (libvirt, OVS) on loopback, TCG guests
built by `edgecloud image build`. The guest reports, from inside, where each vNIC is; these
tests check it matches the declaration for 2, 4 and 8 mixed-model vNICs, after a hot detach
and re-attach in the middle, after a reboot, and that two VNFs reach each other through OVS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.libvirt_support import RunNames
from tests.e2e.real_site import real_site
from tests.integration.harness import Site, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
BOOT = 120.0  # TCG guests, several at once on two cores

# Declared orders that a naive domain XML (interfaces grouped by model, or sorted by network
# name) would not give.
SHAPES = {
    2: [("wan", "e1000"), ("lan", "virtio")],
    4: [("mgmt", "rtl8139"), ("wan", "virtio"), ("lan", "e1000"), ("ha", "virtio")],
    8: [
        ("wan", "e1000"), ("mgmt", "virtio"), ("lan", "rtl8139"), ("ha", "e1000"),
        ("x1", "virtio"), ("x0", "e1000"), ("x3", "rtl8139"), ("x2", "virtio"),
    ],
}  # fmt: skip
NETWORKS = ("lan", "wan", "mgmt", "ha", "x0", "x1", "x2", "x3", "pingnet")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Site, RunNames]]:
    async with real_site(tmp_path, NETWORKS) as pair:
        yield pair


async def _create(
    site: Site, name: str, nics: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "image": "bitw", "flavor": "small", "nics": nics, **extra}
    response = await site.api.post("/v1/vnfs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _verified(site: Site, name: str, count: int, timeout: float = BOOT) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        vnf = await site.vnf(name)
        return vnf if vnf and len(vnf["nics"]) == count and vnf["binding_verified"] else None

    return dict(
        await eventually(check, timeout, f"{name}: guest reports {count} vNICs as declared")
    )


def _guest_view(vnf: dict[str, Any]) -> list[tuple[str, str]]:
    """(MAC, PCI address) of each vNIC as the guest reported it, in declared order."""
    return [(n["guest_mac"], n["guest_pci"]) for n in vnf["nics"]]


def _declared(vnf: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["mac"], n["pci_address"]) for n in vnf["nics"]]


async def test_guests_see_vnics_in_declared_order(site: tuple[Site, RunNames]) -> None:
    s, run = site
    names = {}
    for count, shape in SHAPES.items():
        nics = [
            {"network": net, "model": model, "tag": f"role{i}"}
            for i, (net, model) in enumerate(shape)
        ]
        names[count] = f"e2e{run.token}-v{count}"
        created = await _create(s, names[count], nics)
        assert [n["network"] for n in created["nics"]] == [net for net, _ in shape]
    for count, name in names.items():
        vnf = await _verified(s, name, count)
        assert _guest_view(vnf) == _declared(vnf)
        assert [n["model"] for n in vnf["nics"]] == [model for _, model in SHAPES[count]]

    # hot detach and re-attach in the middle: the others keep their slots
    four = await s.vnf(names[4])
    assert four is not None
    boot_id, slots = four["boot_id"], [n["pci_slot"] for n in four["nics"]]
    assert (await s.api.delete(f"/v1/vnfs/{names[4]}/nics/1")).status_code == 202
    three = await _verified(s, names[4], 3)
    assert [n["pci_slot"] for n in three["nics"]] == [slots[0], slots[2], slots[3]]
    assert _guest_view(three) == _declared(three)
    response = await s.api.post(
        f"/v1/vnfs/{names[4]}/nics", json={"network": "wan", "model": "virtio", "position": 1}
    )
    assert response.status_code == 202, response.text
    again = await _verified(s, names[4], 4)
    assert [n["pci_slot"] for n in again["nics"]] == slots
    assert _guest_view(again) == _declared(again)
    assert again["boot_id"] == boot_id, "hot plug restarted the guest"

    # a reboot keeps every vNIC where it was declared
    for name in (names[8], names[4]):
        before = await s.vnf(name)
        assert before is not None
        assert (
            await s.api.post(f"/v1/vnfs/{name}/actions", json={"action": "reboot"})
        ).status_code == 202

        async def rebooted(name: str = name, old: str = before["boot_id"]) -> dict[str, Any] | None:
            vnf = await s.vnf(name)
            return vnf if vnf and vnf["boot_id"] != old else None

        await eventually(rebooted, 60, f"{name} rebooted")
    for count in (8, 4):
        vnf = await _verified(s, names[count], count)
        assert _guest_view(vnf) == _declared(vnf)


async def test_two_vnfs_reach_each_other_through_ovs(site: tuple[Site, RunNames]) -> None:
    s, run = site
    a, b = f"e2e{run.token}-ping-a", f"e2e{run.token}-ping-b"
    await _create(s, b, [{"network": "pingnet"}], metadata={"ip": "10.250.77.2/24"})
    await _create(
        s, a, [{"network": "pingnet"}], metadata={"ip": "10.250.77.1/24", "ping": "10.250.77.2"}
    )

    async def pinged() -> str | None:
        response = await s.api.get(f"/v1/vnfs/{a}/console")
        output = response.json()["output"] if response.status_code == 200 else ""
        return next((line for line in output.splitlines() if "EDGECLOUD-PING" in line), None)

    line = await eventually(pinged, BOOT + 60, "the ping result on VNF a's console")
    assert line.strip().endswith("ok"), line
