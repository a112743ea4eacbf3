"""Requests to a node's agent (console, ...) whichever controller of the site holds its session.

Services ask through ``NodeCalls`` (services/context.py). ``RelayedCalls`` sends the request on
this process's own session with the agent when it has one (gateway/gateway.py ``call``).
Otherwise, with several controllers on one PostgreSQL, the request goes through the store: a
row in ``node_calls`` (store/models.py ``NodeCall``), then a ``node_call <id>`` change notice
(store/change_feed.py). The controller that holds the host's session claims the row (one
conditional UPDATE, so only one does), asks its agent, writes the answer into the row (a
console read is up to 64 KiB: more than one NOTIFY carries, so the answer is not in the
notice) and sends ``node_call_done <id>``; the asking controller reads it and deletes the row.

Honest limits: when no controller claims the request within ``CLAIM_TIMEOUT`` (the host's agent
is connected nowhere) the caller gets ``ProtocolError`` saying so; when it was claimed but no
answer came within the caller's timeout, ``DriverError`` like a local call's. A lost notice is
covered by re-reading the row every ``POLL`` seconds. Rows left by a controller that died while
asking are removed by ``sweep`` (after ``STALE``). Neighbours: controller/notifying.py (routes
the two notices here), controller/site.py (wires it), gateway/gateway.py (``sessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.errors import DriverError, EdgecloudError, NotConnected
from edgecloud.gateway.gateway import Gateway
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, NodeCall, utcnow

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = 2.0  # seconds for the controller holding the session to claim a request
POLL = 0.5  # re-read the row this often (a lost notice costs at most this)
STALE = 300.0  # rows older than this are left over by a controller that died while asking
REQUEST, DONE = "node_call", "node_call_done"


class RelayedCalls:
    """``NodeCalls`` for a controller that may share its site with others (see the module)."""

    def __init__(
        self,
        gateway: Gateway,
        sessions: async_sessionmaker[AsyncSession],
        me: str,
        claim_timeout: float = CLAIM_TIMEOUT,
        poll: float = POLL,
    ) -> None:
        self.gateway, self.sessions, self.me = gateway, sessions, me
        self.claim_timeout, self.poll = claim_timeout, poll
        self.publish: Callable[[str, str], None] | None = None  # set on PostgreSQL (the feed)
        self._waiting: dict[str, asyncio.Event] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self.relayed = 0  # requests answered through another controller (tests, status)
        self.served = 0  # requests of another controller answered here

    async def call(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        if host_id in self.gateway.sessions or self.publish is None:
            return await self.gateway.call(host_id, op, args, timeout)
        return await self._relay(host_id, op, args, timeout)

    async def _relay(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        assert self.publish is not None
        async with transaction(self.sessions) as s:
            asked = NodeCall(host_id=host_id, op=op, args=args, timeout=timeout)
            s.add(asked)
            await s.flush()
            call_id = asked.id
        done = self._waiting[call_id] = asyncio.Event()
        started = time.monotonic()
        try:
            self.publish(REQUEST, call_id)
            while True:
                remaining = started + timeout - time.monotonic()
                wait = max(0.05, min(self.poll, remaining))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), wait)
                done.clear()
                row = await self._read(call_id)
                if row is not None and row.done:
                    self.relayed += 1
                    if row.ok:
                        return row.result
                    raise DriverError(row.error or "the request failed on the node")
                elapsed = time.monotonic() - started
                if (row is None or row.claimed_by is None) and elapsed >= self.claim_timeout:
                    raise NotConnected(
                        f"host {await self._name(host_id)} is not connected to any controller "
                        "of the site"
                    )
                if elapsed >= timeout:
                    raise DriverError(
                        f"host {await self._name(host_id)} did not answer {op!r} within "
                        f"{timeout:g} s (asked through controller {row.claimed_by if row else '?'})"
                    )
        finally:
            del self._waiting[call_id]
            async with transaction(self.sessions) as s:
                await s.execute(delete(NodeCall).where(NodeCall.id == call_id))

    async def _read(self, call_id: str) -> NodeCall | None:
        async with self.sessions() as s:
            return await s.get(NodeCall, call_id)

    async def _name(self, host_id: str) -> str:
        async with self.sessions() as s:
            name = await s.scalar(select(Host.name).where(Host.id == host_id))
        return name or host_id

    def deliver(self, kind: str, call_id: str) -> None:
        """A ``node_call`` or ``node_call_done`` notice from another controller."""
        if kind == DONE:
            event = self._waiting.get(call_id)
            if event is not None:
                event.set()
        elif kind == REQUEST:
            task = asyncio.create_task(self._serve(call_id), name="node-call")
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, call_id: str) -> None:
        row = await self._read(call_id)
        if row is None or row.done or row.host_id not in self.gateway.sessions:
            return
        async with transaction(self.sessions) as s:
            claimed = await s.execute(
                update(NodeCall)
                .where(NodeCall.id == call_id, NodeCall.claimed_by.is_(None))
                .values(claimed_by=self.me)
            )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return
        values: dict[str, Any] = {"done": True}
        try:
            result = await self.gateway.call(row.host_id, row.op, row.args, self._budget(row))
            values.update(ok=True, result=result)
        except EdgecloudError as exc:
            values.update(ok=False, error=str(exc))
        async with transaction(self.sessions) as s:
            await s.execute(update(NodeCall).where(NodeCall.id == call_id).values(**values))
        self.served += 1
        if self.publish is not None:
            self.publish(DONE, call_id)

    @staticmethod
    def _budget(row: NodeCall) -> float:
        """What is left of the asker's timeout."""
        age = (utcnow() - row.created_at).total_seconds()
        return max(0.5, row.timeout - age)

    async def sweep(self) -> int:
        """Delete requests older than ``STALE`` (their asker died); how many."""
        cutoff = utcnow() - dt.timedelta(seconds=STALE)
        async with transaction(self.sessions) as s:
            result = await s.execute(delete(NodeCall).where(NodeCall.created_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def close(self) -> None:
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
