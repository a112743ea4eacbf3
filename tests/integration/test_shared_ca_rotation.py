"""A CA rotation of a site with two controllers sharing the site CA (issue 11: the CA key no
longer lives on one node's disk, and neither does a rotation): `edgecloud ca rotate ... --db
--site-secret-file` is taken in the store and both controllers follow, so a node connected to
the other controller renews onto the new CA, both controllers sign with it and serve
certificates the node trusts at every step, and the node reconnects to each of them after the
finish; a controller that was down during a step catches up when it starts again.

PostgreSQL only (the shared CA needs it); skipped like the other PostgreSQL tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecloud.agent import identity
from edgecloud.agent.connection import CredentialsRefused
from edgecloud.agent.runner import Agent
from edgecloud.cli.main import main
from edgecloud.pki.identity import client_ssl_context, verify_signed_by
from tests.integration.harness import (
    AgentHandle,
    Site,
    eventually,
    running_site,
    second_controller,
)

SECRET = "correct horse battery staple"
RELOAD = 0.2  # seconds: the controllers' TLS and site CA checks (notices come at once)


@pytest.fixture
def pg_url(db_url: str | None) -> str:
    if db_url is None:
        pytest.skip("two controllers share the site CA only on PostgreSQL")
    return db_url


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "site-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


async def rotate(step: str, pg_url: str, secret_file: Path) -> str:
    """`edgecloud ca rotate STEP --db URL --site-secret-file FILE`; its output."""
    args = ["ca", "rotate", step, "--db", pg_url, "--site-secret-file", str(secret_file)]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    return result.output


def pki(site: Site) -> Path:
    return site.root / "controller" / "pki"


def signs_with(site: Site) -> str | None:
    gateway = site.controller.gateway
    return None if gateway is None else gateway.ca.fingerprint


def connected(site: Site, host_id: str) -> bool:
    gateway = site.controller.gateway
    return gateway is not None and host_id in gateway.sessions


async def presented(site: Site, trust: Path) -> bytes:
    """The certificate a new TLS connection to the site's gateway is shown, verified against
    ``trust`` (a node's CA bundle): the handshake fails when the chain is not trusted."""
    host, _, port = site.info["gateway"].rpartition(":")
    context = client_ssl_context(trust)
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return bytes(der)


async def holds(check: bool) -> bool:
    return check


async def stop(site: Site) -> None:
    """Stop a controller inside its context (its API client first: uvicorn waits for it)."""
    await site.api.aclose()
    site.controller.stopping.set()
    await asyncio.wait_for(site.task, 30)


async def learns(handle: AgentHandle, site: Site) -> None:
    """Wait until the node knows the site's gateway address (a restarted controller has new
    ports; the connected controller's `controllers` message tells the node)."""
    record = handle.state_dir / "agent.json"

    async def known() -> bool:
        return site.info["gateway"] in json.loads(record.read_text()).get("controllers", [])

    await eventually(known, 10, f"the node learns {site.info['gateway']}")


async def test_a_rotation_through_one_controller_reaches_a_node_on_the_other(
    tmp_path: Path, pg_url: str, secret_file: Path
) -> None:
    options = {"site_secret": SECRET, "tls_reload_period": RELOAD}
    async with running_site(tmp_path / "a", pg_url, **options) as a:
        old = (pki(a) / "ca.crt").read_bytes()
        async with second_controller(tmp_path / "b", a, pg_url, copy_pki=False, **options) as b:
            # n1's token names b first: connected to b (its agent is a's, so it outlives b)
            node = await a.start_agent("n1", await b.add_host("n1"))
            await b.wait_host("n1", "online")
            n1 = (await b.host("n1"))["id"]
            assert connected(b, n1) and not connected(a, n1)
            offline = await b.join("n9")
            await offline.stop()  # offline during the whole overlap
            who = node.agent.identity

            out = await rotate("begin", pg_url, secret_file)
            new_fp = out.split("new CA ")[1].split()[0]
            assert new_fp != a.info["ca_fingerprint"]

            async def both_sign_with_the_new_ca() -> bool:
                return signs_with(a) == signs_with(b) == new_fp

            await eventually(both_sign_with_the_new_ca, 10, "both controllers follow the begin")
            new = (pki(a) / "ca.crt").read_bytes()
            assert (pki(b) / "ca.crt").read_bytes() == new

            async def renewed() -> bool:
                return verify_signed_by(who.cert.read_bytes(), new)

            await eventually(renewed, 10, "n1 (on b) renewed onto the new CA")
            assert who.ca.read_bytes() == new + old  # trusts both meanwhile
            assert connected(b, n1)  # the session stayed up
            # both servers still show old-CA certificates, which every node trusts
            for site in (a, b):
                shown = await presented(site, who.ca)
                assert verify_signed_by(shown, old)
                assert await presented(site, offline.agent.identity.ca) == shown
                assert site.controller.gateway is not None
                assert site.controller.gateway.ctx.ca_fingerprint != new_fp  # tokens: old CA
            # a new CLI or SDK client (the client config names controller.json's ca_cert)
            assert await a.api_verified() and await b.api_verified()
            # a node enrolled during the overlap through the first controller
            n2 = await a.join("n2")
            assert verify_signed_by(n2.agent.identity.cert.read_bytes(), new)

            await rotate("finish", pg_url, secret_file)

            async def servers_on_the_new_ca() -> bool:
                return all([verify_signed_by(await presented(s, who.ca), new) for s in (a, b)])

            await eventually(servers_on_the_new_ca, 10, "both servers show new-CA certificates")
            for site in (a, b):
                await eventually(lambda s=site: s.api_verified(), 10, "a new API client")
                assert not (pki(site) / "trust.crt").exists()
                assert not (pki(site) / "ca.previous.key").exists()
            # the node that never renewed is refused by both
            with pytest.raises(CredentialsRefused):
                await Agent(identity.load(offline.state_dir), compute="fake").run()

            # n1 reconnects: to a when b stops ...
            await stop(b)
            await eventually(lambda: holds(connected(a, n1)), 10, "n1 connected to a")
        # ... and to b when b is back and a stops
        async with second_controller(tmp_path / "b", a, pg_url, copy_pki=False, **options) as b:
            assert b.info["ca_fingerprint"] == new_fp
            await learns(node, b)
            await stop(a)
            await eventually(lambda: holds(connected(b, n1)), 10, "n1 connected to b")
            await b.wait_host("n1", "online")


async def test_a_controller_down_during_the_steps_catches_up_when_it_starts(
    tmp_path: Path, pg_url: str, secret_file: Path
) -> None:
    options = {"site_secret": SECRET, "tls_reload_period": RELOAD}
    async with running_site(tmp_path / "a", pg_url, **options) as a:
        old = (pki(a) / "ca.crt").read_bytes()
        async with second_controller(tmp_path / "b", a, pg_url, copy_pki=False, **options):
            pass  # b has the site CA on its disk, then stops
        node: AgentHandle = await a.join("n1")
        n1 = (await a.host("n1"))["id"]

        await rotate("begin", pg_url, secret_file)  # b is down
        async with second_controller(tmp_path / "b", a, pg_url, copy_pki=False, **options) as b:
            new = (pki(a) / "ca.crt").read_bytes()
            assert (pki(b) / "ca.crt").read_bytes() == new  # b took the overlap at start
            assert (pki(b) / "trust.crt").read_bytes() == new + old
            assert signs_with(b) == signs_with(a)
            shown = await presented(b, node.agent.identity.ca)
            assert verify_signed_by(shown, old)  # kept: nodes not renewed trust only the old CA

        await rotate("finish", pg_url, secret_file)  # b is down again
        (tmp_path / "b" / "controller" / "pki" / "server.crt").unlink()  # and must issue anew
        async with second_controller(tmp_path / "b", a, pg_url, copy_pki=False, **options) as b:
            assert not (pki(b) / "trust.crt").exists()
            assert not (pki(b) / "ca.previous.key").exists()
            assert verify_signed_by((pki(b) / "server.crt").read_bytes(), new)
            # n1 renewed on a during the overlap, so it follows to b
            assert verify_signed_by(node.agent.identity.cert.read_bytes(), new)
            await learns(node, b)
            await stop(a)
            await eventually(lambda: holds(connected(b, n1)), 10, "n1 connected to b")


async def test_refused_steps_change_nothing_and_a_rollback_is_followed(
    tmp_path: Path, pg_url: str, secret_file: Path
) -> None:
    """A wrong secret, a step out of order, or one controller's folder of a shared CA: one
    sentence each and nothing changed; a rollback brings the old CA back on the controller."""
    async with running_site(
        tmp_path / "a", pg_url, site_secret=SECRET, tls_reload_period=RELOAD
    ) as a:
        first = a.info["ca_fingerprint"]
        wrong = tmp_path / "wrong"
        wrong.write_text("x" * 16 + "wrong\n")

        async def cli(*args: str) -> tuple[int, str]:
            result = await asyncio.to_thread(CliRunner().invoke, main, ["ca", "rotate", *args])
            assert "Traceback" not in result.output
            return result.exit_code, result.output

        store = ["--db", pg_url, "--site-secret-file"]
        code, out = await cli("begin", *store, str(wrong))
        assert code == 1 and "site secret does not open the site CA key" in out
        code, out = await cli("finish", *store, str(secret_file))
        assert code == 1 and "no CA rotation of the site is in progress" in out
        code, out = await cli("begin", "--state-dir", str(tmp_path / "a" / "controller"))
        assert code == 2  # a usage error: one sentence naming the way
        assert "shared through the store: rotate it with --db" in out
        assert not (pki(a) / "trust.crt").exists() and signs_with(a) == first

        out = await rotate("begin", pg_url, secret_file)
        new_fp = out.split("new CA ")[1].split()[0]
        code, out = await cli("begin", *store, str(secret_file))
        assert code == 1 and "in progress: finish it first" in out
        code, out = await cli("status", *store, str(secret_file))
        assert code == 0 and "generation 2" in out and f"signing CA {new_fp}" in out
        assert f"old CA {first} trusted too" in out
        await eventually(lambda: holds(signs_with(a) != first), 10, "a signs with the new CA")
        await rotate("rollback", pg_url, secret_file)
        await eventually(lambda: holds(signs_with(a) == first), 10, "a signs with the old CA")
        await eventually(
            lambda: holds(not (pki(a) / "trust.crt").exists()), 10, "only the old CA trusted"
        )
        await a.join("n1")  # a token names the old CA again; the node enrolls
        code, out = await cli("status", *store, str(secret_file))
        assert code == 0 and "generation 3" in out and f"signing CA {first}" in out
        assert "no rotation" in out
