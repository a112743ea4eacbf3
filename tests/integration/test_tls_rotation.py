"""Rotating TLS material on a running controller, no restart: the server certificate (new
connections to the gateway and the API get the new one, sessions stay up), and the site CA by
the documented procedure (pki/rotation.py, docs/security.md): begin -> connected nodes renew
onto the new CA and get both CAs -> finish -> the old CA is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import pytest

from edgecloud.agent import identity
from edgecloud.agent.connection import CredentialsRefused
from edgecloud.agent.runner import Agent
from edgecloud.pki import rotation
from edgecloud.pki.identity import fingerprint_of, verify_signed_by
from tests.integration.harness import Site, eventually, running_site


async def _presented(address: str) -> str:
    """SHA-256 of the certificate a new TLS connection to ``address`` is shown."""
    host, _, port = address.removeprefix("https://").rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return hashlib.sha256(der).hexdigest()


def _session(site: Site, name: str) -> object:
    gateway = site.controller.gateway
    assert gateway is not None
    return next(s for s in gateway.sessions.values() if s.host_name == name)


async def test_the_server_certificate_rotates_without_a_restart(tmp_path: Path) -> None:
    async with running_site(tmp_path, tls_reload_period=0.1) as site:
        await site.join("node1")
        session = _session(site, "node1")
        pki = tmp_path / "controller" / "pki"
        gateway_before = await _presented(site.info["gateway"])
        api_before = await _presented(site.info["api_url"])
        assert gateway_before == api_before == fingerprint_of((pki / "server.crt").read_bytes())
        (pki / "server.crt").unlink()  # e.g. expired and removed: the controller issues anew
        (pki / "server.key").unlink()

        async def rotated() -> bool:
            return (pki / "server.crt").exists() and (
                await _presented(site.info["gateway"]) != gateway_before
            )

        await eventually(rotated, 10, "the gateway presents a new certificate")
        now = fingerprint_of((pki / "server.crt").read_bytes())
        assert await _presented(site.info["gateway"]) == now
        assert await _presented(site.info["api_url"]) == now
        assert (await site.api.get("/v1/hosts")).status_code == 200  # API still verified
        assert _session(site, "node1") is session  # the live session was not touched
        await site.join("node2")  # a new node trusts and reaches it


async def test_ca_rotation_begin_renew_finish(tmp_path: Path) -> None:
    async with running_site(tmp_path, tls_reload_period=0.1) as site:
        pki = tmp_path / "controller" / "pki"
        node1 = await site.join("node1")
        offline = await site.join("node2")
        await offline.stop()  # offline during the whole overlap
        session = _session(site, "node1")
        old_ca = (pki / "ca.crt").read_bytes()

        early_token = await site.add_host("node4")  # issued before the rotation
        new = await asyncio.to_thread(rotation.begin, pki, "edge")
        who = node1.agent.identity

        async def renewed() -> bool:
            return verify_signed_by(who.cert.read_bytes(), new.cert_pem)

        await eventually(renewed, 10, "node1 renewed onto the new CA")
        assert who.ca.read_bytes() == new.cert_pem + old_ca  # it trusts both meanwhile
        assert _session(site, "node1") is session and node1.agent.connected.is_set()
        # enrollment during the overlap: the token names the old CA (the server's), the node
        # gets a new-CA certificate and both CAs
        await eventually(
            lambda: _true(
                site.controller.gateway is not None
                and site.controller.gateway.ca.fingerprint == new.fingerprint
            ),
            10,
            "controller signs with the new CA",
        )
        # a new API client given controller.json's ca_cert (as the client config is) verifies
        # the API's old-CA certificate meanwhile, and the new one after the finish
        assert await site.api_verified()
        node3 = await site.join("node3")
        assert verify_signed_by(node3.agent.identity.cert.read_bytes(), new.cert_pem)
        assert node3.agent.identity.ca.read_bytes() == new.cert_pem + old_ca
        await site.start_agent("node4", early_token)  # a token from before the begin works
        await site.wait_host("node4", "online")

        await asyncio.to_thread(rotation.finish, pki)

        async def server_on_new_ca() -> bool:
            return verify_signed_by((pki / "server.crt").read_bytes(), new.cert_pem)

        await eventually(server_on_new_ca, 10, "server certificate re-issued by the new CA")
        await eventually(lambda: site.api_verified(), 10, "a new API client after the finish")
        assert (pki / "api-ca.crt").read_bytes() == new.cert_pem
        # node1 reconnects (new server certificate, its new client certificate): still fine
        gateway = site.controller.gateway
        assert gateway is not None
        _session(site, "node1").close()  # type: ignore[attr-defined]
        await eventually(
            lambda: _true(
                any(s is not session and s.host_name == "node1" for s in gateway.sessions.values())
            ),
            10,
            "node1 back",
        )
        # node2 never renewed: refused, it must be enrolled again
        with pytest.raises(CredentialsRefused):
            await Agent(identity.load(offline.state_dir), compute="fake").run()


async def _true(value: bool) -> bool:
    return value
