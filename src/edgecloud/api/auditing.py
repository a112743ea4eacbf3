"""ASGI middleware that records every mutating API call (POST, PUT, PATCH, DELETE) in the
audit log (services/audit.py), whatever its outcome, refusals included.

The record is written before the response leaves (the response is held until then; mutating
calls answer small JSON bodies), so a client that reads the audit log right after its call
finds the call there. Who: the principal api/deps.py put on the request ("-" when the token
was missing or invalid); what: the method and route template; target: the path (for a create
on a collection, with the new object's name from the answer); result: the status code;
from where: the client's address.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgecloud.services import audit
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOLD_LIMIT = 1 << 20  # a bigger answer is recorded without the new object's name


class AuditMiddleware:
    def __init__(self, app: ASGIApp, ctx: ServiceContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        size, status, recorded = 0, 500, False

        async def hold(message: Message) -> None:
            nonlocal size, status, recorded
            if recorded:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
            held.append(message)
            size += len(message.get("body", b""))
            final = message["type"] == "http.response.body" and not message.get("more_body")
            if final or size > HOLD_LIMIT:
                recorded = True
                await self._record(scope, status, held if final else [])
                for m in held:
                    await send(m)
                held.clear()

        try:
            await self.app(scope, receive, hold)
        finally:
            if not recorded:  # the app raised before answering: the server answers 500
                await self._record(scope, 500, [])

    async def _record(self, scope: Scope, status: int, messages: list[Message]) -> None:
        route = scope.get("route")
        template = str(getattr(route, "path", "") or scope["path"])
        target = str(scope["path"])
        if "{" not in template and 200 <= status < 300:
            name = _created_name(messages)
            target = f"{target}/{name}" if name else target
        principal = scope.get("state", {}).get("principal")
        actor = principal.name if principal is not None else audit.ANONYMOUS
        client = scope.get("client")
        where = str(client[0]) if client else ""
        try:
            await audit.record(
                self.ctx, actor, f"{scope['method']} {template}", target, status, where
            )
        except Exception:
            log.exception("could not write the audit record of %s %s", scope["method"], target)


def _created_name(messages: list[Message]) -> str | None:
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return None
    name = answer.get("name") if isinstance(answer, dict) else None
    return name if isinstance(name, str) else None
