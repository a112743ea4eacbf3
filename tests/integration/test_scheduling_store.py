"""What placement reads from the store: usage and anti-affinity groups per host, the cluster
snapshot, and ``schedule`` on top of them, checked row by row against a small known store and
against a straightforward recomputation from ORM objects on a larger random one.

Runs against SQLite and, when reachable, PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.scheduler.snapshots import ClusterSnapshot, HostView
from edgecloud.services import scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store import instances
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url
from edgecloud.store.models import Flavor, Host, Image, Instance

SMALL = (1, 512, 5)
BIG = (4, 4096, 20)


@pytest.fixture
async def sessions(
    tmp_path: Path, db_url: str | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    await migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def add_host(s: AsyncSession, name: str, state: str = "enabled", online: bool = True) -> Host:
    host = Host(
        name=name,
        state=state,
        availability="online" if online else "offline",
        vcpus=4,
        memory_mib=8192,
        disk_gib=100,
    )
    s.add(host)
    return host


def add_instance(
    s: AsyncSession,
    name: str,
    flavor: Flavor,
    image: Image,
    host: Host | None,
    group: str | None = None,
    desired: str = "running",
    status: str = "running",
) -> Instance:
    instance = Instance(
        name=name,
        flavor=flavor,
        image=image,
        host=host,
        anti_affinity_group=group,
        desired_state=desired,
        status=status,
    )
    s.add(instance)
    return instance


@pytest.fixture
async def known(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Hosts a, b (placed instances), c (none), d (disabled, one instance); returns host ids.

    a: small running, big stopped, small marked deleted (still on the host: counted),
       small in g1 with a fault (counted).
    b: small in g1, small in g2, big in g2 whose row was deleted (gone: not counted).
    d: small in g3. Unplaced: big in g1 and small in g2 (neither counted anywhere).
    """
    async with sessions() as s, s.begin():
        small = Flavor(name="small", vcpus=SMALL[0], memory_mib=SMALL[1], disk_gib=SMALL[2])
        big = Flavor(name="big", vcpus=BIG[0], memory_mib=BIG[1], disk_gib=BIG[2])
        image = Image(name="img")
        s.add_all([small, big, image])
        a, b, c = add_host(s, "a"), add_host(s, "b"), add_host(s, "c")
        d = add_host(s, "d", state="disabled")
        add_instance(s, "a1", small, image, a)
        add_instance(s, "a2", big, image, a, desired="stopped", status="stopped")
        add_instance(s, "a3", small, image, a, desired="deleted", status="deleting")
        add_instance(s, "a4", small, image, a, group="g1", status="error")
        add_instance(s, "b1", small, image, b, group="g1")
        add_instance(s, "b2", small, image, b, group="g2")
        gone = add_instance(s, "b3", big, image, b, group="g2")
        add_instance(s, "d1", small, image, d, group="g3")
        add_instance(s, "w1", big, image, None, group="g1", status="scheduling")
        add_instance(s, "w2", small, image, None, group="g2", status="scheduling")
        await s.flush()
        await s.delete(gone)
        return {"a": a.id, "b": b.id, "c": c.id, "d": d.id}


async def test_usage_counts_every_placed_instance_until_its_row_is_gone(
    sessions: async_sessionmaker[AsyncSession], known: dict[str, str]
) -> None:
    async with sessions() as s:
        usage = await instances.usage_by_host(s)
    three_small_one_big = tuple(3 * sm + bg for sm, bg in zip(SMALL, BIG, strict=True))
    assert usage == {
        known["a"]: three_small_one_big,
        known["b"]: tuple(2 * sm for sm in SMALL),
        known["d"]: SMALL,
    }


async def test_groups_all_or_only_the_named_ones(
    sessions: async_sessionmaker[AsyncSession], known: dict[str, str]
) -> None:
    a, b, d = known["a"], known["b"], known["d"]
    async with sessions() as s:
        assert await instances.groups_by_host(s) == {
            a: frozenset({"g1"}),
            b: frozenset({"g1", "g2"}),
            d: frozenset({"g3"}),
        }
        assert await instances.groups_by_host(s, ["g2"]) == {b: frozenset({"g2"})}
        assert await instances.groups_by_host(s, ["g1", "g2", "g1"]) == {
            a: frozenset({"g1"}),
            b: frozenset({"g1", "g2"}),
        }
        assert await instances.groups_by_host(s, ["nobody"]) == {}
        assert await instances.groups_by_host(s, []) == {}


async def test_snapshot_has_every_host_with_its_usage_and_the_named_groups(
    sessions: async_sessionmaker[AsyncSession], known: dict[str, str]
) -> None:
    def view(name: str, used: tuple[int, ...], groups: set[str], **kw: object) -> HostView:
        fields: dict[str, object] = {"state": "enabled", "online": True, **kw}
        return HostView(
            name=name,
            vcpus=4,
            memory_mib=8192,
            disk_gib=100,
            used_vcpus=used[0],
            used_memory_mib=used[1],
            used_disk_gib=used[2],
            groups=frozenset(groups),
            **fields,  # type: ignore[arg-type]
        )

    a_used = tuple(3 * sm + bg for sm, bg in zip(SMALL, BIG, strict=True))
    b_used = tuple(2 * sm for sm in SMALL)
    async with sessions() as s:
        named = await scheduling.cluster_snapshot(s, ["g1"])
        every = await scheduling.cluster_snapshot(s)
        none = await scheduling.cluster_snapshot(s, [])
    assert named == ClusterSnapshot(
        hosts=(
            view("a", a_used, {"g1"}),
            view("b", b_used, {"g1"}),
            view("c", (0, 0, 0), set()),
            view("d", SMALL, set(), state="disabled"),
        )
    )
    assert [h.groups for h in every.hosts] == [{"g1"}, {"g1", "g2"}, set(), {"g3"}]
    assert [h.groups for h in none.hosts] == [set()] * 4
    assert [h.used_memory_mib for h in none.hosts] == [h.used_memory_mib for h in named.hosts]


async def test_schedule_honours_the_group_and_capacity_it_reads(
    sessions: async_sessionmaker[AsyncSession], known: dict[str, str]
) -> None:
    ctx = ServiceContext(sessions=sessions)
    async with sessions() as s:
        waiting = {
            i.name: i.id
            for i in await s.scalars(select(Instance).where(Instance.host_id.is_(None)))
        }
    # w1 (big, g1): a and b hold g1, d is disabled: only c is left.
    assert await scheduling.schedule(ctx, waiting["w1"]) == known["c"]
    # w2 (small, g2): b holds g2; c now has 4096 MiB used, a 5632: c has the most free RAM.
    assert await scheduling.schedule(ctx, waiting["w2"]) == known["c"]
    async with sessions() as s, s.begin():
        flavor = (await s.scalars(select(Flavor).where(Flavor.name == "small"))).one()
        image = (await s.scalars(select(Image))).one()
        extra = add_instance(s, "w3", flavor, image, None, group="g1", status="scheduling")
    # w3 (g1): a, b and now c hold g1: no host.
    assert await scheduling.schedule(ctx, extra.id) is None
    async with sessions() as s:
        refused = await s.get(Instance, extra.id)
        assert refused is not None and refused.host_id is None
        assert refused.fault is not None and "anti-affinity filter left 0" in refused.fault


async def test_snapshot_matches_a_recount_from_orm_objects(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(7)
    async with sessions() as s, s.begin():
        image = Image(name="img")
        flavors = [
            Flavor(name=f"f{i}", vcpus=i + 1, memory_mib=256 * (i + 1), disk_gib=i)
            for i in range(4)
        ]
        hosts = [add_host(s, f"h{i:02d}", online=i % 5 != 0) for i in range(12)]
        s.add_all([image, *flavors])
        doomed = []
        for i in range(150):
            host = rng.choice([*hosts, None])
            group = rng.choice([None, "g1", "g2", "g3", "g4"])
            desired = rng.choice(["running", "stopped", "deleted"])
            instance = add_instance(
                s, f"v{i:03d}", rng.choice(flavors), image, host, group, desired
            )
            if i % 7 == 0:
                doomed.append(instance)
        await s.flush()
        for instance in doomed:
            await s.delete(instance)
    async with sessions() as s:
        expected: dict[str, list[object]] = {}
        for host in await s.scalars(select(Host)):
            expected[host.name] = [0, 0, 0, set()]
        for instance in (await s.scalars(select(Instance))).unique():
            if instance.host is None:
                continue
            row = expected[instance.host.name]
            row[0] += instance.flavor.vcpus  # type: ignore[operator]
            row[1] += instance.flavor.memory_mib  # type: ignore[operator]
            row[2] += instance.flavor.disk_gib  # type: ignore[operator]
            if instance.anti_affinity_group in ("g2", "g3"):
                row[3].add(instance.anti_affinity_group)  # type: ignore[attr-defined]
        snapshot = await scheduling.cluster_snapshot(s, ["g2", "g3"])
    assert [h.name for h in snapshot.hosts] == sorted(expected)
    got = {
        h.name: [h.used_vcpus, h.used_memory_mib, h.used_disk_gib, set(h.groups)]
        for h in snapshot.hosts
    }
    assert got == expected
