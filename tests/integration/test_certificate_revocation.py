"""Revocation and one-time tokens, from where the operator stands: deleting a host or giving it
a new join token closes its live session within a second and its old certificate is refused
from then on; two enrollments racing with one token: exactly one wins (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from edgecloud.agent import identity
from edgecloud.agent.connection import CredentialsRefused
from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.errors import EnrollmentError
from edgecloud.gateway import revoking
from edgecloud.store.database import transaction
from edgecloud.store.models import Host
from tests.integration.harness import AgentHandle, Site, eventually, running_site


async def _closed_within(site: Site, name: str, seconds: float) -> float:
    """Seconds until the agent's run ended refused and its session is gone (asserts both)."""
    handle = site.agents[name]
    gateway = site.controller.gateway
    assert gateway is not None
    started = time.monotonic()

    async def gone() -> bool:
        return handle.task.done() and not any(
            s.host_name == name for s in gateway.sessions.values()
        )

    await eventually(gone, seconds, f"the session of {name} closed")
    with pytest.raises(CredentialsRefused, match="not current on this site"):
        handle.task.result()
    return time.monotonic() - started


async def test_deleting_a_host_closes_its_live_session_within_a_second(
    tmp_path: Path, db_url: str | None, record_property: Callable[[str, object], None]
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        other = await site.join("node2")
        assert (await site.api.delete("/v1/hosts/node1")).status_code == 204
        elapsed = await _closed_within(site, "node1", 1.0)
        record_property("session closed after the delete answered, s", round(elapsed, 3))
        assert elapsed < 1.0
        # the other host's session is untouched
        assert not other.task.done() and other.agent.connected.is_set()
        with pytest.raises(CredentialsRefused, match="not current on this site"):
            await Agent(identity.load(site.agents["node1"].state_dir), compute="fake").run()


async def test_a_new_join_token_closes_the_session_and_refuses_the_old_certificate(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        handle = await site.join("node1")
        response = await site.api.post("/v1/hosts/node1/join-token")
        assert response.status_code in (200, 201), response.text
        assert await _closed_within(site, "node1", 1.0) < 1.0
        with pytest.raises(CredentialsRefused, match="not current on this site"):
            await Agent(identity.load(handle.state_dir), compute="fake").run()
        # the new token enrolls the node again, and it connects
        site.agents.pop("node1")
        await site.start_agent("node1", str(response.json()["join_token"]))
        await site.wait_host("node1", "online")


async def test_two_enrollments_with_one_token_exactly_one_wins(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        for round_ in range(3):
            token = await site.add_host(f"node{round_}")
            results = await asyncio.gather(
                enroll(token, tmp_path / f"a{round_}"),
                enroll(token, tmp_path / f"b{round_}"),
                return_exceptions=True,
            )
            won = [r for r in results if isinstance(r, identity.AgentIdentity)]
            lost = [r for r in results if isinstance(r, EnrollmentError)]
            assert len(won) == 1 and len(lost) == 1, results
            assert "already used" in str(lost[0])
            # the winner's certificate is the host's current one: it connects
            agent = Agent(won[0], compute="fake")
            task = asyncio.create_task(agent.run())
            site.agents[won[0].host] = AgentHandle(agent, task, won[0].state_dir)
            await site.wait_host(won[0].host, "online")


async def test_a_change_made_by_another_controller_process_is_caught_by_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revoking, "SWEEP_PERIOD", 0.2)
    async with running_site(tmp_path) as site:
        await site.join("node1")
        gateway = site.controller.gateway
        assert gateway is not None
        # as another process would: the store changes, this gateway is not told
        async with transaction(gateway.ctx.sessions) as s:
            host = (await s.scalars(select(Host).where(Host.name == "node1"))).one()
            host.cert_serial = None
        await _closed_within(site, "node1", 5.0)
        assert gateway.revocation.revoked == 1
