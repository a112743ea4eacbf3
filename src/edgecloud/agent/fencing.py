"""Self-fencing: a node cut off from the controllers stops its recoverable VNFs by itself.

On a site with host recovery (controller ``--host-recovery``) the controller's welcome says
``fence_after``: how long this node may go without hearing from the controllers before they
may judge it failed and rebuild its VNFs elsewhere (one heartbeat interval less than their
liveness limit). Every frame of a session (from the welcome on) counts as contact (the controller also
echoes each heartbeat of an agent that says it fences, fact ``fences``). When the silence
passes ``fence_after``, the runner (agent/runner.py) destroys every VNF whose recovery
policy is ``recover`` and is not migrating, keeps it from being started again, reports
applied version 0 (so the controller sends its snapshot at the next hello) and raises host
alarm 200.040; the next snapshot from the controller lifts the fence (a VNF recovered
elsewhere is gone from it and deleted here; one still placed here starts again).

When contact was last had is kept in ``STATE/fence.json`` (written at most every quarter of
``fence_after``, so it errs early), so an agent that starts after a long outage (its host was
dead, or only its agent) fences before its first hello: a returning host reports no stale
copy as running. Why this is safe: docs/architecture.md, "Host failure and recovery".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.protocol.desired import DesiredState

FENCE_FILE = "fence.json"
HOST_FENCED = "200.040"  # fm/catalogue.yaml (agent/ may not import fm/)


class Fence:
    """When this node last heard from a controller, and whether it has fenced since."""

    def __init__(
        self,
        state_dir: Path,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = state_dir / FENCE_FILE
        self._wall, self._monotonic = wall, monotonic
        saved = files.read_tolerant(self.path, _saved, "the fence state") or {}
        self.after: float | None = saved.get("after")
        contact = saved.get("contact")
        now = monotonic()
        self._contact = now if contact is None else now - max(0.0, wall() - contact)
        self._written = 0.0
        self._overdue = False  # a silence passed ``after`` before it was acted on
        self.active = False  # fenced, not lifted by a snapshot from the controller yet
        self.fenced_at: float | None = None  # wall time of the last fence
        self.fenced: tuple[str, ...] = ()  # instance ids it stopped

    def configure(self, after: float | None) -> None:
        """The controller's ``fence_after`` (None: this site does not recover hosts)."""
        if after != self.after:
            self.after = after
            self._write()

    def heard(self) -> None:
        """A frame from the controller arrived. One that ends a silence longer than ``after``
        does not cancel the fence that silence made due: the controllers may have recovered
        this node's VNFs already (e.g. the agent was frozen, then read what the socket held)."""
        if self.after is not None and not self.active and self.silent_for() > self.after:
            self._overdue = True
        self._contact = self._monotonic()
        if self.after is not None and self._wall() - self._written > self.after / 4:
            self._write()

    def silent_for(self) -> float:
        return self._monotonic() - self._contact

    def due(self) -> bool:
        if self.after is None or self.active:
            return False
        return self._overdue or self.silent_for() > self.after

    def period(self) -> float:
        """How often the runner asks ``due``."""
        return 1.0 if self.after is None else min(1.0, max(0.02, self.after / 8))

    def done(self, instance_ids: tuple[str, ...]) -> None:
        self.active, self.fenced_at, self.fenced = True, self._wall(), instance_ids
        self._overdue = False

    def lift(self) -> None:
        self.active = False

    def _write(self) -> None:
        self._written = self._wall()
        contact = self._written - (self._monotonic() - self._contact)
        state = {"after": self.after, "contact": contact}
        files.write_atomic(self.path, json.dumps(state), durable=False)


def recoverable(state: DesiredState) -> tuple[str, ...]:
    """Ids of the instances of a desired snapshot to fence: policy ``recover``, not being
    migrated (a migrating domain belongs to its migration)."""
    return tuple(i.id for i in state.instances if i.recovery == "recover" and i.migration is None)


class ContactReader:
    """A StreamReader that tells ``heard`` whenever a frame (or part of one) arrives, once
    ``armed``. The runner arms it at the welcome: a frame before it (a ``retry``, an error)
    comes from a controller that has not opened a session for this node, so no leader
    counts the node present because of it, and it must not hold the fence off."""

    def __init__(
        self, reader: asyncio.StreamReader, heard: Callable[[], None], armed: bool = True
    ) -> None:
        self._reader, self._heard = reader, heard
        self.armed = armed

    async def readexactly(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        if self.armed:
            self._heard()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _saved(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    after, contact = value.get("after"), value.get("contact")
    if after is not None and not isinstance(after, int | float):
        raise ValueError("after")
    if contact is not None and not isinstance(contact, int | float):
        raise ValueError("contact")
    return {"after": after, "contact": contact}
