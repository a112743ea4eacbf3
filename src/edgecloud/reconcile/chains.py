"""The chain reconciler: carries out a chain's recorded operation, make before break.

One queue entry per chain (sequential per chain, chains in parallel). The operation and its
phase are stored on the chain, so a controller restart resumes where it was. Phases:
bring-up (wait until every pending VNF runs with its binding verified) -> prepare (every
host got the new path's additive flows; wait for every involved host's ack) -> acked (every
host re-pointed the flows that change, one OpenFlow bundle each; wait for the acks, then
time it) -> retire (after a drain time the old path's leftovers and the leaving services'
stacks go). Each phase change is one call into services/chain_paths.py, which bumps the desired
versions of the hosts it touches; this module only waits and decides.
If a pending VNF fails or is not healthy by the deadline, its stack is deleted and the chain
keeps the path it had: traffic never stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import select

from edgecloud.errors import EdgecloudError
from edgecloud.fm import alarming
from edgecloud.reconcile.queueing import KeyedQueue
from edgecloud.services import chain_paths, stacks
from edgecloud.services.bindings import binding_verified
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
        self._switch_committed: dict[str, float] = {}  # chain id -> switch transaction done

    def enqueue(self, chain_id: str) -> None:
        self.queue.enqueue(chain_id)

    async def resume_all(self) -> None:
        """After a restart: continue every chain with an operation under way."""
        async with transaction(self.ctx.sessions) as s:
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
            step = {
                "bring-up": self._bring_up,
                "prepare": self._await_prepared,
                "acked": self._await_switched,
                "retire": self._retire,
            }[str(phase)]
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
                    await chain_paths.prepare_path(self.ctx, chain_id, time.time())
                    return True
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

    async def _await_prepared(self, chain_id: str, op: dict[str, Any]) -> bool:
        """Every involved host holds the new path's additive flows: switch."""
        await self._await_versions(chain_id, op)
        await chain_paths.switch_path(self.ctx, chain_id)
        self._switch_committed[chain_id] = time.time()  # for the timing only (not persisted)
        return True

    async def _await_switched(self, chain_id: str, op: dict[str, Any]) -> bool:
        """Every involved host re-pointed its flows: time it, then retire."""
        acked = await self._await_versions(chain_id, op)
        result = await self._timing(op, acked, self._switch_committed.pop(chain_id, None))
        await chain_paths.set_phase(self.ctx, chain_id, "retire", result=result)
        return True

    async def _await_versions(self, chain_id: str, op: dict[str, Any]) -> float:
        """Wait until every host of ``op["versions"]`` applied its version (for ever, saying
        so every ACK_TIMEOUT: the path is desired and persisted, an agent applies it when it
        can). Returns when that was (wall clock)."""
        wanted = {str(h): int(v) for h, v in (op.get("versions") or {}).items()}
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            async with transaction(self.ctx.sessions) as s:
                rows = await s.execute(
                    select(Host.id, Host.applied_version).where(Host.id.in_(list(wanted)))
                )
                applied = {str(h): int(v) for h, v in rows}
            late = sorted(h for h, v in wanted.items() if applied.get(h, v) < v)
            if not late:
                return time.time()
            if time.monotonic() > deadline:
                await self._record(
                    chain_id,
                    error=f"host(s) {', '.join(late)} did not apply the chain's flows within "
                    f"{ACK_TIMEOUT:.0f} s; still waiting",
                )
                deadline = time.monotonic() + ACK_TIMEOUT
            await asyncio.sleep(POLL)

    async def _timing(
        self, op: dict[str, Any], acked: float, committed: float | None
    ) -> dict[str, Any]:
        """How long the change took: ``switchover_ms`` from the decision to switch (the new
        path's additive flows in place on every host) to the LAST involved node's bundle
        commit (asked of each node: same clock on one machine; across machines it needs
        synchronised clocks), ``per_host_ms`` each node's (``per_host``: split into the time
        to reach the node's steering step and the bundle commit), ``prepare_ms`` healthy -> every
        host acked the additive flows, ``healthy_to_ack_ms`` healthy -> every host acked the
        switch, and ``switch_transaction_ms`` the switch's store transaction."""
        healthy, switched = float(op["healthy_at"]), float(op["switched_at"])
        versions = {str(h): int(v) for h, v in (op.get("versions") or {}).items()}
        result: dict[str, Any] = {
            "kind": op["kind"],
            "prepare_ms": round((switched - healthy) * 1000, 1),
            "healthy_to_ack_ms": round((acked - healthy) * 1000, 1),
            "switched_at": switched,  # wall clock: when the switch began (benchmarks)
            "flows_versions": versions,
            "finished": utcnow().isoformat(),
        }
        if committed is not None:
            result["switch_transaction_ms"] = round((committed - switched) * 1000, 1)
        commits = {h: c for h, v in versions.items() if (c := await self._committed(h, v))}
        names = await self._host_names(list(commits))
        if commits and len(commits) == len(versions):
            last = max(at for at, _ in commits.values())
            result["switchover_ms"] = round((last - switched) * 1000, 1)
        result["per_host_ms"] = {
            names.get(h, h): round((at - switched) * 1000, 1) for h, (at, _) in commits.items()
        }
        result["per_host"] = {  # where the time goes: controller -> node, then the bundle
            names.get(h, h): {
                "to_node_ms": round((received - switched) * 1000, 1),
                "commit_ms": round((at - received) * 1000, 1),
            }
            for h, (at, received) in commits.items()
            if received is not None
        }
        return result

    async def _committed(self, host_id: str, version: int) -> tuple[float, float | None] | None:
        """When the node committed the bundle of ``version`` (or a later one) and when that
        snapshot reached its steering step, if it says."""
        try:
            steer = (
                await self.ctx.nodes.call(host_id, "steering", {}, 5.0) if self.ctx.nodes else {}
            )
        except EdgecloudError as exc:
            log.info("could not ask the node when it switched: %s", exc)
            return None
        if steer and int(steer.get("version", 0)) >= version:
            received = steer.get("received")
            return float(steer["at"]), float(received) if received is not None else None
        return None

    async def _host_names(self, host_ids: list[str]) -> dict[str, str]:
        async with transaction(self.ctx.sessions) as s:
            rows = await s.execute(select(Host.id, Host.name).where(Host.id.in_(host_ids)))
            return {str(h): str(n) for h, n in rows}

    async def _retire(self, chain_id: str, op: dict[str, Any]) -> bool:
        """After a drain time (frames inside a leaving service or on an old hop tag still
        arrive), drop the old path's leftovers and delete the leaving services' stacks."""
        if _leftovers(op):
            await asyncio.sleep(DRAIN)
        for name in await chain_paths.finish_path(self.ctx, chain_id):
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


def _leftovers(op: dict[str, Any]) -> bool:
    """Whether the old path has hops the new one does not (flows to drain, then remove)."""
    new = {tuple(h) for h in op.get("new_hops", [])}
    return any(tuple(h) not in new for h in op.get("old_hops", []))


def _started(op: dict[str, Any]) -> float:
    return as_utc(dt.datetime.fromisoformat(str(op["started"]))).timestamp()
