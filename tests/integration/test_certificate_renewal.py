"""Certificate renewal over mTLS, on a fake clock: an agent whose certificate reaches 2/3 of its
life renews over its live session and stays connected; the new files are written and work at the
next connection, the old certificate is refused; a refused renewal and a near expiry raise host
alarms naming the node.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent import identity, renewing, tls_files
from edgecloud.agent.connection import CredentialsRefused
from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.fm import catalogue
from edgecloud.pki.identity import cert_serial
from tests.integration.harness import AgentHandle, Site, eventually, running_site


class FakeClock:
    """The agent's wall clock, set by the test; ``until`` (a condition) turns it back into the
    real clock: once the agent renewed, its new certificate is dated by the CA's (real) clock,
    which TLS checks too, so the agent must agree with it again."""

    def __init__(self) -> None:
        self.now: dt.datetime | None = None
        self.until: Callable[[], bool] = lambda: False

    def __call__(self) -> dt.datetime:
        real = dt.datetime.now(dt.UTC)
        return real if self.now is None or self.until() else self.now


async def _start(site: Site, name: str, clock: FakeClock) -> AgentHandle:
    who = await enroll(await site.add_host(name), site.root / "agents" / name)
    agent = Agent(who, compute="fake", clock=clock, renew_check=0.05)
    handle = AgentHandle(agent, asyncio.create_task(agent.run()), who.state_dir)
    site.agents[name] = handle
    await site.wait_host(name, "online")
    return handle


async def _alarms(site: Site, name: str) -> dict[str, dict[str, Any]]:
    response = await site.api.get("/v1/alarms")
    assert response.status_code == 200, response.text
    return {a["alarm_id"]: a for a in response.json() if a["entity"] == f"host={name}"}


async def test_an_agent_renews_at_two_thirds_of_its_life_and_stays_connected(
    tmp_path: Path, db_url: str | None
) -> None:
    clock = FakeClock()
    async with running_site(tmp_path, db_url) as site:
        handle = await _start(site, "node1", clock)
        who = handle.agent.identity
        gateway = site.controller.gateway
        assert gateway is not None
        (session,) = [s for s in gateway.sessions.values() if s.host_name == "node1"]
        old_serial = cert_serial(who.cert.read_bytes())
        shutil.copytree(
            who.state_dir, tmp_path / "old-identity", ignore=shutil.ignore_patterns("tls", "images")
        )
        life = renewing.lifetime(who.cert.read_bytes())

        clock.now = life.not_before + (life.renew_at - life.not_before) * 0.99
        checks = handle.agent.renewer.checks
        await eventually(
            lambda: _async(handle.agent.renewer.checks >= checks + 3), 10, "three more checks"
        )
        assert handle.agent.renewer.renewals == 0  # not due yet

        clock.now = life.renew_at + dt.timedelta(seconds=1)
        clock.until = lambda: handle.agent.renewer.renewals > 0
        await eventually(
            lambda: _async(handle.agent.renewer.renewals == 1), 10, "the certificate renewed"
        )
        new_serial = cert_serial(who.cert.read_bytes())
        assert new_serial != old_serial
        # the same session is still up, and it is the new certificate's now
        assert gateway.sessions.get(session.host_id) is session and not session.closed.is_set()
        assert session.cert_serial == new_serial and handle.agent.connected.is_set()
        assert identity.load(who.state_dir).cert.read_bytes() == who.cert.read_bytes()
        assert (who.state_dir / "host.key").stat().st_mode & 0o777 == 0o600
        assert not list(who.state_dir.glob("*.next.*"))
        libvirt_cert = tls_files.libvirt_dir(who.state_dir) / "clientcert.pem"
        assert libvirt_cert.read_bytes() == who.cert.read_bytes()

        # the next connection uses the new certificate; the old one is refused from now on
        session.close()
        await eventually(
            lambda: _async(
                any(s is not session and s.host_name == "node1" for s in gateway.sessions.values())
            ),
            10,
            "node1 reconnected",
        )
        old = Agent(identity.load(tmp_path / "old-identity"), compute="fake")
        with pytest.raises(CredentialsRefused, match="not current on this site"):
            await old.run()
        assert not await _alarms(site, "node1")


async def test_a_refused_renewal_and_a_near_expiry_raise_alarms(
    tmp_path: Path, db_url: str | None
) -> None:
    clock = FakeClock()
    async with running_site(tmp_path, db_url) as site:
        handle = await _start(site, "node1", clock)
        who = handle.agent.identity
        life = renewing.lifetime(who.cert.read_bytes())
        clock.now = life.renew_at + dt.timedelta(seconds=1)
        clock.until = lambda: handle.agent.renewer.renewals > 0
        await eventually(lambda: _async(handle.agent.renewer.renewals == 1), 10, "renewed")
        # far into the new certificate's life: due again and near expiry, but the controller
        # refuses a second renewal on the same session moments after the first
        life = renewing.lifetime(who.cert.read_bytes())
        clock.now, clock.until = life.warn_at + dt.timedelta(days=1), lambda: False

        async def raised() -> dict[str, dict[str, Any]] | None:
            alarms = await _alarms(site, "node1")
            wanted = {catalogue.HOST_CERT_RENEWAL_FAILED, catalogue.HOST_CERT_EXPIRING}
            return alarms if wanted <= set(alarms) else None

        alarms = await eventually(raised, 10, "renewal and expiry alarms")
        assert "moments ago" in alarms[catalogue.HOST_CERT_RENEWAL_FAILED]["reason"]
        assert "expires at" in alarms[catalogue.HOST_CERT_EXPIRING]["reason"]
        assert handle.agent.renewer.renewals == 1 and handle.agent.connected.is_set()


async def _async(value: Any) -> Any:
    return value
