"""Refusing an agent's invalid message for its host alone, with an alarm naming the host.

Every message of an established session is checked against its schema (protocol/schemas.py)
before anything of it is used. An invalid one is dropped: nothing of it reaches a write batch
shared with other hosts (batching.py), the session stays up (a newer agent whose report this
controller cannot read still gets its desired state and heartbeats), and alarm 200.032 names
the host and the field, raised once per session (a host sending junk in a loop costs one store
write per session, not one per message). An invalid hello refuses the session (the error
names the field), and so does a hello with no protocol version in common (the alarm names both
sides' versions); the alarm clears at the host's next valid hello. Which hosts have the alarm
is kept in memory: after a controller restart a stale alarm clears only by hand.

A write that still fails for one host alone in a shared batch (batching.py ``isolate``) raises
the same alarm (``poisoned``). Neighbours: gateway.py (calls ``admit``, ``hello``), batching.py,
services/reports.py (the alarm).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from edgecloud.errors import ProtocolError
from edgecloud.gateway.sessions import AgentSession
from edgecloud.protocol import messages, schemas
from edgecloud.services import reports
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)


class MessageGuard:
    """Schema checks with per-host alarms; see the module docstring."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.flagged: set[str] = set()  # hosts whose 'invalid message' alarm is raised
        self.refused = 0

    async def admit(
        self, session: AgentSession, message: dict[str, Any], kind: str
    ) -> BaseModel | None:
        """The message read as its schema's model; None when it does not fit (it is refused,
        and alarmed)."""
        try:
            return schemas.validate(message, kind)
        except ProtocolError as exc:
            self.refused += 1
            log.warning("refused a message of host %s: %s", session.host_name, exc)
            if not session.flagged:
                session.flagged = True
                await self._alarm(session.host_id, f"refused: {exc}")
            return None

    async def hello(self, host_id: str, name: str, hello: dict[str, Any]) -> int:
        """Check a hello and negotiate the session's protocol version (protocol/messages.py):
        ProtocolError (and the alarm, naming both sides' versions when they have none in
        common: an agent too old or too new for this controller) when it cannot open a
        session; else clear the alarm and return the version."""
        try:
            if messages.check(hello, messages.AGENT_TYPES) != "hello":
                raise ProtocolError("the first message of a session must be hello")
            schemas.validate(hello, "hello")
            protocol = messages.negotiate(hello)
        except ProtocolError as exc:
            self.refused += 1
            log.warning("refused the hello of host %s: %s", name, exc)
            await self._alarm(host_id, f"refused: {exc}")
            raise
        if host_id in self.flagged:
            self.flagged.discard(host_id)
            await reports.record_invalid_message(self.ctx, host_id, None)
        return protocol

    async def poisoned(self, host_id: str, exc: Exception) -> None:
        """A write of this host's failed alone in a batch that otherwise landed (batching.py)."""
        self.refused += 1
        await self._alarm(host_id, f"what it reported could not be written: {exc}")

    async def _alarm(self, host_id: str, reason: str) -> None:
        self.flagged.add(host_id)
        try:
            await reports.record_invalid_message(self.ctx, host_id, reason[:1000])
        except Exception as exc:  # the store is busy or down: the refusal still stands
            log.warning("recording the invalid-message alarm failed: %s", exc)
