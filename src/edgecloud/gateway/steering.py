"""Pushing chain flows to a host ahead of its desired-state snapshot (protocol/steering.py).

A chain path change (services/chain_paths.py) announces ``steering_changed`` for each host
whose flows it changed, then ``host_changed``. In the controller process that made the
change the notice carries the chain's flows on that host before and after it, as the phase's
transaction computed them, and the host's desired version with the change: the gateway sends
them at once as ``steer_chain``, with no store read between the commit and the node (and
none in the phase either). A notice from another controller process carries only the host,
and an agent whose hello said ``steers`` but not ``chain_steers`` takes only whole tables:
then this gateway reads the host's version and steering section after the commit
(``services.chain_paths.host_steering``: the chains' rows, no instances, networks or DHCP)
and sends ``steer``. Either way it goes before the full snapshot of that version is built:
gateway.py's sync of the host waits for the push first (``Steering.pending``), so on the
wire the push comes first and the two reads do not compete.

Nothing depends on it arriving: the snapshot follows with the same flows and is what is
acked. It is not sent when the host's snapshot of that version (or a later one) was sent
already, nor to an agent that did not say ``steers`` in its hello. Neighbours: gateway.py
(calls ``push``), services/chain_paths.py (the flows), protocol/steering.py (the messages).
"""

from __future__ import annotations

import asyncio
import logging

from edgecloud.errors import EdgecloudError
from edgecloud.gateway.sessions import AgentSession
from edgecloud.protocol import steering
from edgecloud.services.chain_paths import host_steering
from edgecloud.services.context import ChainSteer, HostSteering, ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Host

log = logging.getLogger(__name__)


class Steering:
    """Steering pushes in flight, one per host at most (a newer notice starts a new one)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.pushes: dict[str, asyncio.Task[None]] = {}
        self.sent = 0  # steer messages sent since start

    def push(
        self, session: AgentSession, change: ChainSteer | None = None
    ) -> asyncio.Task[None] | None:
        """Start sending ``session``'s host a chain's ``change`` as committed (when its agent
        takes ``steer_chain``), else its whole table read from the store; the task (None: its
        agent takes neither)."""
        if not session.steers:
            return None
        if not session.chain_steers:
            change = None
        task = asyncio.create_task(self._push(session, change), name=f"steer-{session.host_name}")
        self.pushes[session.host_id] = task
        task.add_done_callback(lambda done: self._forget(session.host_id, done))
        return task

    async def pending(self, host_id: str) -> None:
        """Wait for the host's push in flight, if any (before its snapshot is built)."""
        task = self.pushes.get(host_id)
        if task is not None:  # however it ends; the caller's own cancellation still stops it
            await asyncio.wait({task})

    async def close(self) -> None:
        for task in list(self.pushes.values()):
            task.cancel()
        await asyncio.gather(*self.pushes.values(), return_exceptions=True)

    def _forget(self, host_id: str, done: asyncio.Task[None]) -> None:
        if self.pushes.get(host_id) is done:
            del self.pushes[host_id]

    async def _push(self, session: AgentSession, change: ChainSteer | None) -> None:
        try:
            if change is not None:
                version = change.version
                message = steering.make_chain(version, change.before, change.after)
            else:
                version, flows = await self._read(session.host_id)
                message = steering.make(version, flows)
            if version <= session.sent_version:
                return  # its snapshot of this version (or a later one) went out already
            await session.send(message)
            self.sent += 1
        except (EdgecloudError, ConnectionError, OSError) as exc:  # the snapshot follows anyway
            log.warning("steering push to host %s: %s", session.host_name, exc)
        except Exception:  # a store error: the snapshot's sync meets and reports it
            log.exception("steering push to host %s", session.host_name)

    async def _read(self, host_id: str) -> HostSteering:
        """The host's desired version and steering section now ((0, {}): no such host)."""
        async with transaction(self.ctx.sessions) as s:
            host = await s.get(Host, host_id)
            if host is None:
                return 0, {}
            return host.desired_version, await host_steering(s, host.id)
