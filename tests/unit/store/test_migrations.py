"""The schema is owned by Alembic: migrations match the models, and upgrades keep data."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from edgecloud.store.database import current_revision, make_engine, migrate, sqlite_url
from edgecloud.store.models import Base

VERSIONS = Path(__file__).parents[3] / "src/edgecloud/store/migrations/versions"
HEAD = max(p.name[:4] for p in VERSIONS.glob("0*.py"))  # the newest revision


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
    assert await current_revision(engine) == HEAD
    async with engine.connect() as connection:
        rows = (
            await connection.execute(text("SELECT name, meta, guest_check FROM instances"))
        ).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [("vnf1", "{}", None)]
    await engine.dispose()


# the last revision of release 0.1.0 (the previous release, tests/releases.py): from here on
# every migration must keep that release working on the database (expand / contract)
PREVIOUS_RELEASE_HEAD = "0019"
CONTRACTING = ("drop_column", "drop_table", "alter_column", "drop_index", "drop_constraint")


def test_migrations_since_the_previous_release_only_expand() -> None:
    import ast

    newer = sorted(p for p in VERSIONS.glob("0*.py") if p.name[:4] > PREVIOUS_RELEASE_HEAD)
    assert newer, "no migration after the previous release's head"
    for path in newer:
        tree = ast.parse(path.read_text())
        upgrade = next(
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"
        )
        calls = {
            n.func.attr
            for n in ast.walk(upgrade)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        assert not calls & set(CONTRACTING), f"{path.name} contracts: {calls & set(CONTRACTING)}"
        added = [  # a column added to a table old code writes must not need a value from it
            column  # (a new table's columns may: old code never writes that table)
            for call in ast.walk(upgrade)
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_column"
            for column in call.args
        ]
        for node in (n for column in added for n in ast.walk(column)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Column":
                nullable = {k.arg: k.value for k in node.keywords}
                default = "server_default" in nullable
                ok = default or (
                    isinstance(nullable.get("nullable"), ast.Constant)
                    and nullable["nullable"].value is True
                )
                assert ok, f"{path.name}: a column neither nullable nor defaulted"


async def test_a_database_a_newer_release_migrated_is_used_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    async with engine.begin() as connection:  # as if release N+1 had added revision 0999
        await connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    await migrate(engine)  # does not raise (alembic alone: "Can't locate revision")
    assert await current_revision(engine) == "0999"
    assert "a newer release wrote" in caplog.text
    await engine.dispose()
