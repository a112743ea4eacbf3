"""Site-wide locks: work that no two transactions may do at once, in any controller process.

Placement reads the free capacity of the hosts and then takes some of it; two placements at
once could both take the last of it. In one process an asyncio lock orders them; with several
controllers on one PostgreSQL (docs/architecture.md, Leadership) the scheduler runs in the
leader but a migration's destination is chosen in whichever process took the API request. So
every placing transaction first takes ``PLACEMENT``, a transaction-scoped PostgreSQL advisory
lock (``pg_advisory_xact_lock``, released at commit or rollback). On SQLite (one process) it is
a no-op. Callers: services/scheduling.py ``schedule``, services/migrations.py
``start_migration``.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PLACEMENT = 0x6564_6765_636C_6F10  # advisory lock keys (bigint); store/leadership.py has others


async def hold(session: AsyncSession, key: int) -> None:
    """Take lock ``key`` until the session's transaction ends (waits for another holder)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
