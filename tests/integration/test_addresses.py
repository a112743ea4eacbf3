"""Subnets, fixed IPs, key pairs and user data through the API and the CLI, on a real
controller with a fake-driver agent: what is stored, what the agent is told, what is refused."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from edgecloud.client.keys import generate
from tests.integration.cli_support import Cli
from tests.integration.harness import Site, eventually, running_site


async def _ok(site: Site, method: str, path: str, status: int = 201, **kw: Any) -> Any:
    response = await site.api.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _error(site: Site, method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
    response = await site.api.request(method, path, **kw)
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def _addresses(vnf: dict[str, Any]) -> list[list[str]]:
    return [[ip["ip_address"] for ip in nic["fixed_ips"]] for nic in vnf["nics"]]


async def test_fixed_ips_given_allocated_unique_and_released(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue()
        await site.join("node1")
        subnet = await _ok(
            site,
            "POST",
            "/v1/subnets",
            json={
                "name": "lan-v4",
                "network": "lan",
                "cidr": "10.0.0.0/24",
                "allocation_pools": [{"start": "10.0.0.10", "end": "10.0.0.20"}],
                "dns_nameservers": ["10.0.0.53"],
                "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}],
            },
        )
        assert subnet["gateway_ip"] == "10.0.0.1" and subnet["dhcp_address"] == "10.0.0.10"
        await _ok(
            site,
            "POST",
            "/v1/subnets",
            json={"name": "lan-v6", "network": "lan", "cidr": "2001:db8::/64", "ip_version": 6},
        )
        nics = [
            {"network": "lan", "fixed_ips": [{"ip_address": "10.0.0.50"}]},
            {"network": "lan"},
            {"network": "wan"},
        ]
        v1 = await _ok(
            site,
            "POST",
            "/v1/vnfs",
            json={"name": "v1", "image": "img", "flavor": "small", "nics": nics},
        )
        # given; allocated from each subnet (after gateway and DHCP server); none without subnets
        assert _addresses(v1) == [["10.0.0.50"], ["10.0.0.11", "2001:db8::3"], []]

        duplicate = {
            "name": "v2",
            "image": "img",
            "flavor": "small",
            "nics": [{"network": "lan", "fixed_ips": [{"ip_address": "10.0.0.50"}]}],
        }
        error = await _error(site, "POST", "/v1/vnfs", 409, json=duplicate)
        assert "10.0.0.50" in error["message"] and "'v1'" in error["message"]
        for bad, field in (
            ("10.0.1.5", "nics[0].fixed_ips[0].ip_address"),  # outside every subnet
            ("10.0.0.1", "nics[0].fixed_ips[0].ip_address"),  # the gateway
            ("10.0.0.10", "nics[0].fixed_ips[0].ip_address"),  # the DHCP server
        ):
            duplicate["nics"][0]["fixed_ips"] = [{"ip_address": bad}]  # type: ignore[index]
            error = await _error(site, "POST", "/v1/vnfs", 422, json=duplicate)
            assert error["field"] == field and bad in error["message"], error
        assert (await site.api.get("/v1/vnfs/v2")).status_code == 404, "half-created"

        error = await _error(site, "DELETE", "/v1/subnets/lan-v4", 409)
        assert "v1" in error["message"]

        running = await site.wait_vnf("v1", "running")
        assert running["hostname"] == "v1"
        desired = json.loads((site.agents["node1"].state_dir / "desired.json").read_text())
        spec = desired["spec"]
        lan = next(n for n in spec["networks"] if n["name"] == "lan")
        (dhcp,) = [d for d in lan["dhcp"] if d["cidr"] == "10.0.0.0/24"]
        assert dhcp["server_address"] == "10.0.0.10"
        assert {(r["mac"], r["ip_address"]) for r in dhcp["reservations"]} == {
            (v1["nics"][0]["mac"], "10.0.0.50"),
            (v1["nics"][1]["mac"], "10.0.0.11"),
        }
        network_driver = site.agents["node1"].agent.network

        async def served() -> Any:
            return (await network_driver.dhcp_served()).get("lan")

        served_subnets = await eventually(served, 15, "DHCP served on lan")
        assert {n.cidr for n in served_subnets} == {"10.0.0.0/24", "2001:db8::/64"}
        (dhcp_subnet,) = [n for n in served_subnets if n.cidr == "10.0.0.0/24"]
        assert {(r.mac, r.ip_address) for r in dhcp_subnet.reservations} == {
            (v1["nics"][0]["mac"], "10.0.0.50"),
            (v1["nics"][1]["mac"], "10.0.0.11"),
        }
        vnic0 = spec["instances"][0]["vnics"][0]["fixed_ips"][0]
        assert vnic0["gateway_ip"] == "10.0.0.1" and vnic0["dns_nameservers"] == ["10.0.0.53"]

        # hot-unplug releases the vNIC's addresses; delete releases the rest
        await _ok(site, "DELETE", "/v1/vnfs/v1/nics/0", 202)
        again = {
            "name": "v3",
            "image": "img",
            "flavor": "small",
            "nics": [{"network": "lan", "fixed_ips": [{"ip_address": "10.0.0.50"}]}],
        }
        v3 = await _ok(site, "POST", "/v1/vnfs", json=again)
        assert _addresses(v3) == [["10.0.0.50"]]
        await _ok(site, "DELETE", "/v1/vnfs/v1", 202)
        await _ok(site, "DELETE", "/v1/vnfs/v3", 202)

        async def gone() -> bool:
            return (await site.api.get("/v1/vnfs")).json() == []

        await eventually(gone, 15, "VNFs deleted")
        await _ok(site, "DELETE", "/v1/subnets/lan-v4", 204)
        assert [n["name"] for n in await _ok(site, "GET", "/v1/subnets", 200)] == ["lan-v6"]


async def test_subnet_rules_are_enforced_with_the_field_named(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue(("lan",))
        base = {"name": "s", "network": "lan", "cidr": "10.0.0.0/24"}
        cases = [
            ({"cidr": "10.0.0.1/24"}, "cidr", "host bits"),
            ({"cidr": "nonsense"}, "cidr", "not a CIDR"),
            ({"cidr": "2001:db8::/64"}, "cidr", "not an IPv4 network"),
            ({"gateway_ip": "10.0.1.1"}, "gateway_ip", "not inside"),
            (
                {"allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.9"}]},
                "allocation_pools[0]",
                "holds the gateway",
            ),
            (
                {
                    "allocation_pools": [
                        {"start": "10.0.0.10", "end": "10.0.0.30"},
                        {"start": "10.0.0.20", "end": "10.0.0.40"},
                    ]
                },
                "allocation_pools[1]",
                "overlaps",
            ),
            (
                {"host_routes": [{"destination": "0.0.0.0/0", "nexthop": "192.168.1.1"}]},
                "host_routes[0]",
                "not inside",
            ),
            ({"network": "ghost"}, "network", "no network named"),
        ]
        for change, field, words in cases:
            error = await _error(site, "POST", "/v1/subnets", 422, json={**base, **change})
            assert error["field"] == field and words in error["message"], (change, error)
        await _ok(site, "POST", "/v1/subnets", json={**base, "gateway_ip": None})
        error = await _error(
            site, "POST", "/v1/subnets", 422, json={**base, "name": "t", "cidr": "10.0.0.128/25"}
        )
        assert "overlaps subnet 10.0.0.0/24" in error["message"]
        assert [n["name"] for n in await _ok(site, "GET", "/v1/subnets", 200)] == ["s"]


async def test_keypairs_user_data_and_hostname(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue(("lan",))
        await site.join("node1")
        _, public = generate("ed25519")
        key = await _ok(site, "POST", "/v1/keypairs", json={"name": "ops", "public_key": public})
        assert key["fingerprint"].startswith("SHA256:") and key["key_algorithm"] == "ssh-ed25519"
        error = await _error(
            site, "POST", "/v1/keypairs", 409, json={"name": "ops", "public_key": public}
        )
        assert "already exists" in error["message"]
        error = await _error(
            site, "POST", "/v1/keypairs", 422, json={"name": "bad", "public_key": "ssh-rsa AAAA"}
        )
        assert error["field"] == "public_key" and "OpenSSH" in error["message"]

        script = b"#!/bin/sh\necho hello > /tmp/ran\n"
        body = {
            "name": "v1",
            "image": "img",
            "flavor": "small",
            "nics": [{"network": "lan"}],
            "key_name": "ops",
            "hostname": "edge-router.example",
            "user_data": base64.b64encode(script).decode(),
        }
        vnf = await _ok(site, "POST", "/v1/vnfs", json=body)
        assert vnf["key_name"] == "ops" and vnf["hostname"] == "edge-router.example"
        await _ok(site, "DELETE", "/v1/keypairs/ops", 204)  # the VNF keeps its copy
        await site.wait_vnf("v1", "running")
        spec = json.loads((site.agents["node1"].state_dir / "desired.json").read_text())["spec"]
        (instance,) = spec["instances"]
        assert instance["public_keys"] == {"ops": public}
        assert base64.b64decode(instance["user_data"]) == script
        assert instance["metadata"]["hostname"] == "edge-router.example"

        too_big = base64.b64encode(b"x" * 65537).decode()
        error = await _error(
            site,
            "POST",
            "/v1/vnfs",
            422,
            json={**body, "name": "v2", "key_name": None, "user_data": too_big},
        )
        assert error["field"] == "user_data" and "65536" in error["message"]
        error = await _error(
            site, "POST", "/v1/vnfs", 422, json={**body, "name": "v2", "key_name": "ops"}
        )
        assert error["field"] == "key_name" and "no key pair named 'ops'" in error["message"]
        error = await _error(
            site,
            "POST",
            "/v1/vnfs",
            422,
            json={**body, "name": "v2", "key_name": None, "hostname": "-bad-"},
        )
        assert error["field"] == "hostname"
        assert (await site.api.get("/v1/vnfs/v2")).status_code == 404


async def test_cli_subnets_keypairs_and_addresses(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue(("lan",))
        config = tmp_path / "client.json"
        token = (tmp_path / "controller" / "admin-token").read_text().strip()
        config.write_text(
            json.dumps(
                {"url": site.info["api_url"], "token": token, "ca_cert": site.info["ca_cert"]}
            )
        )
        cli = Cli(config)

        async def run(*args: str, check: bool = True) -> Any:
            return await asyncio.to_thread(cli.run, *args, check=check)

        created = json.loads(
            (
                await run(
                    "subnet",
                    "create",
                    "lan-v4",
                    "--network",
                    "lan",
                    "--cidr",
                    "10.0.0.0/24",
                    "--pool",
                    "10.0.0.100-10.0.0.199",
                    "--dns",
                    "10.0.0.53",
                    "--route",
                    "192.168.0.0/16=10.0.0.254",
                    "--no-dhcp",
                    "--json",
                )
            ).stdout
        )
        assert created["allocation_pools"] == [{"start": "10.0.0.100", "end": "10.0.0.199"}]
        assert created["dhcp_address"] is None and created["enable_dhcp"] is False
        bad = await run(
            "subnet", "create", "x", "--network", "lan", "--cidr", "10.0.0.0/33", check=False
        )
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
        assert "10.0.0.0/33" in bad.stderr

        key_file = tmp_path / "ops.key"
        key = json.loads(
            (
                await run("keypair", "create", "ops", "--private-key-file", str(key_file), "--json")
            ).stdout
        )
        assert "private_key" not in key and key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        again = await run(
            "keypair", "create", "ops2", "--private-key-file", str(key_file), check=False
        )
        assert again.returncode != 0 and "exists already" in again.stderr
        pub = tmp_path / "other.pub"
        pub.write_text(generate("rsa")[1] + "\n")
        await run("keypair", "import", "other", "--public-key", str(pub))
        listed = json.loads((await run("keypair", "list", "--json")).stdout)
        assert [k["name"] for k in listed] == ["ops", "other"]

        user_data = tmp_path / "user-data"
        user_data.write_bytes(b"#cloud-config\nruncmd: [touch /tmp/ran]\n")
        vnf = json.loads(
            (
                await run(
                    "vnf",
                    "create",
                    "v1",
                    "--image",
                    "img",
                    "--flavor",
                    "small",
                    "--nic",
                    "lan,ip=10.0.0.150",
                    "--nic",
                    "lan",
                    "--key-name",
                    "ops",
                    "--user-data",
                    str(user_data),
                    "--json",
                )
            ).stdout
        )
        assert _addresses(vnf) == [["10.0.0.150"], ["10.0.0.100"]]
        shown = await run("vnf", "show", "v1")
        assert "10.0.0.150" in shown.stdout and "10.0.0.100" in shown.stdout
        taken = await run(
            "vnf",
            "create",
            "v2",
            "--image",
            "img",
            "--flavor",
            "small",
            "--nic",
            "lan,ip=10.0.0.150",
            check=False,
        )
        assert taken.returncode != 0 and "10.0.0.150 is already used" in taken.stderr
        big = tmp_path / "big"
        big.write_bytes(b"x" * 65537)
        refused = await run(
            "vnf",
            "create",
            "v2",
            "--image",
            "img",
            "--flavor",
            "small",
            "--user-data",
            str(big),
            check=False,
        )
        assert refused.returncode == 2 and "64 KiB" in refused.stderr
        await run("keypair", "delete", "other")
        deleted = await run("subnet", "delete", "lan-v4", check=False)
        assert deleted.returncode != 0 and "in use by VNF(s): v1" in deleted.stderr
