"""Engine, sessions and schema migrations for the controller's store.

SQLite (a file in the site's state directory) by default, PostgreSQL by URL
(``postgresql+asyncpg://...``). The schema is owned by Alembic (store/migrations); ``migrate``
brings any database to the newest revision and is run at every controller start; on
PostgreSQL under an advisory lock (store/leadership.py ``MIGRATION_LOCK``), so controllers that
start together migrate one after the other and the later ones find nothing to do.

Schema changes are expand / contract (issue 12, docs/architecture.md "Releases, protocol
versions and upgrades"): a release's migrations only add (nullable or defaulted columns,
tables, indexes), so a controller of the release before keeps working on a database a newer
release migrated; what the older release still reads is dropped only by a later release's
contract step. A controller that finds the database at a revision it does not know (migrated
by a newer release) therefore runs on it as it is, and says so, instead of refusing to start
in the middle of a rolling upgrade. Release 0.1.0 predates this and refuses such a database:
going back to it needs the schema downgraded first (``alembic downgrade 0019``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError, EmulatedDBAPIException, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from edgecloud.errors import InvalidInput
from edgecloud.store.leadership import MIGRATION_LOCK
from edgecloud.store.stalls import bound_stalls

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


SQLITE_FILE = "edgecloud.db"
# asyncpg waits 60 s for a connection by default; with a replicated store's host list a
# silent (dead) node must not hold a reconnect that long before the next host is tried
PG_CONNECT_TIMEOUT = 10.0


def sqlite_url(state_dir: Path) -> str:
    """The default store URL: a SQLite file in the site's state directory."""
    return f"sqlite+aiosqlite:///{state_dir / SQLITE_FILE}"


# what a request meets while the store's server is gone or not yet taking connections (a
# replicated store's failover, allinone/replicated_db.py): raised by asyncpg at connect time,
# not wrapped by SQLAlchemy, or wrapped as a lost connection
UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    DBAPIError,
    EmulatedDBAPIException,  # asyncpg's error as SQLAlchemy's adapter raises it at connect
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, or in recovery
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # no node takes writes (yet)
)


def unreachable(exc: BaseException | None) -> bool:
    """The store's server cannot be reached (as opposed to a bad statement); looks through
    the wrappers (SQLAlchemy's adapter wraps asyncpg's own error)."""
    if exc is None:
        return False
    if isinstance(exc, InterfaceError | OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    wrappers = DBAPIError | EmulatedDBAPIException
    if isinstance(exc, UNREACHABLE) and not isinstance(exc, wrappers):
        return True
    return unreachable(exc.__cause__ or exc.__context__)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """An async engine for the URL; SQLite gets WAL and foreign keys."""
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise InvalidInput(
            f"unsupported database URL {url!r}: use sqlite+aiosqlite:///PATH "
            "or postgresql+asyncpg://USER:PASS@HOST/DB",
            field="db",
        )
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=5, max_overflow=10)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    # pre-ping: a pooled connection to a primary that died (or was demoted by a failover) is
    # dropped and replaced on checkout; a multi-host URL with target_session_attrs=read-write
    # (allinone/replicated_db.py) then reaches whichever node is primary now
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"timeout": PG_CONNECT_TIMEOUT},
    )
    event.listen(
        engine.sync_engine, "connect", lambda conn, _record: bound_stalls(conn.driver_connection)
    )
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep objects readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection, migrations: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    return config


async def migrate(
    engine: AsyncEngine, revision: str = "head", migrations: Path = MIGRATIONS
) -> None:
    """Upgrade the schema to ``revision`` (idempotent); ``migrations``: another store's
    Alembic history (central/migrations)."""

    def upgrade(connection: Connection) -> None:
        config = _alembic_config(connection, migrations)
        at = MigrationContext.configure(connection).get_current_revision()
        if at is not None and not _known(config, at):
            log.warning(
                "the database is at schema revision %s, which a newer release wrote; this "
                "release (schema %s) runs on it unchanged (expand / contract: "
                "store/database.py)", at, ScriptDirectory.from_config(config).get_current_head(),
            )  # fmt: skip
            return
        command.upgrade(config, revision)

    async with engine.connect() as connection:
        # SQLite rebuilds a table to alter it (batch mode): with foreign keys enforced, the
        # rebuild of a referenced table fails. Off for the migration (it cannot change inside
        # a transaction), checked after it, and on again before the connection goes back.
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        else:  # held until this transaction ends: one migrating controller at a time
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        try:
            await connection.run_sync(upgrade)
            if sqlite:
                broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left broken references: {broken[:5]}")
            await connection.commit()
        finally:
            if sqlite:
                await connection.rollback()
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


def _known(config: Config, revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (None if never migrated)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def reading(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A read of several statements that sees one snapshot of the store (an instance and its
    vNICs as one report left them, not the instance before it and the vNICs after).

    SQLite's Python driver opens a transaction only before a write, so each SELECT of a plain
    session saw its own moment; here an explicit deferred BEGIN holds one WAL snapshot until
    the end (readers never wait for the writer). PostgreSQL's default (read committed) takes a
    snapshot per statement too: this read is REPEATABLE READ.
    """
    sqlite = sessions.kw["bind"].dialect.name == "sqlite"
    options = {} if sqlite else {"isolation_level": "REPEATABLE READ"}
    async with sessions(execution_options=options) as session, session.begin():
        if sqlite:
            await session.execute(text("BEGIN"))
        yield session
