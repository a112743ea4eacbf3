"""The chain reconciler: carries out a chain's recorded operation, make before break.

One queue entry per chain (sequential per chain, chains in parallel). The operation and its
phase are stored on the chain, so a controller restart resumes where it was. Phases:
bring-up (wait until every pending VNF runs with its binding verified) -> switch (one
transaction: the new path becomes the host's desired state) -> acked (the host's agent
committed it: one OpenFlow bundle) -> retire (delete the stacks of services that left).
If a pending VNF fails or is not healthy by the deadline, its stack is deleted and the chain
keeps the path it had: traffic never stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from edgecloud.chains.planning import Port
from edgecloud.errors import EdgecloudError
from edgecloud.fm import alarming
from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import stacks
from edgecloud.services.bindings import binding_verified
from edgecloud.services.chains import path_steering
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Chain, Host, Instance, Stack, as_utc, utcnow

log = logging.getLogger(__name__)
POLL = 0.02  # seconds between checks while waiting for health or an ack
STABLE_FOR = 1.0  # a new service must stay healthy this long before the path moves to it
DRAIN = 0.5  # a leaving service's outbound flows stay this long after the switch
ACK_TIMEOUT = 60.0


class ChainReconciler:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.queue: KeyedQueue[str] = KeyedQueue(self._reconcile, name="chains")

    def enqueue(self, chain_id: str) -> None:
        self.queue.enqueue(chain_id)

    async def resume_all(self) -> None:
        """After a restart: continue every chain with an operation under way."""
        async with transaction(self.ctx.sessions) as s:
            from sqlalchemy import select

            ids = list(await s.scalars(select(Chain.id).where(Chain.operation.is_not(None))))
        for chain_id in ids:
            self.enqueue(chain_id)

    async def close(self) -> None:
        await self.queue.close()

    async def _reconcile(self, chain_id: str) -> None:
        while True:
            async with transaction(self.ctx.sessions) as s:
                chain = await s.get(Chain, chain_id)
                if chain is None or chain.operation is None:
                    return
                op, phase = dict(chain.operation), chain.operation.get("phase")
            step = {"bring-up": self._bring_up, "acked": self._await_ack, "retire": self._retire}[
                str(phase)
            ]
            if not await step(chain_id, op):
                return

    # phases (each returns True to go on to the next one) --------------------------------------
    async def _bring_up(self, chain_id: str, op: dict[str, Any]) -> bool:
        deadline = _started(op) + float(op["health_timeout"])
        healthy_since: float | None = None  # switch once healthy for STABLE_FOR seconds
        while True:
            verdict = await self._pending_health(chain_id, op)
            if verdict == "healthy":
                now = time.time()
                healthy_since = healthy_since or now
                if now - healthy_since >= float(op.get("stable_for", STABLE_FOR)):
                    return await self._switch(chain_id, op)
            else:
                healthy_since = None
            if verdict not in ("waiting", "healthy") or time.time() > deadline:
                timed_out = f"not healthy (stably) within {op['health_timeout']:.0f} s"
                reason = timed_out if verdict in ("waiting", "healthy") else verdict
                await self._fail(chain_id, op, reason)
                return False
            await asyncio.sleep(POLL * 5)

    async def _pending_health(self, chain_id: str, op: dict[str, Any]) -> str:
        """'healthy', 'waiting', or why a pending service failed."""
        async with transaction(self.ctx.sessions) as s:
            chain = await s.get(Chain, chain_id)
            assert chain is not None
            for svc in chain.services:
                if svc.name not in op["pending"]:
                    continue
                instance = await s.get(Instance, svc.instance_id) if svc.instance_id else None
                if instance is None:
                    return f"service {svc.name}: its VNF is gone"
                if instance.status == "error":
                    return f"service {svc.name}: VNF failed: {instance.fault}"
                if not (instance.status == "running" and binding_verified(instance)):
                    return "waiting"
        return "healthy"

    async def _switch(self, chain_id: str, op: dict[str, Any]) -> bool:
        """ONE transaction: the new path becomes the host's desired state."""
        healthy_at = time.time()
        async with transaction(self.ctx.sessions) as s:
            chain = await s.get(Chain, chain_id)
            assert chain is not None
            old = path_steering(chain)
            _apply_path(chain, op)
            host = await s.get(Host, chain.host_id)
            assert host is not None
            host.desired_version += 1
            chain.path_version = host.desired_version
            chain.operation = {
                **op,
                "phase": "acked",
                "healthy_at": healthy_at,
                "switched_at": time.time(),
                "drain": _drain_flows(chain, old),
            }
            host_id = host.id
        self.ctx.notifier.host_changed(host_id)
        return True

    async def _await_ack(self, chain_id: str, op: dict[str, Any]) -> bool:
        deadline = time.monotonic() + ACK_TIMEOUT
        while time.monotonic() < deadline:
            async with transaction(self.ctx.sessions) as s:
                chain = await s.get(Chain, chain_id)
                assert chain is not None
                host = await s.get(Host, chain.host_id)
                if host is not None and host.applied_version >= chain.path_version:
                    result = await self._timing(host.id, chain.path_version, op)
                    chain.operation = {**op, "phase": "retire", "result": result}
                    return True
            await asyncio.sleep(POLL)
        await self._record(
            chain_id, error=f"host did not apply the new path within {ACK_TIMEOUT:.0f} s; retrying"
        )
        return True  # the path is desired and persisted; the agent applies it when it can

    async def _timing(self, host_id: str, version: int, op: dict[str, Any]) -> dict[str, Any]:
        """How long the switch took: healthy -> the node committed the bundle (asked of the
        node: same clock on an all-in-one site; across machines it needs synchronised clocks),
        and healthy -> the node's ack of the whole snapshot."""
        acked, healthy = time.time(), float(op["healthy_at"])
        result: dict[str, Any] = {
            "kind": op["kind"],
            "healthy_to_ack_ms": round((acked - healthy) * 1000, 1),
            "flows_version": version,
            "finished": utcnow().isoformat(),
        }
        try:
            steer = (
                await self.ctx.nodes.call(host_id, "steering", {}, 5.0) if self.ctx.nodes else {}
            )
        except EdgecloudError as exc:
            log.info("could not ask the node when it switched: %s", exc)
            steer = {}
        if steer and int(steer.get("version", 0)) >= version:
            result["switchover_ms"] = round((float(steer["at"]) - healthy) * 1000, 1)
            result["flows_changed"] = steer.get("flows")
        return result

    async def _retire(self, chain_id: str, op: dict[str, Any]) -> bool:
        """After a drain time, drop the leaving services' flows and delete their stacks."""
        if op.get("drain"):
            await asyncio.sleep(DRAIN)
        async with transaction(self.ctx.sessions) as s:
            chain = await s.get(Chain, chain_id)
            assert chain is not None
            host = await s.get(Host, chain.host_id)
            drained = host is not None and bool(op.get("drain"))
            if host is not None and drained:
                host.desired_version += 1  # the snapshot without the drain flows
                chain.path_version = host.desired_version
            leaving = [svc for svc in chain.services if svc.state == "retiring"]
            stack_names = [
                st.name
                for svc in leaving
                if svc.stack_id and (st := await s.get(Stack, svc.stack_id))
            ]
            for svc in leaving:
                chain.services.remove(svc)
            deleting = op["kind"] == "delete"
            chain.operation, chain.status = None, "active"
            chain.last_result, chain.last_error = op.get("result"), None
            alarming.log_event(s, f"chain={chain.name}", _describe(op))
            if deleting:
                await s.delete(chain)
        if drained and host is not None:
            self.ctx.notifier.host_changed(host.id)
        for name in stack_names:
            await stacks.delete_stack(self.ctx, name)
        return False

    async def _fail(self, chain_id: str, op: dict[str, Any], reason: str) -> None:
        """The new services never became healthy: drop them; the old path stays."""
        async with transaction(self.ctx.sessions) as s:
            chain = await s.get(Chain, chain_id)
            assert chain is not None
            failed = [svc for svc in chain.services if svc.name in op["pending"]]
            stack_names = [
                st.name
                for svc in failed
                if svc.stack_id and (st := await s.get(Stack, svc.stack_id))
            ]
            for svc in failed:
                chain.services.remove(svc)
            message = f"{op['kind']} failed, old path kept: {reason}"
            chain.operation, chain.last_error = None, message
            chain.status = "active" if chain.services else "failed"
            chain.last_result = {
                "kind": op["kind"],
                "failed": reason,
                "finished": utcnow().isoformat(),
            }
            alarming.log_event(s, f"chain={chain.name}", message, severity="major")
        log.warning("chain %s: %s", chain_id, message)
        for name in stack_names:
            await stacks.delete_stack(self.ctx, name)

    async def _record(self, chain_id: str, error: str) -> None:
        async with transaction(self.ctx.sessions) as s:
            chain = await s.get(Chain, chain_id)
            if chain is not None:
                chain.last_error = error


def _apply_path(chain: Chain, op: dict[str, Any]) -> None:
    """Turn pending services active and retiring ones out, at their new positions."""
    kind = op["kind"]
    for svc in chain.services:
        if svc.name in op.get("old", []):
            svc.state = "retiring"
    active = sorted(
        (svc for svc in chain.services if svc.state == "active"), key=lambda svc: svc.position
    )
    pending = [svc for svc in chain.services if svc.name in op["pending"]]
    if kind == "create":
        ordered = sorted(pending, key=lambda svc: svc.position)
    elif kind in ("insert", "replace"):
        at = int(op.get("position", len(active)))
        if kind == "replace":
            at = next((i for i, svc in enumerate(active) if svc.position >= at), len(active))
        ordered = [*active[:at], *pending, *active[at:]]
    elif kind == "reorder":
        by_name = {svc.name: svc for svc in active}
        ordered = [by_name[name] for name in op["order"]]
    else:  # remove, delete
        ordered = active
    for position, svc in enumerate(ordered):
        svc.state, svc.position = "active", position
    chain.status = "deleting" if kind == "delete" else "active"


def _drain_flows(chain: Chain, old: dict[str, str]) -> dict[str, str]:
    """The old path's flows out of leaving services, kept for DRAIN seconds after the switch
    so that packets already inside a leaving VNF still reach the next hop (no in-flight loss)."""
    leaving = {
        Port(instance_id=svc.instance_id, vnic_index=index).key()
        for svc in chain.services
        if svc.state == "retiring"
        for index in (svc.customer_vnic, svc.network_vnic)
    }
    return {src: dst for src, dst in old.items() if src in leaving}


def _started(op: dict[str, Any]) -> float:
    return as_utc(dt.datetime.fromisoformat(str(op["started"]))).timestamp()


def _describe(op: dict[str, Any]) -> str:
    result = op.get("result") or {}
    timing = f"; switchover {result['switchover_ms']} ms" if "switchover_ms" in result else ""
    return f"{op['kind']} done{timing}"
