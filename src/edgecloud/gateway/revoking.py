"""Closing live sessions whose certificate stopped being the host's current one.

A host deleted or given a new join token (services/hosts.py) loses its certificate serial in
the store; the gateway is told (``host_changed``) and this module closes the host's live
session at once with an ``unknown_certificate`` error, which the agent takes as final (enroll
again). The check is one batched read of the named hosts' serials (batching.py), so the many
``host_changed`` calls of ordinary desired-state changes cost a share of one small read. A
sweep over every session each ``SWEEP_PERIOD`` seconds catches changes made by another
controller process (HA), at one read of (id, serial) per sweep. New connections with an old
certificate are refused by the serial check at session start (gateway.py); a renewal
(renewing.py) moves the session's serial to the new certificate, so it is not revoked.

Neighbours: gateway.py (owns the sessions and calls ``suspect``), services/enrollment.py
(``current_serials``), sessions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edgecloud.gateway.batching import Batcher
from edgecloud.gateway.sessions import AgentSession
from edgecloud.protocol import messages
from edgecloud.protocol.framing import encode_frame
from edgecloud.services import enrollment
from edgecloud.services.context import ServiceContext

log = logging.getLogger(__name__)
SWEEP_PERIOD = 10.0
REVOKED_MESSAGE = (
    "certificate for host {name!r} is not current on this site "
    "(host deleted or re-tokened): enroll again with a new join token"
)


class Revocation:
    """Checks sessions' certificates against the store; see the module docstring."""

    def __init__(
        self, ctx: ServiceContext, sessions: dict[str, AgentSession], period: float | None = None
    ) -> None:
        self.ctx, self.sessions = ctx, sessions
        self.period = SWEEP_PERIOD if period is None else period
        self._checks: Batcher[str, None, None] = Batcher(
            self._check, "certificate-checks", delay=0.01
        )
        self.revoked = 0

    def suspect(self, host_id: str) -> None:
        """The host changed: check its session's certificate soon (milliseconds)."""
        if host_id in self.sessions:
            self._checks.put(host_id, None)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            for host_id in list(self.sessions):
                self._checks.put(host_id, None)

    async def close(self) -> None:
        await self._checks.close()

    async def _check(self, hosts: dict[str, None]) -> dict[str, None]:
        before = {h: s.cert_serial for h in hosts if (s := self.sessions.get(h)) is not None}
        if not before:
            return {}
        current = await enrollment.current_serials(self.ctx, list(before))
        for host_id, serial in before.items():
            session = self.sessions.get(host_id)
            # a renewal during the read moved the session to a new serial: not revoked
            if session is None or session.cert_serial != serial:
                continue
            if current.get(host_id) != str(serial):
                self._revoke(session)
        return {}

    def _revoke(self, session: AgentSession) -> None:
        log.warning("closing the session of host %s: certificate revoked", session.host_name)
        self.revoked += 1
        refusal = messages.error(
            "unknown_certificate", REVOKED_MESSAGE.format(name=session.host_name)
        )
        # one whole frame written between the session's own frames (write() is synchronous),
        # flushed by the close; no drain: a peer that does not read must not hold us
        with contextlib.suppress(Exception):
            session.writer.write(encode_frame(refusal))
        session.close()
