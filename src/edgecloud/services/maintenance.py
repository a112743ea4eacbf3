"""Host maintenance: `host lock` empties a host by live migration, `host unlock` returns it.

A lock is refused up front, with the reason and nothing changed, when the other hosts cannot
take the host's VNFs (scheduler/evacuating.py: capacity, anti-affinity, PCI devices), when
one of them cannot migrate live (PCI passthrough, SR-IOV: migrate it with `--cold` first) or
is not running (only a running VNF migrates: start or delete it first). Otherwise the host is locked at once (the scheduler and the chain planner place
nothing new on it) and its evacuation is recorded on the host (``Host.maintenance``): the
maintenance reconciler (reconcile/maintenance.py) moves the VNFs one at a time through
services/migrations.py, recording each, and resumes there after a controller restart.
A migration that fails stops the evacuation (status ``failed``, with the reason, an event);
the host stays locked and `host lock` again retries. `host unlock` enables the host and stops
an evacuation under way after the migration in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict
from edgecloud.fm import alarming
from edgecloud.scheduler.evacuating import plan_evacuation
from edgecloud.scheduler.snapshots import ClusterSnapshot
from edgecloud.services import hosts, scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store import instances, repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Host, Instance, utcnow

EVACUATING, DONE, FAILED, CANCELLED = "evacuating", "done", "failed", "cancelled"


@dataclass(frozen=True)
class NextMove:
    """The VNF the evacuation moves next, or the migration it already started."""

    vnf: str
    migration_id: str | None = None  # set when resuming a migration started before


async def lock_host(ctx: ServiceContext, name: str) -> Host:
    """Lock ``name`` and start emptying it; Conflict (nothing changed) when it cannot be."""
    async with transaction(ctx.sessions) as s:
        host = await repository.by_name(s, Host, name, "host")
        if host.state == "locked" and evacuating(host):
            return host  # already under way
        placed = await placed_on(s, host)
        refusal = await why_not_emptied(s, host, placed)
        if refusal is not None:
            raise Conflict(f"host {name} cannot be emptied, so it was not locked: {refusal}")
        host.state = "locked"
        now = utcnow().isoformat()
        host.maintenance = {
            "operation": "lock",
            "status": EVACUATING if placed else DONE,
            "total": len(placed),
            "moved": [],
            "current": None,
            "error": None,
            "started": now,
            "finished": None if placed else now,
        }
        alarming.log_event(s, f"host={name}", f"locked; moving {len(placed)} VNF(s) to other hosts")
    ctx.notifier.host_maintenance(host.id)
    return host


async def unlock_host(ctx: ServiceContext, name: str) -> Host:
    """Return ``name`` to service; an evacuation under way stops after its current move."""
    async with transaction(ctx.sessions) as s:
        host = await repository.by_name(s, Host, name, "host")
        if host.state != "locked":
            raise Conflict(f"host {name} is not locked (it is {host.state})")
        host.state = "enabled"
        if evacuating(host):
            host.maintenance = {**_m(host), "status": CANCELLED, "finished": utcnow().isoformat()}
        alarming.log_event(s, f"host={name}", "unlocked: back in service")
    await hosts.requeue_unscheduled(ctx)
    return host


async def next_move(ctx: ServiceContext, host_id: str) -> NextMove | None:
    """What the evacuation of ``host_id`` does next; None when it has nothing left to do (and
    then it is marked done if it was evacuating)."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None or host.state != "locked" or not evacuating(host):
            return None
        current = _m(host).get("current")
        if current:
            return NextMove(str(current["vnf"]), current.get("migration"))
        placed = await placed_on(s, host)
        if not placed:
            host.maintenance = {**_m(host), "status": DONE, "finished": utcnow().isoformat()}
            alarming.log_event(s, f"host={host.name}", "lock done: the host is empty")
            return None
        return NextMove(placed[0].name)


async def started(ctx: ServiceContext, host_id: str, move: NextMove, migration_id: str) -> None:
    """Record the migration now carrying ``move`` (resumed after a restart)."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is not None and _status(host) in (EVACUATING, CANCELLED):
            host.maintenance = {
                **_m(host),
                "current": {"vnf": move.vnf, "migration": migration_id},
            }


async def finished(ctx: ServiceContext, host_id: str, vnf: str, error: str | None) -> None:
    """Record how the move of ``vnf`` ended; a failure stops the evacuation."""
    async with transaction(ctx.sessions) as s:
        host = await s.get(Host, host_id)
        if host is None:
            return
        m = {**_m(host), "current": None}
        if error is None:
            m["moved"] = [*m.get("moved", []), vnf]
        elif m.get("status") == EVACUATING:
            m.update(status=FAILED, error=f"vnf {vnf}: {error}", finished=utcnow().isoformat())
            alarming.log_event(
                s,
                f"host={host.name}",
                f"lock stopped, the host is not empty: vnf {vnf} did not move: {error}",
                severity="major",
            )
        host.maintenance = m


async def resume_all(ctx: ServiceContext) -> list[str]:
    """Hosts whose evacuation was under way (after a controller restart)."""
    async with transaction(ctx.sessions) as s:
        every = await repository.all_of(s, Host)
        return [h.id for h in every if h.state == "locked" and evacuating(h)]


async def placed_on(s: AsyncSession, host: Host) -> list[Instance]:
    """The VNFs placed on ``host`` (not being deleted)."""
    return [i for i in await instances.on_host(s, host.id) if i.desired_state != "deleted"]


async def why_not_emptied(
    s: AsyncSession,
    host: Host,
    placed: list[Instance] | None = None,
    snapshot: ClusterSnapshot | None = None,
) -> str | None:
    """Why the VNFs on ``host`` could not all be moved elsewhere by live migration now (one
    using PCI devices or not running; no room for one on the other hosts), or None when they
    could (also `upgrade check`'s test for every host, from one ``snapshot`` of the site with
    every anti-affinity group in it)."""
    placed = await placed_on(s, host) if placed is None else placed
    pinned = [i.name for i in placed if _has_devices(i)]
    if pinned:
        return (
            f"vnf {', '.join(pinned)} uses host PCI devices and cannot migrate live "
            "(move it with `vnf migrate --cold` first)"
        )
    idle = [f"{i.name} ({i.power_state or i.status})" for i in placed if not _running(i)]
    if idle:
        return (
            f"vnf {', '.join(idle)} is not running and only a running VNF migrates "
            "(start or delete it first)"
        )
    requests = [scheduling.placement_request(i) for i in placed]
    if snapshot is None:
        groups = {r.anti_affinity_group for r in requests if r.anti_affinity_group}
        snapshot = await scheduling.cluster_snapshot(s, groups)
    plan = plan_evacuation(snapshot, host.name, requests)
    if plan.feasible:
        return None
    return "; ".join(f"{vnf}: {why}" for vnf, why in sorted(plan.failures.items()))


def _running(instance: Instance) -> bool:
    return instance.desired_state == "running" and instance.power_state == "running"


def _has_devices(instance: Instance) -> bool:
    return any(v.hostdev_address for v in instance.vnics)


def _m(host: Host) -> dict[str, Any]:
    return dict(host.maintenance or {})


def evacuating(host: Host) -> bool:
    """Whether ``host`` is being emptied for maintenance now."""
    return _status(host) == EVACUATING


def _status(host: Host) -> str | None:
    return _m(host).get("status")
