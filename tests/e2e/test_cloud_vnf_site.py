"""E2E acceptance: a vendor-style VNF, a Debian cloud image configured by cloud-init, run by a
real site from an uploaded image, checked from inside the guest.

The image (images/cloud_guest.py, built once per run) is uploaded through the API; the node
fetches it over its mTLS port and boots each VNF from its own overlay. Through the QEMU guest
agent (no network) the test reads, inside the guest: cloud-init finished without errors, the
hostname it was given, the key pair in the default user's authorized_keys, the output of its
user_data script, and every vNIC with its declared address, in declared PCI order. A second
VNF from the same image runs at the same time; after both are deleted no overlay is left and
the image's bytes (node cache and controller store) still have the sha256 they were uploaded
with.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.e2e.guest_agent_support import GuestAgent
from tests.e2e.real_site import real_site
from tests.integration.harness import Site, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
BOOT = 420.0  # two 1 GiB TCG guests booting at once on two cores
USER_DATA = b"#!/bin/sh\necho edgecloud-user-data-ran > /var/tmp/user-data.out\n"
PCI_REPORT = (
    "for n in /sys/class/net/*; do [ -e $n/device ] && "
    'echo "$(basename $(readlink -f $n/device)) $(cat $n/address)"; done | sort'
)


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " e2e@edgecloud"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


async def post(site: Site, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await site.api.post(path, json=body)
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


async def running(site: Site, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        vnf = await site.vnf(name)
        return vnf if vnf and vnf["status"] == "running" else None

    return dict(await eventually(check, BOOT, f"{name} running"))


async def test_cloud_init_vnf_from_an_uploaded_image(
    tmp_path: Path, cloud_guest_image: Path
) -> None:
    async with real_site(tmp_path) as (site, _run):
        image = await site.upload_image("debian-cloud", cloud_guest_image, "qcow2")
        assert image["sha256"] == sha256(cloud_guest_image)
        await post(
            site, "/v1/flavors", {"name": "cloud", "vcpus": 1, "memory_mib": 1024, "disk_gib": 3}
        )
        for net, cidr in (("lan", "10.60.0.0/24"), ("wan", "10.61.0.0/24")):
            await post(site, "/v1/networks", {"name": net})
            subnet = {"name": f"{net}-v4", "network": net, "cidr": cidr, "enable_dhcp": False}
            await post(site, "/v1/subnets", subnet)
        key = public_key()
        await post(site, "/v1/keypairs", {"name": "ops", "public_key": key})
        vnf = {
            "name": "vcpe-router",
            "image": "debian-cloud",
            "flavor": "cloud",
            "nics": [
                {"network": "lan", "fixed_ips": [{"ip_address": "10.60.0.10"}]},
                {"network": "wan"},
            ],
            "key_name": "ops",
            "user_data": base64.b64encode(USER_DATA).decode(),
        }
        await post(site, "/v1/vnfs", vnf)
        await post(site, "/v1/vnfs", {**vnf, "name": "vcpe-twin", "key_name": None, "user_data": None,
                                       "nics": [{"network": "lan"}]})  # fmt: skip
        router = await running(site, "vcpe-router")
        await running(site, "vcpe-twin")

        guest = GuestAgent(f"ec-vcpe-router-{router['id'][:8]}")
        await guest.wait_until_answering(within=BOOT)
        status = await guest.run("cloud-init", "status", "--wait", "--long", within=BOOT)
        assert status.ok, status.stdout + status.stderr
        assert (await guest.run("hostname", check=True)).stdout.strip() == "vcpe-router"
        keys = await guest.run("sh", "-c", "cat /home/*/.ssh/authorized_keys", check=True)
        assert key.split()[1] in keys.stdout
        assert await guest.read_file("/var/tmp/user-data.out") == "edgecloud-user-data-ran\n"

        declared = [n["mac"] for n in router["nics"]]
        addresses = [[ip["ip_address"] for ip in n["fixed_ips"]] for n in router["nics"]]
        assert addresses[0] == ["10.60.0.10"]
        assert addresses[1] and addresses[1][0].startswith("10.61.0.")
        seen = (await guest.run("sh", "-c", PCI_REPORT, check=True)).stdout.split("\n")
        in_pci_order = [line.split()[1] for line in seen if line.strip()]
        assert in_pci_order == declared  # the k-th NIC by PCI address is the k-th declared
        interfaces = await guest.command("guest-network-get-interfaces")
        by_mac = {
            i.get("hardware-address"): {a["ip-address"] for a in i.get("ip-addresses", [])}
            for i in interfaces
        }
        for mac, wanted in zip(declared, addresses, strict=True):
            assert set(wanted) <= by_mac[mac], f"{mac}: {by_mac.get(mac)} lacks {wanted}"

        node = site.agents["node1"].state_dir
        cached = node / "images" / image["sha256"]
        overlays = sorted((node / "disks").glob("*.qcow2"))
        assert len(overlays) == 2  # one disk per VNF
        assert sha256(cached) == image["sha256"]  # both guests wrote only to their overlays
        for name in ("vcpe-router", "vcpe-twin"):
            assert (await site.api.delete(f"/v1/vnfs/{name}")).status_code in (202, 204)

        async def gone() -> bool:
            return (await site.api.get("/v1/vnfs")).json() == []

        await eventually(gone, 120, "both VNFs deleted")
        assert [o for o in overlays if o.exists()] == []
        stored = site.controller.state_dir / "images" / image["sha256"]
        assert sha256(stored) == image["sha256"]

        async def evicted() -> bool:
            return not cached.exists()

        await eventually(evicted, 30, "the unused image evicted from the node's cache")
