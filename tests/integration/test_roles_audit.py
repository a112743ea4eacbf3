"""Roles, customer scope, token lifecycle and the audit log on a real controller (HTTPS on
loopback, SQLite and PostgreSQL), as a user meets them through the API and the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud.agent.enrolling import enroll
from edgecloud.client.config import ClientConfig, save_config
from edgecloud.errors import EnrollmentError
from tests.integration.cli_support import Cli
from tests.integration.harness import Site, eventually, running_site
from tests.integration.test_chains import service, settled, setup

NETWORK_ONLY = """
heat_template_version: 2018-08-31
resources:
  lan: {type: OS::Neutron::Net}
"""


async def _token(site: Site, name: str, role: str, **extra: Any) -> str:
    response = await site.api.post("/v1/tokens", json={"name": name, "role": role, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def _as(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _call(
    site: Site, secret: str, method: str, path: str, status: int, **kwargs: Any
) -> httpx.Response:
    response = await site.api.request(method, path, headers=_as(secret), **kwargs)
    assert response.status_code == status, f"{method} {path}: {response.text}"
    return response


async def _audit(site: Site, **params: str) -> list[dict[str, Any]]:
    response = await site.api.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_roles_rotation_revocation_expiry_and_audit(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        eyes = await _token(site, "eyes", "reader")
        ops = await _token(site, "ops", "operator")
        listed = (await site.api.get("/v1/tokens")).json()
        assert {t["name"]: t["role"] for t in listed} == {
            "admin": "admin", "eyes": "reader", "ops": "operator"
        }  # fmt: skip
        assert all("secret" not in t and t["state"] == "active" for t in listed)

        # a reader reads and changes nothing; an operator changes networks, not the site
        await _call(site, eyes, "GET", "/v1/networks", 200)
        refused = await _call(site, eyes, "POST", "/v1/networks", 403, json={"name": "n0"})
        assert refused.json()["error"]["code"] == "forbidden"
        assert "needs role operator" in refused.json()["error"]["message"]
        await _call(site, eyes, "GET", "/v1/tokens", 403)
        await _call(site, ops, "POST", "/v1/networks", 201, json={"name": "n1"})
        await _call(site, ops, "POST", "/v1/hosts", 403, json={"name": "h1"})
        await _call(site, ops, "POST", "/v1/flavors", 403, json={"name": "f", "vcpus": 1, "memory_mib": 64})  # fmt: skip
        await _call(site, ops, "POST", "/v1/tokens", 403, json={"name": "x", "role": "admin"})
        await _call(site, ops, "GET", "/v1/audit", 403)
        assert [n["name"] for n in (await site.api.get("/v1/networks")).json()] == ["n1"]

        # rotation: same identity, the old secret refused on the next request
        rotated = await site.api.post("/v1/tokens/ops/rotate", json={})
        assert rotated.status_code == 200 and rotated.json()["name"] == "ops"
        new_ops = rotated.json()["secret"]
        await _call(site, ops, "GET", "/v1/networks", 401)
        await _call(site, new_ops, "GET", "/v1/networks", 200)

        # revocation: refused on the next request
        assert (await site.api.delete("/v1/tokens/eyes")).json()["state"] == "revoked"
        gone = await _call(site, eyes, "GET", "/v1/networks", 401)
        assert "revoked" in gone.json()["error"]["message"]
        last_admin = await site.api.delete("/v1/tokens/admin")
        assert last_admin.status_code == 409 and "last admin" in last_admin.text

        # expiry: a one-second token works, then is refused
        brief = await _token(site, "brief", "reader", expires_in=1)
        await _call(site, brief, "GET", "/v1/networks", 200)

        async def expired() -> bool:
            answer = await site.api.get("/v1/networks", headers=_as(brief))
            return answer.status_code == 401 and "expired" in answer.text

        await eventually(expired, 5, "the one-second token refused")

        # the audit log: who, what, target, result, when, from where; refusals included
        await site.api.post("/v1/networks", json={"name": "n2"}, headers={"Authorization": ""})
        records = await _audit(site)
        created = next(r for r in records if r["target"] == "/v1/networks/n1")
        assert created["actor"] == "ops" and created["action"] == "POST /v1/networks"
        assert created["status"] == 201 and created["client"] == "127.0.0.1"
        at = dt.datetime.fromisoformat(created["at"])
        assert at.tzinfo is not None and abs(at - dt.datetime.now(dt.UTC)).total_seconds() < 60
        assert any(
            r["actor"] == "eyes" and r["status"] == 403 and r["target"] == "/v1/networks"
            for r in records
        )
        assert any(r["actor"] == "-" and r["status"] == 401 for r in records)
        revokes = [
            (r["target"], r["status"]) for r in records if r["action"] == "DELETE /v1/tokens/{name}"
        ]
        assert revokes == [("/v1/tokens/admin", 409), ("/v1/tokens/eyes", 200)]
        assert not any(r["action"].startswith("GET") for r in records)
        assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)
        by_ops = await _audit(site, actor="ops")
        assert {r["target"] for r in by_ops} >= {"/v1/networks/n1", "/v1/hosts", "/v1/tokens"}
        assert all(r["actor"] == "ops" for r in by_ops)
        eyes_records = await _audit(site, target="/v1/tokens/eyes")
        assert [r["action"] for r in eyes_records] == [
            "DELETE /v1/tokens/{name}",
            "POST /v1/tokens",
        ]
        assert len(await _audit(site, limit="2")) == 2
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
        assert await _audit(site, since=future) == []
        naive = await site.api.get("/v1/audit", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and naive.json()["error"]["field"] == "since"


async def test_customer_scope_on_chains_stacks_and_vnfs(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await setup(site)
        acme = await _token(site, "acme-ops", "operator", customer="acme")
        acme_eyes = await _token(site, "acme-eyes", "reader", customer="acme")
        globex = await _token(site, "globex-ops", "operator", customer="globex")
        scoped_admin = await site.api.post(
            "/v1/tokens", json={"name": "x", "role": "admin", "customer": "acme"}
        )
        assert scoped_admin.status_code == 422

        body = {"name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
                "egress_port": "net0", "services": [service("router")]}  # fmt: skip
        await _call(site, globex, "POST", "/v1/chains", 403, json=body)
        await _call(site, acme, "POST", "/v1/chains", 202, json=body)
        chain = await settled(site)
        vnf = chain["services"][0]
        vnf_name = next(
            v["name"] for v in (await site.api.get("/v1/vnfs")).json()
            if v["id"] == vnf["instance_id"]
        )  # fmt: skip

        # the owner's tokens see the chain, its stack and its VNF; the reader changes nothing
        for secret in (acme, acme_eyes):
            assert [
                c["name"] for c in (await _call(site, secret, "GET", "/v1/chains", 200)).json()
            ] == ["c1"]
            assert [
                s["name"] for s in (await _call(site, secret, "GET", "/v1/stacks", 200)).json()
            ] == ["c1-router"]
            assert [
                v["name"] for v in (await _call(site, secret, "GET", "/v1/vnfs", 200)).json()
            ] == [vnf_name]
            await _call(site, secret, "GET", "/v1/chains/c1", 200)
        await _call(site, acme_eyes, "DELETE", "/v1/chains/c1", 403)
        await _call(site, acme, "GET", "/v1/hosts", 403)
        await _call(site, acme, "POST", "/v1/networks", 403, json={"name": "mine"})
        await _call(site, acme, "GET", "/v1/networks", 200)

        # another customer's operator: as if nothing were there, reading or changing
        assert (await _call(site, globex, "GET", "/v1/chains", 200)).json() == []
        assert (await _call(site, globex, "GET", "/v1/stacks", 200)).json() == []
        assert (await _call(site, globex, "GET", "/v1/vnfs", 200)).json() == []
        missing = await _call(site, globex, "GET", "/v1/chains/nope", 404)
        hidden = await _call(site, globex, "GET", "/v1/chains/c1", 404)
        assert hidden.json()["error"]["message"] == missing.json()["error"]["message"].replace(
            "nope", "c1"
        )
        await _call(site, globex, "DELETE", "/v1/chains/c1", 404)
        await _call(site, globex, "POST", "/v1/chains/c1/order", 404, json={"services": ["router"]})
        await _call(site, globex, "POST", "/v1/chains/c1/services", 404, json=service("evil"))
        await _call(site, globex, "DELETE", "/v1/chains/c1/services/router", 404)
        await _call(site, globex, "DELETE", "/v1/stacks/c1-router", 404)
        await _call(site, globex, "GET", f"/v1/vnfs/{vnf_name}", 404)
        await _call(
            site, globex, "POST", f"/v1/vnfs/{vnf_name}/actions", 404, json={"action": "stop"}
        )
        await _call(site, globex, "DELETE", f"/v1/vnfs/{vnf_name}", 404)
        assert (await settled(site))["path"] == ["router"]  # untouched
        assert (await site.vnf(vnf_name) or {}).get("status") == "running"

        # what a scoped token creates is its customer's
        stack = {"name": "g1", "template": NETWORK_ONLY}
        await _call(site, globex, "POST", "/v1/stacks", 201, json=stack)
        assert [
            s["name"] for s in (await _call(site, globex, "GET", "/v1/stacks", 200)).json()
        ] == ["g1"]
        await _call(site, acme, "GET", "/v1/stacks/g1", 404)
        assert (await site.api.get("/v1/stacks/g1")).json()["customer"] == "globex"
        assert (await site.api.get(f"/v1/vnfs/{vnf_name}")).json()["customer"] == "acme"
        assert {s["name"] for s in (await site.api.get("/v1/stacks")).json()} == {"c1-router", "g1"}

        # the enrollment of node1 is in the audit log
        records = await _audit(site, actor="join-token:node1")
        assert [(r["action"], r["target"], r["status"]) for r in records] == [
            ("enroll", "host node1", 201)
        ]
        assert records[0]["client"].startswith("127.0.0.1")
        spare = await site.add_host("spare")
        await enroll(spare, tmp_path / "spare-1")
        with pytest.raises(EnrollmentError, match="already used"):
            await enroll(spare, tmp_path / "spare-2")
        spare_records = await _audit(site, actor="join-token:spare")
        assert [r["status"] for r in spare_records] == [403, 201]
        hidden_change = await _audit(site, actor="globex-ops", target="/v1/chains/c1")
        assert hidden_change and all(r["status"] == 404 for r in hidden_change)


async def test_token_and_audit_commands(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        ca, url = site.info["ca_cert"], site.info["api_url"]
        admin_token = site.api.headers["Authorization"].removeprefix("Bearer ")
        admin = Cli(save_config(ClientConfig(url, admin_token, ca), tmp_path / "admin.json"))

        async def run(cli: Cli, *args: str, check: bool = True) -> Any:
            return await asyncio.to_thread(cli.run, *args, check=check)

        made = json.loads((await run(admin, "token", "create", "eyes", "--role", "reader",
                                     "--customer", "acme", "--expires-in", "30d", "--json")).stdout)  # fmt: skip
        assert made["role"] == "reader" and made["customer"] == "acme" and made["secret"]
        expires = dt.datetime.fromisoformat(made["expires_at"]) - dt.datetime.now(dt.UTC)
        assert 29.9 < expires.total_seconds() / 86400 <= 30
        table = (await run(admin, "token", "create", "ops", "--role", "operator")).stdout
        assert "secret (shown once" in table
        reader = Cli(save_config(ClientConfig(url, made["secret"], ca), tmp_path / "eyes.json"))

        bad = await run(
            admin, "token", "create", "x", "--role", "reader", "--expires-in", "3x", check=False
        )
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        assert (
            bad.stderr.startswith("error: --expires-in must be") and "Traceback" not in bad.stderr
        )
        refused = await run(reader, "token", "list", check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert "needs role admin" in refused.stderr
        again = await run(admin, "token", "create", "eyes", "--role", "reader", check=False)
        assert again.returncode == 1 and "already exists" in again.stderr

        listed = json.loads((await run(admin, "token", "list", "--json")).stdout)
        assert {t["name"] for t in listed} == {"admin", "eyes", "ops"}
        rotated = json.loads((await run(admin, "token", "rotate", "eyes", "--json")).stdout)
        assert rotated["secret"] != made["secret"]
        stale = await run(reader, "network", "list", check=False)
        assert stale.returncode == 1 and "not valid" in stale.stderr
        assert "revoked" in (await run(admin, "token", "revoke", "ops")).stdout

        records = json.loads((await run(admin, "audit", "list", "--since", "1h", "--json")).stdout)
        actions = [(r["actor"], r["action"], r["target"]) for r in records]
        assert ("admin", "POST /v1/tokens/{name}/rotate", "/v1/tokens/eyes/rotate") in actions
        assert ("admin", "DELETE /v1/tokens/{name}", "/v1/tokens/ops") in actions
        only = json.loads(
            (await run(admin, "audit", "list", "--target", "/v1/tokens/ops", "--json")).stdout
        )
        assert [r["action"] for r in only] == ["DELETE /v1/tokens/{name}", "POST /v1/tokens"]
        wrong = await run(admin, "audit", "list", "--since", "yesterday", check=False)
        assert wrong.returncode == 2 and wrong.stderr.startswith("error: --since must be")
