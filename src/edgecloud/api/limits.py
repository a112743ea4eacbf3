"""Request body bounds, enforced before anything else runs (authentication included).

An ASGI middleware wrapped around the whole API app (api/app.py): a request whose
Content-Length is above its route's bound is answered 413 at once, its body never read; a
body without a Content-Length (chunked) is counted as it arrives and refused the moment it
passes the bound. So an anonymous peer can make the controller hold at most one bound's worth
of bytes per request, never a body of its own choosing.

Bounds: JSON bodies 1 MiB (the largest request, a stack with its template and files, is
limited far below that by api/schemas.py); image uploads (PUT /v1/images/NAME, streamed to
disk by api/routers/images.py, never held in memory) IMAGE_MAX_BYTES; software uploads (POST
/v1/software, streamed the same way by api/routers/software.py) SOFTWARE_MAX_BYTES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIB = 1024 * 1024
JSON_MAX_BYTES = 1 * MIB
IMAGE_MAX_BYTES = 64 * 1024 * MIB  # 64 GiB: bigger than any VNF disk image we expect
IMAGE_UPLOAD_PREFIX = "/v1/images/"
SOFTWARE_MAX_BYTES = 1024 * MIB  # services/software.py MAX_PACKAGE_BYTES
SOFTWARE_UPLOAD = "/v1/software"


@dataclass(frozen=True)
class BodyLimits:
    """The bounds in bytes: ``json`` for every route but the uploads, ``image`` for an image's,
    ``software`` for a software package's."""

    json: int = JSON_MAX_BYTES
    image: int = IMAGE_MAX_BYTES
    software: int = SOFTWARE_MAX_BYTES

    def for_request(self, method: str, path: str) -> int:
        if method == "PUT" and path.startswith(IMAGE_UPLOAD_PREFIX):
            return self.image
        if method == "POST" and path == SOFTWARE_UPLOAD:
            return self.software
        return self.json


class BodyTooLarge(HTTPException):
    """Raised out of ``receive`` when a body passes its bound while the app reads it; an
    HTTPException, so the app's handlers (api/errors.py) answer 413 with the error body."""

    def __init__(self, bound: int) -> None:
        super().__init__(
            413, f"the request body is larger than this route's bound of {bound} bytes"
        )


class BodyLimitMiddleware:
    """Refuses request bodies above their route's bound with 413 and the API's error body."""

    def __init__(self, app: ASGIApp, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.limits = limits or BodyLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound = self.limits.for_request(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > bound:
            await _refuse(send, bound)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > bound:
                    raise BodyTooLarge(bound)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, bound)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, bound: int) -> None:
    message = str(BodyTooLarge(bound).detail)
    error = {"code": "content_too_large", "message": message, "field": None}
    payload = json.dumps({"error": error}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
