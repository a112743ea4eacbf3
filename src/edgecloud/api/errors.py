"""Exceptions to HTTP answers: every error is ``{"error": {"code", "message", "field"}}``.

Anything a client can send yields a 4xx naming the problem; a 500 means a bug, and its body
says only that (the traceback goes to the controller log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecloud import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidInput: (422, "invalid_input"),
    errors.NotFound: (404, "not_found"),
    errors.Conflict: (409, "conflict"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.InsufficientStorage: (507, "insufficient_storage"),
    errors.NoValidHost: (409, "no_valid_host"),
    errors.ProtocolError: (502, "node_protocol_error"),
    errors.DriverError: (502, "node_driver_error"),
}


def body(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    content = {"error": {"code": code, "message": message, "field": field}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content=content, headers=headers)


def _field_path(loc: tuple[object, ...]) -> str:
    path = ""
    for part in loc:
        if part in ("body", "query", "path"):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = _field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    elif first.get("type") == "json_invalid":
        message, field = "request body is not valid JSON", ""
    return body(422, "invalid_input", f"{field}: {message}" if field else message, field or None)


async def _edgecloud(_: Request, exc: Exception) -> JSONResponse:
    for kind, (status, code) in STATUS.items():
        if isinstance(exc, kind):
            return body(status, code, str(exc), getattr(exc, "field", None))
    return body(500, "internal", "internal error")


async def _integrity(_: Request, exc: Exception) -> JSONResponse:
    log.info("refused a change that conflicts with a concurrent one: %s", exc)
    return body(
        409, "conflict", "the change conflicts with another change made at the same time; try again"
    )


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return body(exc.status_code, "http", str(exc.detail))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error while handling a request", exc_info=exc)
    return body(500, "internal", "internal error; see the controller log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(errors.EdgecloudError, _edgecloud)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(Exception, _unexpected)
