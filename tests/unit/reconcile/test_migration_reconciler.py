"""The migration state machine (reconcile/migrations.py) on a real store with a scripted
source agent: done moves the instance in one step, a failed call leaves it on its source with
an event, a destination that never prepares fails it, and a migration resumed after a
restart is finished when the destination reports the guest running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edgecloud.errors import Conflict, DriverError
from edgecloud.protocol.schemas import InstanceReport, MigrationReport
from edgecloud.reconcile.migrations import MigrationReconciler
from edgecloud.services import chain_paths, migrations
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import Event, Flavor, Host, Image, Instance

RUNNING: list[MigrationReconciler] = []  # closed when the test's store goes


class _Source:
    """The source agent's answers to ``migrate`` (a result, or an exception to raise)."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, []  # type: list[dict[str, Any]]

    async def call(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        assert op == "migrate"
        self.calls.append(args)
        if isinstance(self.answer, Exception):
            raise self.answer
        if isinstance(self.answer, asyncio.Event):  # an answer that never comes
            await self.answer.wait()
        return self.answer


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ServiceContext]:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    context = ServiceContext(sessions=session_factory(engine))
    async with transaction(context.sessions) as s:
        hosts = [
            Host(name=n, availability="online", vcpus=8, memory_mib=8192, disk_gib=100,
                 address=f"10.0.0.{i}")
            for i, n in enumerate(("h1", "h2"), 1)
        ]  # fmt: skip
        s.add_all(hosts)
        image, flavor = (
            Image(name="img", sha256="0" * 64, size=1),
            Flavor(name="small", vcpus=1, memory_mib=256),
        )
        s.add_all([image, flavor])
        await s.flush()
        s.add(
            Instance(name="v1", image_id=image.id, flavor_id=flavor.id, host_id=hosts[0].id,
                     status="running", power_state="running")
        )  # fmt: skip
    yield context
    for reconciler in RUNNING:
        await reconciler.close()
    RUNNING.clear()
    await engine.dispose()


async def _where(ctx: ServiceContext) -> tuple[str, dict[str, int]]:
    async with transaction(ctx.sessions) as s:
        instance = (await s.scalars(select(Instance))).unique().one()
        hosts = {h.name: h.desired_version for h in await s.scalars(select(Host))}
        assert instance.host is not None
        return instance.host.name, hosts


async def _report_prepared(ctx: ServiceContext, migration_id: str, power: str = "absent") -> None:
    """What the destination's agent reports once it has prepared the instance."""
    m = await migrations.get_migration(ctx, migration_id)
    while (await migrations.get_migration(ctx, migration_id)).status == "queued":
        await asyncio.sleep(0.01)
    entry = InstanceReport(
        power=power, migration=MigrationReport(id=m.id, prepared=True, placement={"x": 1})
    )
    async with transaction(ctx.sessions) as s:
        await migrations.record_progress(s, m.destination_host_id, {m.instance_id: entry})
        for host in await s.scalars(select(Host)):  # both agents acked their snapshots
            host.applied_version = host.desired_version


async def test_the_move_waits_until_every_touched_host_applied_the_marks(
    ctx: ServiceContext,
) -> None:
    m, source = await _run(ctx, {"downtime_ms": 5}, prepare_timeout=5)
    while (await migrations.get_migration(ctx, m.id)).status == "queued":
        await asyncio.sleep(0.01)
    entry = InstanceReport(migration=MigrationReport(id=m.id, prepared=True, placement={}))
    async with transaction(ctx.sessions) as s:
        await migrations.record_progress(s, m.destination_host_id, {m.instance_id: entry})
    await asyncio.sleep(0.3)
    assert (await migrations.get_migration(ctx, m.id)).status == "preparing"
    assert not source.calls, "moved before the hosts applied the migration's marks"
    await _report_prepared(ctx, m.id)
    assert (await migrations.wait_for_migration(ctx, m.id, timeout=5)).status == "done"


async def _run(ctx: ServiceContext, answer: Any, **timeouts: float) -> tuple[Any, _Source]:
    source = _Source(answer)
    ctx.nodes = source
    changed: list[str] = []
    reconciler = MigrationReconciler(ctx, changed.append, **timeouts)
    RUNNING.append(reconciler)
    m = await migrations.start_migration(ctx, "v1")
    reconciler.enqueue(m.id)
    return m, source


async def test_done_moves_the_instance_and_records_the_figures(ctx: ServiceContext) -> None:
    _host, before = await _where(ctx)
    stats = {"total_ms": 900.0, "downtime_ms": 40.0, "bytes": 1}
    m, source = await _run(ctx, stats)
    assert m.destination_host.name == "h2"  # chosen by the scheduler
    with pytest.raises(Conflict, match="being migrated already"):
        await migrations.start_migration(ctx, "v1", "h2")
    await _report_prepared(ctx, m.id)
    done = await migrations.wait_for_migration(ctx, m.id, timeout=5)
    assert done.status == "done" and done.stats == stats
    assert source.calls[0]["placement"] == {"x": 1} and source.calls[0]["cold"] is False
    host, after = await _where(ctx)
    assert host == "h2"
    assert all(after[h] > before[h] for h in ("h1", "h2"))


async def test_failed_call_leaves_it_on_its_source(ctx: ServiceContext) -> None:
    m, _source = await _run(ctx, DriverError("the destination went away"), settle=0.2)
    await _report_prepared(ctx, m.id)
    failed = await migrations.wait_for_migration(ctx, m.id, timeout=5)
    assert failed.status == "failed"
    assert failed.error == "host h1 could not move it: the destination went away"
    assert (await _where(ctx))[0] == "h1"
    async with transaction(ctx.sessions) as s:
        events = [e.message for e in await s.scalars(select(Event))]
    assert any("failed, the VNF stays on h1: host h1 could not" in e for e in events)


async def test_a_destination_that_never_prepares_fails_it(ctx: ServiceContext) -> None:
    m, source = await _run(ctx, {}, prepare_timeout=0.3)
    failed = await migrations.wait_for_migration(ctx, m.id, timeout=5)
    assert "host h2 did not report it prepared within 0.3 s" in str(failed.error)
    assert source.calls == [] and (await _where(ctx))[0] == "h1"


async def test_lost_answer_with_the_guest_on_the_destination_is_done(
    ctx: ServiceContext,
) -> None:
    m, _source = await _run(ctx, DriverError("host h1 did not answer"), settle=2.0)
    await _report_prepared(ctx, m.id, power="running")
    done = await migrations.wait_for_migration(ctx, m.id, timeout=5)
    assert done.status == "done" and "answer was lost" in done.stats["note"]
    assert (await _where(ctx))[0] == "h2"


async def test_the_chain_planner_sees_both_hosts_while_it_moves(ctx: ServiceContext) -> None:
    m, _source = await _run(ctx, {}, prepare_timeout=5)
    while (await migrations.get_migration(ctx, m.id)).status == "queued":
        await asyncio.sleep(0.01)
    async with transaction(ctx.sessions) as s:
        instance = (await s.scalars(select(Instance))).unique().one()
        assert await _host_names(
            s, (await chain_paths.instance_hosts(s, [instance.id]))[instance.id]
        ) == ["h1", "h2"]
    await _report_prepared(ctx, m.id)
    await migrations.wait_for_migration(ctx, m.id, timeout=5)
    async with transaction(ctx.sessions) as s:
        instance = (await s.scalars(select(Instance))).unique().one()
        assert await _host_names(
            s, (await chain_paths.instance_hosts(s, [instance.id]))[instance.id]
        ) == ["h2"]


async def test_a_restarted_controller_resumes_where_it_was(ctx: ServiceContext) -> None:
    """Cut off while the source was moving the guest: the new reconciler asks again; the
    source no longer has it, the destination runs it, so the migration is done."""
    first = MigrationReconciler(ctx, lambda _h: None, prepare_timeout=5)
    RUNNING.append(first)
    ctx.nodes = _Source(asyncio.Event())  # never answered: the controller "dies" meanwhile
    m = await migrations.start_migration(ctx, "v1")
    first.enqueue(m.id)
    await _report_prepared(ctx, m.id)
    while (await migrations.get_migration(ctx, m.id)).status != "migrating":
        await asyncio.sleep(0.01)
    await first.close()
    await _report_prepared(ctx, m.id, power="running")  # the guest arrived meanwhile

    source = _Source(DriverError("no domain named 'ec-v1'"))
    ctx.nodes = source
    second = MigrationReconciler(ctx, lambda _h: None, settle=2.0)
    RUNNING.append(second)
    await second.resume_all()
    done = await migrations.wait_for_migration(ctx, m.id, timeout=5)
    assert done.status == "done" and source.calls[0]["migration_id"] == m.id
    assert (await _where(ctx))[0] == "h2"


async def _host_names(s: Any, ids: tuple[str, ...]) -> list[str]:
    return [(await s.get(Host, host_id)).name for host_id in ids]
