"""The schema is owned by Alembic: migrations match the models, and upgrades keep data."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from edgecloud.store.database import current_revision, make_engine, migrate, sqlite_url
from edgecloud.store.models import Base


async def test_migrations_produce_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)

    def diff(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []
    await engine.dispose()


async def test_upgrade_from_first_revision_keeps_rows(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine, "0001")
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO images (id, name, disk_format, cmdline, created_at) "
                "VALUES ('i1', 'img', 'qcow2', '', '2026-01-01')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO flavors (id, name, vcpus, memory_mib, disk_gib, created_at) "
                "VALUES ('f1', 'small', 1, 256, 0, '2026-01-01')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO instances (id, name, image_id, flavor_id, desired_state, reboots, status, "
                "created_at, updated_at) VALUES ('v1', 'vnf1', 'i1', 'f1', 'running', 0, 'scheduling', "
                "'2026-01-01', '2026-01-01')"
            )
        )
    await migrate(engine)
    assert await current_revision(engine) == "0019"
    async with engine.connect() as connection:
        rows = (
            await connection.execute(text("SELECT name, meta, guest_check FROM instances"))
        ).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [("vnf1", "{}", None)]
    await engine.dispose()
