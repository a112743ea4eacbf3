"""A hello that meets an unreachable store (a replicated store failing over: issue 11 (b),
where a node's agent whose session was on the dead node's controller dials the other one)
is answered ``retry``, not closed without a word: the agent keeps dialling (three silent
closes in a row are how it learns its certificate was refused, and it stops) and is
connected again as soon as the store answers; the retries are not contact for its fence
(no session was opened, so no leader counts the node present because of them)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from edgecloud.agent.connection import CLOSES_BEFORE_REFUSED
from edgecloud.fm.catalogue import HOST_DISK_FULL
from edgecloud.services import availability, reports
from tests.integration.harness import eventually, running_site

RETRIED = "no session while the store is unreachable"


async def test_an_agent_dialling_during_a_store_outage_is_told_to_retry_and_keeps_trying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgecloud.gateway.gateway")
    async with running_site(
        tmp_path, host_recovery=True, heartbeat_interval=1.0, heartbeat_misses=4
    ) as site:
        handle = await site.join("n1")
        gateway = site.controller.gateway
        assert gateway is not None
        real = availability.session_starts

        async def store_away(*_args: Any, **_kwargs: Any) -> Any:
            raise OperationalError("SELECT", {}, ConnectionRefusedError(111, "refused"))

        monkeypatch.setattr(availability, "session_starts", store_away)
        for session in list(gateway.sessions.values()):
            session.abort()  # the agent dials again, into the outage
        cut = time.monotonic()

        async def retried() -> bool:
            return sum(RETRIED in r.getMessage() for r in caplog.records) > CLOSES_BEFORE_REFUSED

        await eventually(retried, 20, "the agent told to retry more than 3 times")
        assert not handle.task.done(), "the agent gave up (took the outage for a refusal)"
        assert handle.agent.fence.silent_for() >= 0.9 * (time.monotonic() - cut), (
            "a retry counted as contact"
        )
        monkeypatch.setattr(availability, "session_starts", real)
        host_id = (await site.host("n1"))["id"]
        await eventually(lambda: _true(host_id in gateway.sessions), 10, "connected again")
        assert handle.agent.fence.silent_for() < 2.0  # the welcome and heartbeats count


async def _true(value: bool) -> bool:
    return value


async def test_an_alarm_write_that_hangs_on_the_store_does_not_make_its_host_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's reader goes on reading (and the gateway on answering) heartbeats while a
    host alarm waits for the store: before, the write ran in the reader, so a store that hung
    for the liveness limit made the host 'silent' and its session was closed (seen in CI in
    the partition test of test_host_recovery.py, whose fence alarm met the cut store).
    Once the store answers, the alarms land in the order the agent sent them."""
    async with running_site(
        tmp_path, host_recovery=True, heartbeat_interval=0.25, heartbeat_misses=4
    ) as site:
        handle = await site.join("n1")
        gateway = site.controller.gateway
        assert gateway is not None
        host_id = (await site.host("n1"))["id"]
        session = gateway.sessions[host_id]
        real = reports.record_host_alarm
        store_back = asyncio.Event()
        written: list[tuple[str, str]] = []

        async def hung_store(ctx: Any, host: str, action: str, alarm_id: str, reason: str) -> None:
            await store_back.wait()
            await real(ctx, host, action, alarm_id, reason)
            written.append((action, alarm_id))

        monkeypatch.setattr(reports, "record_host_alarm", hung_store)
        agent = handle.agent
        await agent._set_alarm(HOST_DISK_FULL, "the state folder's disk is full")
        await agent._set_alarm(HOST_DISK_FULL, None)
        await asyncio.sleep(4 * 0.25 * 2)  # twice the liveness limit
        assert gateway.sessions.get(host_id) is session, "the host was found silent"
        assert agent.connected.is_set()
        assert written == []
        store_back.set()
        await eventually(lambda: _true(len(written) == 2), 5, "both alarms written")
        assert written == [("raise", HOST_DISK_FULL), ("clear", HOST_DISK_FULL)]
