"""Controller protection against reconnect storms and multi-host loss, with a real controller
and real agents over mTLS: admission control (fast close, 'retry' honoured), resume by version,
one alarm for a mass loss instead of one 'host offline' per host, and the protections-off
baseline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edgecloud.agent.enrolling import enroll
from edgecloud.agent.identity import load
from edgecloud.agent.runner import Agent
from edgecloud.gateway.admission import Protection
from tests.integration.harness import RESYNC, AgentHandle, Site, eventually, running_site

MASS_LOSS = "200.020"
HOST_OFFLINE = "200.004"


async def start(site: Site, name: str) -> AgentHandle:
    """Like Site.start_agent, with a short reconnect backoff (the test must be quick)."""
    state_dir = site.root / "agents" / name
    identity = load(state_dir)
    agent = Agent(identity, resync_interval=RESYNC, backoff=(0.05, 0.5))
    handle = AgentHandle(agent, asyncio.create_task(agent.run()), state_dir)
    site.agents[name] = handle
    return handle


async def enroll_all(site: Site, names: list[str]) -> None:
    """Enroll one by one (enrollment is not retried), then start every agent at once."""
    for name in names:
        await enroll(await site.add_host(name), site.root / "agents" / name)
    await asyncio.gather(*(start(site, n) for n in names))


async def all_online(site: Site, names: list[str]) -> bool:
    hosts = {h["name"]: h for h in (await site.api.get("/v1/hosts")).json()}
    return all(hosts[n]["availability"] == "online" for n in names)


async def active_alarms(site: Site, alarm_id: str) -> list[dict[str, Any]]:
    alarms = (await site.api.get("/v1/alarms")).json()
    return [a for a in alarms if a["alarm_id"] == alarm_id]


async def test_admission_control_admits_everyone_in_bounded_steps(tmp_path: Path) -> None:
    tight = Protection(
        max_handshakes=1, backlog=2, max_syncs=1, max_sync_waiting=1, retry_after=(0.05, 0.2)
    )
    async with running_site(tmp_path, protection=tight) as site:
        names = [f"n{i}" for i in range(12)]
        await enroll_all(site, names)
        await eventually(lambda: all_online(site, names), 30, "every host online")
        gateway = site.controller.gateway
        assert gateway is not None
        assert len(gateway.sessions) == len(names)
        # everyone got in, one TLS handshake at a time
        assert gateway.stats.handshakes_peak == 1
        assert all(h.agent.connected.is_set() for h in site.agents.values())


async def test_resume_by_version_sends_nothing_when_current(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await enroll_all(site, ["n1"])
        await eventually(lambda: all_online(site, ["n1"]), 15, "n1 online")
        gateway = site.controller.gateway
        assert gateway is not None
        await eventually(lambda: _synced(gateway, "n1"), 10, "n1 in sync")
        syncs = gateway.stats.full_syncs
        await site.agents.pop("n1").stop()
        await start(site, "n1")
        await eventually(lambda: _resumed(gateway, 1), 15, "n1 resumed")
        assert gateway.stats.full_syncs == syncs, "a current agent was sent its state again"


async def _synced(gateway: Any, name: str) -> bool:
    return any(
        s.host_name == name and s.applied_version == s.sent_version
        for s in gateway.sessions.values()
    )


async def _resumed(gateway: Any, count: int) -> bool:
    return bool(gateway.stats.resumed_in_sync >= count)


async def test_mass_loss_raises_one_alarm_and_holds_off(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        names = [f"n{i}" for i in range(6)]
        await enroll_all(site, names)
        await eventually(lambda: all_online(site, names), 20, "every host online")
        await asyncio.gather(*(site.agents.pop(n).stop() for n in names))
        # three heartbeats (1.5 s) later each would be lost: one site alarm instead
        alarm = await eventually(lambda: active_alarms(site, MASS_LOSS), 15, "alarm 200.020")
        assert len(alarm) == 1 and alarm[0]["entity"] == "site"
        await asyncio.sleep(1.0)  # two more liveness checks: still held off
        assert await all_online(site, names), "hosts were declared offline one by one"
        assert await active_alarms(site, HOST_OFFLINE) == []
        for name in names:
            await start(site, name)
        await eventually(lambda: _none(active_alarms(site, MASS_LOSS)), 15, "alarm 200.020 cleared")
        assert await all_online(site, names)


async def _none(alarms: Any) -> bool:
    return not await alarms


async def test_without_protection_each_silent_host_goes_offline(tmp_path: Path) -> None:
    async with running_site(tmp_path, protection=Protection(enabled=False)) as site:
        names = [f"n{i}" for i in range(6)]
        await enroll_all(site, names)
        await eventually(lambda: all_online(site, names), 20, "every host online")
        await asyncio.gather(*(site.agents.pop(n).stop() for n in names))
        alarms = await eventually(
            lambda: _at_least(active_alarms(site, HOST_OFFLINE), 6), 15, "6 host-offline alarms"
        )
        assert len(alarms) == 6
        assert await active_alarms(site, MASS_LOSS) == []


async def _at_least(alarms: Any, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await alarms
    return found if len(found) >= n else None


async def test_a_reconnecting_agent_resumes_its_tls_session(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await enroll_all(site, ["n1"])
        await eventually(lambda: all_online(site, ["n1"]), 15, "n1 online")
        gateway = site.controller.gateway
        assert gateway is not None
        await eventually(lambda: _has_session(gateway), 10, "n1 connected")
        for session in list(gateway.sessions.values()):
            session.close()  # the controller cuts the session; the agent dials again
        await eventually(lambda: _tls_resumed(gateway), 15, "a resumed TLS session")
        await eventually(lambda: _has_session(gateway), 15, "n1 back")


async def _has_session(gateway: Any) -> bool:
    return bool(gateway.sessions)


async def _tls_resumed(gateway: Any) -> bool:
    return bool(gateway.stats.tls_resumed >= 1)
