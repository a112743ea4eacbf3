"""gateway/steering.py: a chain's change goes as committed (``steer_chain``, no read) to an
agent that said ``chain_steers``; the host's whole table, read at its current desired version,
goes as ``steer`` to one that said only ``steers`` (and for a notice without a change); nothing
to one that said neither, nor when the snapshot of that version went out already; the host's
sync waits for a push in flight (so the push goes first on the wire); a lost connection only
costs the push."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgecloud.gateway.steering import Steering
from edgecloud.protocol import messages, steering
from edgecloud.services.context import ChainSteer, ServiceContext
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import Host


class _Session:
    """The gateway's end of an agent's channel, as far as a push uses it."""

    def __init__(
        self, host_id: str, steers: bool = True, sent_version: int = 0, chain_steers: bool = True
    ) -> None:
        self.host_id, self.host_name = host_id, "n1"
        self.steers, self.sent_version = steers, sent_version
        self.chain_steers = chain_steers
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.broken = False
        self.sending = asyncio.Event()  # a send began

    async def send(self, message: dict[str, Any]) -> None:
        self.sending.set()
        await self.release.wait()
        if self.broken:
            raise ConnectionResetError("gone")
        self.sent.append(message)


@pytest.fixture
async def site(tmp_path: Path) -> Any:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    ctx = ServiceContext(sessions=session_factory(engine))
    async with transaction(ctx.sessions) as s:
        host = Host(name="n1", availability="online", vcpus=8, memory_mib=8192, disk_gib=100)
        s.add(host)
        await s.flush()
        host.desired_version = 4
        host_id = host.id
    pushes = Steering(ctx)
    yield pushes, host_id
    await pushes.close()
    await engine.dispose()


async def test_the_steering_goes_at_the_hosts_desired_version(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id, sent_version=3)
    task = pushes.push(session)  # type: ignore[arg-type]
    assert task is not None
    await task
    assert len(session.sent) == 1 and pushes.sent == 1
    assert messages.check(session.sent[0], messages.CONTROLLER_TYPES) == "steer"
    assert steering.read(session.sent[0]) == (4, {})  # no chain on it: an empty table


async def test_a_chain_change_goes_as_committed_without_a_read(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id, sent_version=4)
    change = ChainSteer(6, {"cust0": "net0"}, {"cust0": ["vlan:3001", "net0"]})
    task = pushes.push(session, change)  # type: ignore[arg-type]
    assert task is not None
    await task
    assert [messages.check(m, messages.CONTROLLER_TYPES) for m in session.sent] == ["steer_chain"]
    assert steering.read_chain(session.sent[0]) == (6, change.before, change.after)
    older = pushes.push(session, ChainSteer(4, {}, {"cust0": "net0"}))  # type: ignore[arg-type]
    assert older is not None
    await older  # its snapshot (version 4) went out already: nothing
    assert len(session.sent) == 1


async def test_an_agent_that_takes_only_whole_tables_gets_the_read_table(site: Any) -> None:
    """An N-1 agent (hello with ``steers``, without ``chain_steers``): the change is not
    sent as such; the host's table is read after the commit and sent whole."""
    pushes, host_id = site
    session = _Session(host_id, sent_version=3, chain_steers=False)
    task = pushes.push(session, ChainSteer(4, {}, {"cust0": "net0"}))  # type: ignore[arg-type]
    assert task is not None
    await task
    assert [messages.check(m, messages.CONTROLLER_TYPES) for m in session.sent] == ["steer"]
    assert steering.read(session.sent[0]) == (4, {})  # the store's table: no chain there


async def test_nothing_to_an_agent_that_did_not_say_steers(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id, steers=False)
    assert pushes.push(session) is None  # type: ignore[arg-type]
    await pushes.pending(host_id)
    assert session.sent == []


async def test_nothing_when_the_snapshot_of_that_version_went_out(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id, sent_version=4)
    task = pushes.push(session)  # type: ignore[arg-type]
    assert task is not None
    await task
    assert session.sent == [] and pushes.sent == 0


async def test_the_sync_waits_for_the_push_in_flight(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id)
    session.release.clear()  # the push is stuck sending
    pushes.push(session)  # type: ignore[arg-type]
    await asyncio.wait_for(session.sending.wait(), 5)
    waiting = asyncio.create_task(pushes.pending(host_id))
    await asyncio.sleep(0)  # a turn of the loop: it would be done by now if it did not wait
    assert not waiting.done()
    session.release.set()
    await asyncio.wait_for(waiting, 5)
    assert len(session.sent) == 1 and host_id not in pushes.pushes


async def test_a_lost_connection_costs_only_the_push(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id)
    session.broken = True
    task = pushes.push(session)  # type: ignore[arg-type]
    assert task is not None
    await task  # no exception: the snapshot follows on the next connection
    assert session.sent == [] and pushes.sent == 0


async def test_a_cancelled_sync_is_not_held_by_the_push(site: Any) -> None:
    pushes, host_id = site
    session = _Session(host_id)
    session.release.clear()  # the push is stuck sending
    pushes.push(session)  # type: ignore[arg-type]
    await asyncio.wait_for(session.sending.wait(), 5)
    waiting = asyncio.create_task(pushes.pending(host_id))
    await asyncio.sleep(0)  # it is waiting now
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting  # the sync's cancellation is not swallowed
    assert host_id in pushes.pushes  # the push itself goes on
    session.release.set()
    await pushes.pending(host_id)
    assert len(session.sent) == 1
