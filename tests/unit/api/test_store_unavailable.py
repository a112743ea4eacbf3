"""A request that finds the store's server gone (a replicated store's failover) is answered
503 store_unavailable with Retry-After, not 500; other database errors stay a 500."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy.exc import InterfaceError, ProgrammingError

from edgecloud.api import errors


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/x")
    async def fail() -> None:
        raise exc

    return app


async def get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/x")


async def test_a_refused_connection_is_a_503_with_retry_after() -> None:
    response = await get(app_raising(ConnectionRefusedError(111, "Connect call failed")))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["Retry-After"] == "2"


async def test_a_lost_connection_is_a_503() -> None:
    response = await get(app_raising(InterfaceError("SELECT 1", {}, Exception("closed"))))
    assert response.status_code == 503


async def test_a_bad_statement_stays_a_500() -> None:
    response = await get(app_raising(ProgrammingError("SELECT x", {}, Exception("no column"))))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"


async def test_a_server_starting_up_or_no_writable_node_is_a_503() -> None:
    for exc in (
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TargetServerAttributeNotMatched("none is read-write"),
    ):
        response = await get(app_raising(exc))
        assert response.status_code == 503, exc


async def test_asyncpgs_error_wrapped_by_sqlalchemys_adapter_is_a_503() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    wrapped = AsyncAdapt_asyncpg_dbapi.Error("the database system is starting up")
    wrapped.__cause__ = asyncpg.CannotConnectNowError("the database system is starting up")
    assert (await get(app_raising(wrapped))).status_code == 503
