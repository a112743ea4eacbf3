"""Shared test fixtures: the store URLs the integration suite runs against."""

from __future__ import annotations

import os
from typing import Any

import pytest

PG_URL = os.environ.get(
    "EDGECLOUD_TEST_PG_URL",
    "postgresql+asyncpg://edgecloud:edgecloud@127.0.0.1:5432/edgecloud_test",
)


_PG_PROBLEM: list[str | None] = []


async def postgres_problem() -> str | None:
    """None when PostgreSQL at PG_URL answers, else why not (probed once per run)."""
    if not _PG_PROBLEM:
        import asyncpg

        try:
            conn = await asyncpg.connect(_dsn(), timeout=3)
            await conn.close()
            _PG_PROBLEM.append(None)
        except Exception as exc:
            _PG_PROBLEM.append(
                f"PostgreSQL at {PG_URL} is not reachable ({type(exc).__name__}); "
                "run scripts/bootstrap-postgres"
            )
    return _PG_PROBLEM[0]


def _dsn(url: str = PG_URL) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


# This run's own database (runs side by side, e.g. two checkouts, must not share a schema),
# made from PG_URL's database on first use and dropped at the end of the run.
RUN_DB = f"edgecloud_test_{os.getpid()}"
_RUN_URL: list[str] = []


async def _run_database() -> str:
    if not _RUN_URL:
        import asyncpg

        conn = await asyncpg.connect(_dsn())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {RUN_DB}")
            await conn.execute(f"CREATE DATABASE {RUN_DB}")
        except asyncpg.InsufficientPrivilegeError:
            _RUN_URL.append(PG_URL)  # a role without CREATEDB: share PG_URL's database
        else:
            _RUN_URL.append(PG_URL.rsplit("/", 1)[0] + "/" + RUN_DB)
        finally:
            await conn.close()
    return _RUN_URL[0]


def pytest_sessionfinish() -> None:
    if _RUN_URL and _RUN_URL[0] != PG_URL:
        import asyncio

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(_dsn())
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)")
            except asyncpg.InsufficientPrivilegeError:
                # FORCE may not end another role's session: wait for it to go (seen once)
                for _ in range(20):
                    await asyncio.sleep(0.25)
                    try:
                        await conn.execute(f"DROP DATABASE IF EXISTS {RUN_DB}")
                        return
                    except asyncpg.ObjectInUseError:
                        continue
                print(f"\nconftest: could not drop the test database {RUN_DB}: still in use")
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest) -> str | None:
    """None (the default SQLite store in the state dir) or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    problem = await postgres_problem()
    if problem:
        if os.environ.get("EDGECLOUD_REQUIRE_PG"):
            pytest.fail(problem)
        pytest.skip(problem)
    import asyncpg

    url = await _run_database()
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    return url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures tests report with ``record_property`` (e.g. recovery times)."""
    lines = [
        f"{report.nodeid}: {key} = {value}"
        for report in terminalreporter.stats.get("passed", [])
        for key, value in report.user_properties
    ]
    if lines:
        terminalreporter.section("reported figures")
        for line in lines:
            terminalreporter.write_line(line)
