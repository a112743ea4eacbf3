"""A due fence is done once: the periodic check and the pre-hello check may both find it due
at the same moment (an agent that reconnects just as its silence passes ``fence_after``); the
second, waiting for the apply lock, finds it done and stops nothing again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.harness import running_site


async def test_two_callers_of_a_due_fence_fence_once(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        agent = (await site.join("node1")).agent
        fence = agent.fence
        fence.configure(0.5)
        fence._contact -= 10.0  # ten seconds of silence: due
        assert fence.due()
        calls: list[tuple[str, ...]] = []
        real = agent.applier.fence

        async def counting(ids: tuple[str, ...]) -> None:
            calls.append(ids)
            await asyncio.sleep(0.05)  # the other caller reaches the lock meanwhile
            await real(ids)

        agent.applier.fence = counting  # type: ignore[method-assign]
        await asyncio.gather(agent._fence_if_due(), agent._fence_if_due())
        assert len(calls) == 1 and fence.active
