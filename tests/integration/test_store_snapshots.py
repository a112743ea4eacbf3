"""``store.database.reading``: a read of several statements sees one moment of the store, on
SQLite and on PostgreSQL, while ``transaction`` writes go on beside it.

Without it an API read of a VNF could take the instance row from before an observed report
and its vNIC rows from after it (seen as a boot without a boot id whose guest names are set).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from edgecloud.store import database
from edgecloud.store.models import Flavor


async def test_a_reading_sees_one_snapshot_while_a_write_commits(
    tmp_path: Path, db_url: str | None
) -> None:
    engine = database.make_engine(db_url or database.sqlite_url(tmp_path))
    try:
        await database.migrate(engine)
        sessions = database.session_factory(engine)
        async with database.transaction(sessions) as s:
            s.add(Flavor(name="snap", vcpus=1, memory_mib=64, disk_gib=1))

        async with database.reading(sessions) as r:
            before = await r.scalar(select(Flavor.vcpus).where(Flavor.name == "snap"))
            async with database.transaction(sessions) as w:  # commits while the read is open
                flavor = await w.scalar(select(Flavor).where(Flavor.name == "snap"))
                assert flavor is not None
                flavor.vcpus = 4
            during = await r.scalar(select(Flavor.vcpus).where(Flavor.name == "snap"))

        async with database.reading(sessions) as r:
            after = await r.scalar(select(Flavor.vcpus).where(Flavor.name == "snap"))
        assert (before, during, after) == (1, 1, 4)
    finally:
        await engine.dispose()
