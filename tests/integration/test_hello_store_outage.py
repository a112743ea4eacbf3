"""A hello that meets an unreachable store (a replicated store failing over: issue 11 (b),
where a node's agent whose session was on the dead node's controller dials the other one)
is answered ``retry``, not closed without a word: the agent keeps dialling (three silent
closes in a row are how it learns its certificate was refused, and it stops) and is
connected again as soon as the store answers; the retries are not contact for its fence
(no session was opened, so no leader counts the node present because of them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from edgecloud.agent.connection import CLOSES_BEFORE_REFUSED
from edgecloud.services import availability
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
