"""The API's surface to anyone who can reach it: request bodies above their route's bound are
answered 413 before authentication and without being read; the API can listen on its own
address, apart from the agent gateway; undeclared methods get 405 with an Allow header and
the error body; timestamps are RFC 3339 with a zone; the state folder and its secrets are
private (0700 / 0600) also when they were left wider by an earlier run."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import ssl
import stat
from pathlib import Path
from urllib.parse import urlsplit

from edgecloud.api.limits import BodyLimits
from tests.integration.harness import Site, running_site

SMALL = BodyLimits(json=64 * 1024, image=256 * 1024)


async def _raw_request(site: Site, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) over TLS and read the answer: (status, whole response)."""
    url = urlsplit(site.info["api_url"])
    context = ssl.create_default_context(cafile=site.info["ca_cert"])
    reader, writer = await asyncio.open_connection(
        url.hostname, url.port, ssl=context, server_hostname=url.hostname
    )
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = re.search(rb"(?i)content-length: *(\d+)", headers)
        content = await reader.readexactly(int(length.group(1))) if length else b""
    finally:
        writer.close()
    return int(headers.split(b" ", 2)[1]), headers + content


async def test_a_body_above_the_bound_is_refused_before_authentication_unread(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path, body_limits=SMALL) as site:
        # declared 100 MiB, not one byte of it sent, no token: 413 at once
        head = (
            "POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
        )
        status, answer = await _raw_request(site, head)
        assert status == 413, answer
        assert b'"code":"content_too_large"' in answer and b"65536 bytes" in answer
        # the image upload has its own, larger bound, also checked before authentication
        head = (
            "PUT /v1/images/big?disk_format=raw HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {SMALL.image + 1}\r\n\r\n"
        )
        status, answer = await _raw_request(site, head)
        assert status == 413 and b"262144 bytes" in answer, answer
        # within the bound, the same anonymous request is simply unauthorised
        head = "PUT /v1/images/big?disk_format=raw HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
        status, _ = await _raw_request(site, head, b"abcd")
        assert status == 401


async def test_a_chunked_body_is_counted_and_cut_at_the_bound(tmp_path: Path) -> None:
    async with running_site(tmp_path, body_limits=SMALL) as site:

        async def chunks(total: int):  # type: ignore[no-untyped-def]
            sent = 0
            while sent < total:
                yield b"x" * 16384
                sent += 16384

        too_big = await site.api.post(
            "/v1/networks",
            content=chunks(SMALL.json + 16384),
            headers={"Content-Type": "application/json"},
        )
        assert too_big.status_code == 413, too_big.text
        assert too_big.json()["error"]["code"] == "content_too_large"
        upload = await site.api.put(
            "/v1/images/big", params={"disk_format": "raw"}, content=chunks(SMALL.image * 2)
        )
        assert upload.status_code == 422, upload.text  # an upload needs its Content-Length
        assert (await site.api.get("/v1/images/big")).status_code == 404  # nothing half-made
        ok = await site.api.post("/v1/networks", json={"name": "lan"})
        assert ok.status_code == 201, ok.text


async def test_the_api_listens_on_its_own_address(tmp_path: Path) -> None:
    async with running_site(tmp_path, api_listen="127.0.0.2") as site:
        api = urlsplit(site.info["api_url"])
        assert api.hostname == "127.0.0.2"
        assert site.info["gateway"].startswith("127.0.0.1:")
        assert (await site.api.get("/v1/hosts")).status_code == 200  # certificate names it
        gateway_host = "127.0.0.1"
        try:
            _, writer = await asyncio.open_connection(gateway_host, api.port)
        except ConnectionRefusedError:
            pass  # the API's port is not open on the gateway's address
        else:
            writer.close()
            raise AssertionError(f"the API port {api.port} answers on {gateway_host} too")


async def test_undeclared_methods_get_405_with_allow_and_the_error_body(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        response = await site.api.request("TRACE", "/v1/hosts/node1")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
        assert response.json()["error"]["code"] == "method_not_allowed"
        response = await site.api.put("/v1/networks", json={})
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD, POST"


async def test_timestamps_are_rfc3339_with_a_zone(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.api.post("/v1/hosts", json={"name": "node1"})
        host = (await site.api.get("/v1/hosts/node1")).json()
        created = dt.datetime.fromisoformat(host["created_at"])
        assert created.utcoffset() == dt.timedelta(0), host["created_at"]
        assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=5)


async def test_a_template_of_control_characters_is_refused_with_422(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        body = {"name": "s1", "template": "\x17\x92;\x9d Lte"}
        response = await site.api.post("/v1/stacks", json=body)
        assert response.status_code == 422, response.text
        assert "invalid YAML" in response.json()["error"]["message"]


async def test_state_folder_and_secrets_are_private_also_when_left_wider(
    tmp_path: Path,
) -> None:
    state = tmp_path / "controller"
    (state / "pki").mkdir(parents=True)
    (state / "admin-token").write_text("from an earlier run\n")
    for path, mode in ((state, 0o755), (state / "pki", 0o755), (state / "admin-token", 0o644)):
        os.chmod(path, mode)
    old = os.umask(0o022)
    try:
        async with running_site(tmp_path) as site:
            await site.api.post("/v1/networks", json={"name": "lan"})  # the store is written
            token = await site.add_host("node1")
            await site.start_agent("node1", token)
            await site.wait_host("node1", "online")
            agent = site.agents["node1"].state_dir
            modes = {
                p: stat.S_IMODE(p.stat().st_mode)
                for p in (
                    state,
                    state / "pki",
                    state / "pki" / "ca.key",
                    state / "pki" / "server.key",
                    state / "admin-token",
                    state / "edgecloud.db",
                    agent,
                    agent / "host.key",
                )
            }
            wal = state / "edgecloud.db-wal"
            if wal.exists():
                modes[wal] = stat.S_IMODE(wal.stat().st_mode)
    finally:
        os.umask(old)
    wide = {str(p): oct(m) for p, m in modes.items() if m & 0o077}
    assert not wide, wide


async def test_a_chain_from_a_port_to_itself_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: such a chain was accepted and its reconciler failed forever (both
    directions of its one hop had the same id, a unique constraint broke at every retry)."""
    async with running_site(tmp_path) as site:
        await site.join("node1")
        body = {"name": "c1", "customer": "acme", "host": "node1"}
        same = await site.api.post(
            "/v1/chains", json={**body, "ingress_port": "p0", "egress_port": "p0"}
        )
        assert same.status_code == 422, same.text
        assert same.json()["error"]["field"] == "egress_port"
        assert (await site.api.get("/v1/chains/c1")).status_code == 404
