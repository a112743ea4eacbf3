"""Two controllers on one PostgreSQL, seen from where users and nodes stand: a console read
through either controller reaches a host connected to the other; the API says which controller
leads; an agent and a client given both addresses follow the one that is up when the other
stops (issue 11, items 1 and 3).

PostgreSQL only (SQLite sites have one controller); skipped like the other PostgreSQL tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgecloud.client import Client, ClientConfig
from edgecloud.controller.relaying import CLAIM_TIMEOUT
from edgecloud.pki import tokens
from tests.integration.harness import Site, eventually, running_site, second_controller
from tests.integration.test_leadership import (
    create_vnf,
    epoch,
    leads,
    share_images,
    wait_leader,
)

FOLLOW_GOAL = 5.0  # seconds: "reconnects to B by itself within a few seconds"


@pytest.fixture
def pg_url(db_url: str | None) -> str:
    if db_url is None:
        pytest.skip("two controllers share a store only on PostgreSQL")
    return db_url


def connected(site: Site, host_id: str) -> bool:
    gateway = site.controller.gateway
    return gateway is not None and host_id in gateway.sessions


async def test_console_of_a_host_connected_to_the_other_controller(
    tmp_path: Path, pg_url: str, record_property: Callable[[str, object], None]
) -> None:
    async with (
        running_site(tmp_path / "a", pg_url) as a,
        second_controller(tmp_path / "b", a, pg_url) as b,
    ):
        await a.catalogue(("lan",))
        share_images(a, b)
        handle = await b.join("n2")  # its agent is connected to b only
        n2 = (await b.host("n2"))["id"]
        assert connected(b, n2) and not connected(a, n2)
        await create_vnf(a, "v1")
        await a.wait_vnf("v1", "running")

        asked = time.monotonic()
        local = await b.api.get("/v1/vnfs/v1/console")
        record_property(
            "console on the session's controller, s", round(time.monotonic() - asked, 3)
        )
        assert local.status_code == 200, local.text
        asked = time.monotonic()
        relayed = await a.api.get("/v1/vnfs/v1/console")
        record_property("console relayed through the store, s", round(time.monotonic() - asked, 3))
        assert relayed.status_code == 200, relayed.text
        assert relayed.json()["host"] == "n2"
        assert "EDGECLOUD-READY" in relayed.json()["output"]
        assert relayed.json()["output"].startswith(local.json()["output"][:200])
        assert a.controller.relay is not None and a.controller.relay.relayed == 1
        assert b.controller.relay is not None and b.controller.relay.served == 1

        # the host's agent stops: connected nowhere, a clear error after the claim timeout
        await handle.stop()
        await eventually(lambda: _false(connected(b, n2)), 10, "n2's session ends")
        asked = time.monotonic()
        gone = await a.api.get("/v1/vnfs/v1/console")
        took = time.monotonic() - asked
        assert gone.status_code == 502, gone.text
        assert "n2 is not connected to any controller" in gone.json()["error"]["message"]
        assert CLAIM_TIMEOUT <= took < CLAIM_TIMEOUT + 2
        # nothing is left behind in the store
        rows = await a.api.get("/v1/vnfs/v1")  # (the API still answers)
        assert rows.status_code == 200


async def _false(value: bool) -> bool:
    return not value


async def test_the_api_says_which_controller_leads_and_which_are_up(
    tmp_path: Path, pg_url: str
) -> None:
    async with (
        running_site(tmp_path / "a", pg_url) as a,
        second_controller(tmp_path / "b", a, pg_url) as b,
    ):
        assert leads(a) and not leads(b)
        response = await b.api.get("/v1/controllers")
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["leader"]["id"] == a.controller.id
        assert found["leader"]["epoch"] == epoch(a)
        assert found["leader"]["api_url"] == a.info["api_url"]
        assert found["leader"]["gateway"] == a.info["gateway"]
        by_id = {c["id"]: c for c in found["controllers"]}
        assert set(by_id) == {a.controller.id, b.controller.id}
        assert all(c["up"] for c in by_id.values())
        assert by_id[a.controller.id]["leads"] and not by_id[b.controller.id]["leads"]
        assert by_id[b.controller.id]["this"] and not by_id[a.controller.id]["this"]

        stopped = time.monotonic()
        await a.api.aclose()
        a.controller.stopping.set()
        await asyncio.wait_for(a.task, 30)
        await wait_leader(b, stopped)
        found = (await b.api.get("/v1/controllers")).json()
        assert found["leader"]["id"] == b.controller.id
        assert found["leader"]["epoch"] == epoch(b)
        assert [c["id"] for c in found["controllers"]] == [b.controller.id]


async def test_an_agent_and_a_client_with_both_addresses_follow_when_one_stops(
    tmp_path: Path, pg_url: str, record_property: Callable[[str, object], None]
) -> None:
    async with (
        running_site(tmp_path / "a", pg_url) as a,
        second_controller(tmp_path / "b", a, pg_url) as b,
    ):
        token = await a.add_host("n1")
        assert tokens.decode(token).addresses == (a.info["gateway"], b.info["gateway"])
        await a.start_agent("n1", token)
        await a.wait_host("n1", "online")
        n1 = (await a.host("n1"))["id"]
        assert connected(a, n1)  # the token's first address: the controller that issued it

        admin = a.api.headers["Authorization"].removeprefix("Bearer ")
        config = ClientConfig(
            url=a.info["api_url"], token=admin, ca_cert=a.info["ca_cert"], urls=(b.info["api_url"],)
        )

        def hosts() -> list[str]:
            with Client(config, timeout=10) as client:
                return [h["name"] for h in client.list_hosts()]

        assert await asyncio.to_thread(hosts) == ["n1"]

        stopped = time.monotonic()
        await a.api.aclose()
        a.controller.stopping.set()
        await asyncio.wait_for(a.task, 30)

        async def on_b() -> bool:
            return connected(b, n1)

        await eventually(on_b, FOLLOW_GOAL, "n1's agent connected to b")
        took = time.monotonic() - stopped
        record_property("agent on the other controller after the first stopped, s", round(took, 3))
        assert await asyncio.to_thread(hosts) == ["n1"]  # a refuses: the client asks b
        await wait_leader(b, stopped)
        assert (await b.host("n1"))["availability"] == "online"


async def test_an_agent_enrolled_before_the_second_controller_learns_it_and_follows(
    tmp_path: Path, pg_url: str
) -> None:
    async with running_site(tmp_path / "a", pg_url) as a:
        token = await a.add_host("n1")
        assert tokens.decode(token).others == ()  # only a runs
        handle = await a.start_agent("n1", token)
        await a.wait_host("n1", "online")
        n1 = (await a.host("n1"))["id"]
        async with second_controller(tmp_path / "b", a, pg_url) as b:
            # a's gateway tells its connected agent about b (a `controllers` message)
            record = handle.state_dir / "agent.json"

            async def learned() -> bool:
                return b.info["gateway"] in json.loads(record.read_text()).get("controllers", [])

            await eventually(learned, 10, "the agent learns b's address")
            stopped = time.monotonic()
            await a.api.aclose()
            a.controller.stopping.set()
            await asyncio.wait_for(a.task, 30)

            async def on_b() -> bool:
                return connected(b, n1)

            await eventually(on_b, FOLLOW_GOAL, "n1's agent connected to b")
            assert time.monotonic() - stopped < FOLLOW_GOAL


async def test_a_single_controller_says_it_leads(tmp_path: Path, db_url: str | None) -> None:
    """SQLite (always the leader, epoch 1) and PostgreSQL with one controller alike."""
    async with running_site(tmp_path, db_url) as site:
        response = await site.api.get("/v1/controllers")
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["leader"]["id"] == site.controller.id
        assert found["leader"]["epoch"] >= 1
        assert found["leader"]["api_url"] == site.info["api_url"]
        assert [(c["id"], c["up"], c["leads"], c["this"]) for c in found["controllers"]] == [
            (site.controller.id, True, True, True)
        ]
        token = await site.add_host("n1")
        assert tokens.decode(token).others == ()  # one controller: the token as before
