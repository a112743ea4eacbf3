"""store/vnf_migrations.py ``hosts_by_instance`` (one query; where chain steering sends an
instance's traffic): an instance on a host is there; while a migration of it is prepared or
moving, on its destination too; a queued, failed or done migration adds nothing; an
instance without a host, or unknown, is nowhere. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from edgecloud.store import vnf_migrations
from edgecloud.store.database import make_engine, migrate, session_factory, transaction
from edgecloud.store.models import Flavor, Host, Image, Instance, Migration


@pytest.fixture
async def store(tmp_path: Any, db_url: str | None) -> AsyncIterator[Any]:
    engine = make_engine(db_url or f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    yield session_factory(engine)
    await engine.dispose()


async def test_where_instances_are(store: Any) -> None:
    async with transaction(store) as s:
        h1, h2, h3 = (
            Host(name=n, availability="online", vcpus=8, memory_mib=8192, disk_gib=100)
            for n in ("h1", "h2", "h3")
        )
        image, flavor = (
            Image(name="img", sha256="0" * 64, size=1),
            Flavor(name="s", vcpus=1, memory_mib=256),
        )
        s.add_all([h1, h2, h3, image, flavor])
        await s.flush()
        vnfs = {
            n: Instance(name=n, image_id=image.id, flavor_id=flavor.id, host_id=h1.id)
            for n in ("still", "preparing", "migrating", "queued", "failed", "homeless")
        }
        vnfs["homeless"].host_id = None
        s.add_all(vnfs.values())
        await s.flush()
        for name in ("preparing", "migrating", "queued", "failed"):
            s.add(
                Migration(instance_id=vnfs[name].id, instance_name=name, source_host_id=h1.id,
                          destination_host_id=h2.id if name != "failed" else h3.id, status=name)
            )  # fmt: skip
        ids = {n: v.id for n, v in vnfs.items()}
        hosts = (h1.id, h2.id)
    async with transaction(store) as s:
        located = await vnf_migrations.hosts_by_instance(s, [*ids.values(), "unknown"])
        one = await vnf_migrations.instance_host_ids(s, vnfs["migrating"])
    assert located == {
        ids["still"]: (hosts[0],),
        ids["preparing"]: hosts,
        ids["migrating"]: hosts,
        ids["queued"]: (hosts[0],),
        ids["failed"]: (hosts[0],),
        ids["homeless"]: (),
        "unknown": (),
    }
    assert one == hosts
