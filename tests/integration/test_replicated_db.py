"""The site's database survives a node: pg_auto_failover's monitor, a primary and a secondary
(allinone/replicated_db.py) as three PostgreSQL instances on this machine.

1. A controller writes through the API on the primary; the primary node dies (its pg_autoctl
   and PostgreSQL SIGKILLed); the monitor promotes the secondary, and the same controller,
   through the same multi-host connection string, takes API writes again and leads again.
   Every write acknowledged before the kill is still there (synchronous replication).
2. With the monitor (the witness) down as well, the secondary does NOT promote itself, and the
   cluster's health says why; once the monitor is back, it promotes the secondary.

Needs root (the instances run as the postgres user; pg_auto_failover is installed if missing);
each test makes its own cluster (about 12 s) and removes it, also when it fails.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from edgecloud.allinone import replicated_db
from edgecloud.allinone.replicated_db import Cluster
from edgecloud.store.leadership import dsn
from tests.integration.harness import Site, eventually, running_site

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as the postgres user")

# what the monitor needs at most to promote: unhealthy + demote timeout, and slack for a busy box
PROMOTION_WINDOW = (
    replicated_db.NODE_UNHEALTHY_TIMEOUT_MS + replicated_db.PRIMARY_DEMOTE_TIMEOUT_MS
) / 1000 + 10


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster.plan(tmp_path / "site")
    try:
        cluster.create()
        yield cluster
    finally:  # from the layout file alone, as `edgecloud down` after a crash
        replicated_db.teardown(tmp_path / "site")
    assert not cluster.root.exists()


def member(cluster: Cluster, name: str | None) -> replicated_db.Member:
    return next(m for m in cluster.members if m.name == name)


async def create_network(site: Site, name: str, statuses: list[int] | None = None) -> bool:
    response = await site.api.post("/v1/networks", json={"name": name}, timeout=30)
    if statuses is not None:
        statuses.append(response.status_code)
    if response.status_code == 503:
        assert response.json()["error"]["code"] == "store_unavailable"
        assert response.headers["Retry-After"]
    return response.status_code == 201


def leads(site: Site) -> bool:
    leadership = site.controller.leadership
    return leadership is not None and leadership.leading


async def is_standby(url: str) -> bool:
    conn = await asyncpg.connect(dsn(url), timeout=5)
    try:
        return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await conn.close()


@pytest.mark.timeout(120)
async def test_a_controller_writes_again_after_the_primary_dies(
    cluster: Cluster, tmp_path: Path
) -> None:
    old = cluster.primary()
    assert old == "n1", cluster.states()
    async with running_site(tmp_path / "ctl", db_url=cluster.url) as site:
        await eventually(lambda: asyncio.sleep(0, leads(site)), 10, "the controller leads")
        acknowledged = [f"before-{i}" for i in range(5)]
        for name in acknowledged:
            assert await create_network(site, name)

        killed = time.monotonic()
        await asyncio.to_thread(cluster.kill, member(cluster, old))
        statuses: list[int] = []

        async def written() -> bool:
            return await create_network(site, f"after-{len(statuses)}", statuses)

        await eventually(written, 60, "an API write after the primary died")
        writable = time.monotonic() - killed
        new = await asyncio.to_thread(cluster.primary)
        assert new == "n2", await asyncio.to_thread(cluster.states)
        await eventually(lambda: asyncio.sleep(0, leads(site)), 15, "the controller leads again")
        print(f"\nwritable primary {writable:.2f} s after SIGKILL of the primary node")
        assert set(statuses) <= {201, 503}, statuses  # the outage is a 503, never a 500

        listed = {n["name"] for n in (await site.api.get("/v1/networks")).json()}
        assert set(acknowledged) <= listed  # nothing acknowledged was lost
    # the URL lists n1 first; target_session_attrs=read-write skips it while it is not primary
    assert not await is_standby(cluster.url)


@pytest.mark.timeout(120)
async def test_without_the_monitor_the_secondary_does_not_promote_itself(
    cluster: Cluster,
) -> None:
    await asyncio.to_thread(cluster.stop, cluster.monitor)
    await asyncio.to_thread(cluster.kill, member(cluster, "n1"))

    # for longer than the monitor would need to promote, n2 stays a read-only secondary
    deadline = time.monotonic() + PROMOTION_WINDOW
    while time.monotonic() < deadline:
        writable, why = await asyncio.to_thread(cluster.health)
        assert writable is None, why
        await asyncio.sleep(0.5)
    assert "monitor (witness) is unreachable" in why
    assert "n2 stays secondary" in why
    assert "never promotes itself" in why
    n2 = member(cluster, "n2")
    assert await asyncio.to_thread(cluster._in_recovery, n2) is True

    # the monitor is the only thing missing: back, it promotes n2
    await asyncio.to_thread(cluster.start, cluster.monitor)

    async def promoted() -> bool:
        writable, _ = await asyncio.to_thread(cluster.health)
        return writable == "n2"

    await eventually(promoted, PROMOTION_WINDOW + 15, "the monitor promotes n2")
