"""The simulator's anonymous peers (sim/anonymous.py) against a real controller: they hold
connections on the gateway and the API, the controller's pre-auth timeout (gateway) and header
deadline (API, slowloris) close them, they re-open, and an agent still connects meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit

from edgecloud.gateway.admission import Protection
from edgecloud.sim import anonymous
from tests.integration.harness import eventually, running_site

SHORT = Protection(preauth_timeout=0.5)


async def test_anonymous_peers_are_closed_and_reopen_while_an_agent_connects(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path, protection=SHORT, api_header_timeout=0.5) as site:
        api = urlsplit(site.info["api_url"])
        host, _, port = site.info["gateway"].rpartition(":")
        spec = {
            "connections": 20,
            "gateway": [host, int(port)],
            "api": [api.hostname, api.port],
            "sources": anonymous.sources(2),
            "drip": 0.1,
        }
        counts = anonymous.Counts()
        attack = asyncio.create_task(anonymous.attack(spec, counts))
        try:

            async def closed() -> bool:
                return counts.closed_gateway >= 20 and counts.closed_api >= 20  # each twice

            await eventually(closed, 20, "anonymous connections closed by the controller")
            assert counts.opened >= 40  # re-opened after each close
            assert counts.failed == 0
            assert site.controller.api_deadlines.closed >= 20
            await site.join("node-1")  # enrollment (anonymous too) and the mTLS session
        finally:
            attack.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attack
