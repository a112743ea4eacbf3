"""Exceptions to HTTP answers: every error is ``{"error": {"code", "message", "field"}}``.

Anything a client can send yields a 4xx naming the problem; a 500 means a bug, and its body
says only that (the traceback goes to the controller log).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecloud import errors
from edgecloud.store import database

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


def body(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    content = {"error": {"code": code, "message": message, "field": field}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else headers
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


HTTP_CODES = {
    400: "bad_request",
    405: "method_not_allowed",
    413: "content_too_large",
}


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http")
    if exc.status_code == 405:
        allow = allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allow})"
        return body(405, code, message, headers={"Allow": allow})
    return body(exc.status_code, code, str(exc.detail), headers=exc.headers)


def allowed_methods(request: Request) -> str:
    """Every method the API declares on this path, from its own OpenAPI (plus HEAD with GET,
    which the server answers too): the router's 405 carries no Allow header."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if _template_re(template).fullmatch(request.url.path):
            methods |= {m.upper() for m in operations if m.upper() in HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


@functools.lru_cache(maxsize=256)
def _template_re(template: str) -> re.Pattern[str]:
    """ "/v1/hosts/{name}" -> a pattern matching /v1/hosts/<one path segment>."""
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


async def _store_unreachable(request: Request, exc: Exception) -> JSONResponse:
    """The store's server is gone (a replicated store's failover, allinone/replicated_db.py,
    takes about 10 s): 503 with Retry-After, not a 500, because the request was not at fault."""
    if not database.unreachable(exc):
        return await _unexpected(request, exc)
    log.warning("the store is unreachable: %s", exc)
    return body(
        503,
        "store_unavailable",
        "the site's database is unreachable (a failover may be under way); try again",
        headers={"Retry-After": "2"},
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error while handling a request", exc_info=exc)
    return body(500, "internal", "internal error; see the controller log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(errors.EdgecloudError, _edgecloud)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IntegrityError, _integrity)
    for kind in database.UNREACHABLE:
        app.add_exception_handler(kind, _store_unreachable)
    app.add_exception_handler(Exception, _unexpected)
