"""Migrations: moving a running VNF to another host, live (or cold when asked).

``start_migration`` checks the request and records a migration (status queued); the migration
reconciler (reconcile/migrations.py) drives it: the destination prepares (its snapshot shows
the instance as incoming), the source's agent moves the guest (its snapshot shows it as
outgoing), then one transaction moves the instance to the destination. While a migration is
marked, the guest may run on either host (store/vnf_migrations.py ``instance_host_ids``): the
chains through it feed both copies (services/chain_paths.py ``instance_moved``, called by every
transition here), and the reconciler waits until every host those flows touch has applied
them before the guest moves. Snapshot marks are built here for services/desired.py; what the destination reports
of an incoming instance is recorded by ``record_progress`` (called from services/reports.py).

Refusals are sentences: a VNF not running or already migrating, a destination that is the
source, unknown, not enabled or offline, without room, breaking anti-affinity, or without an
internal address; live migration of a VNF with host PCI devices (pass-through, SR-IOV VFs).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput, NotFound, NoValidHost
from edgecloud.fm import alarming
from edgecloud.memory_copy import COPY_MODES, DEFAULT_MAX_DOWNTIME_MS, MAX_DOWNTIME_RANGE
from edgecloud.protocol.schemas import InstanceReport
from edgecloud.scheduler.placing import place
from edgecloud.scheduler.snapshots import ClusterSnapshot
from edgecloud.services import chain_paths, scheduling
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository, site_locks, vnf_migrations
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import Host, Instance, Migration, utcnow

LOCK = "migrations"  # validation and creation, one at a time (capacity is checked)
DEFAULT_WAIT = 600.0


async def start_migration(
    ctx: ServiceContext,
    vnf_name: str,
    to_host: str | None = None,
    cold: bool = False,
    memory_copy: str = "auto",
    max_downtime_ms: int | None = None,
) -> Migration:
    """Check and record a migration of VNF ``vnf_name`` (to ``to_host``, or where the
    scheduler chooses; live with its memory copied ``memory_copy``, one of COPY_MODES); the
    migration reconciler runs it. Refusals raise with a sentence."""
    if memory_copy not in COPY_MODES:
        raise InvalidInput(
            f"memory_copy must be one of {', '.join(COPY_MODES)}", field="memory_copy"
        )
    if cold and memory_copy != "auto":
        raise InvalidInput(
            "a cold migration copies no memory: leave memory_copy out", field="memory_copy"
        )
    low, high = MAX_DOWNTIME_RANGE
    if cold and max_downtime_ms is not None:
        raise InvalidInput(
            "a cold migration stops the guest: leave max_downtime_ms out", field="max_downtime_ms"
        )
    if max_downtime_ms is not None and not low <= max_downtime_ms <= high:
        raise InvalidInput(f"max_downtime_ms must be from {low} to {high}", field="max_downtime_ms")
    async with ctx.lock(LOCK), transaction(ctx.sessions) as s:
        await site_locks.hold(s, site_locks.PLACEMENT)  # one placement at a time, site-wide
        instance = await repository.by_name(s, Instance, vnf_name, "VNF")
        source = await _check_movable(s, instance, cold)
        destination = await _destination(s, instance, source, to_host, cold)
        migration = Migration(
            instance_id=instance.id,
            instance_name=instance.name,
            source_host_id=source.id,
            destination_host_id=destination.id,
            kind="cold" if cold else "live",
            memory_copy=memory_copy,
            max_downtime_ms=max_downtime_ms or DEFAULT_MAX_DOWNTIME_MS,
            status="queued",
            stats={},
            progress={},
        )
        s.add(migration)
        await s.flush()
        alarming.log_event(
            s,
            f"vnf={instance.name}",
            f"{migration.kind} migration {migration.id[:8]} from {source.name} to "
            f"{destination.name} started",
        )
        await s.refresh(migration)
    ctx.notifier.migration_changed(migration.id)
    return migration


async def get_migration(ctx: ServiceContext, migration_id: str) -> Migration:
    async with reading(ctx.sessions) as s:
        found = await s.get(Migration, migration_id)
        if found is None:
            raise NotFound(f"no migration with id {migration_id!r}")
        return found


async def list_migrations(ctx: ServiceContext, limit: int = 100) -> list[Migration]:
    async with reading(ctx.sessions) as s:
        return await vnf_migrations.recent(s, limit)


async def wait_for_migration(
    ctx: ServiceContext, migration_id: str, timeout: float = DEFAULT_WAIT, poll: float = 0.2
) -> Migration:
    """The migration once finished (done or failed); TimeoutError after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        migration = await get_migration(ctx, migration_id)
        if migration.status not in vnf_migrations.ACTIVE:
            return migration
        if loop.time() > deadline:
            raise TimeoutError(f"migration {migration_id} still {migration.status}")
        await asyncio.sleep(poll)


# snapshot marks and reports --------------------------------------------------------------------
async def snapshot_marks(
    session: AsyncSession, host: Host
) -> tuple[dict[str, dict[str, Any]], list[tuple[Instance, dict[str, Any]]]]:
    """(mark per instance placed on ``host`` that migrates out, [(instance, mark)] of those
    migrating in): what the host's desired snapshot says of its migrations."""
    outgoing: dict[str, dict[str, Any]] = {}
    incoming: list[tuple[Instance, dict[str, Any]]] = []
    for m in await vnf_migrations.marked_on(session, host.id):
        if m.source_host_id == host.id:
            outgoing[m.instance_id] = {
                "id": m.id,
                "kind": m.kind,
                "role": "outgoing",
                "destination": {
                    "host": m.destination_host.name,
                    "address": m.destination_host.address,
                },
            }
        else:
            instance = await session.get(Instance, m.instance_id)
            if instance is not None:
                mark = {
                    "id": m.id,
                    "kind": m.kind,
                    "role": "incoming",
                    "source": m.source_host.name,
                }
                incoming.append((instance, mark))
    return outgoing, incoming


async def record_progress(
    session: AsyncSession, host_id: str, seen: dict[str, InstanceReport]
) -> None:
    """What a destination reports of instances migrating in (prepared placement, power)."""
    for entry in seen.values():
        reported = entry.migration
        if reported is None or reported.id is None:
            continue
        migration = await session.get(Migration, reported.id)
        if migration is None or migration.destination_host_id != host_id:
            continue
        progress = {
            "prepared": reported.prepared,
            "placement": reported.placement,
            "power": entry.power,
            "boot_id": entry.boot_id,
            "error": entry.error,
            "versions": (migration.progress or {}).get("versions", {}),
        }
        if migration.progress != progress:
            migration.progress = progress


# transitions (reconcile/migrations.py) -----------------------------------------------------
async def set_status(ctx: ServiceContext, migration_id: str, status: str) -> Migration:
    """Move an unfinished migration to ``status``, bumping both hosts' desired versions (the
    marks in their snapshots follow the status)."""
    async with transaction(ctx.sessions) as s:
        migration = await _unfinished(s, migration_id)
        migration.status = status
        await _bump(s, migration)
    return migration


async def finish(ctx: ServiceContext, migration_id: str, stats: dict[str, Any]) -> Migration:
    """The guest runs on the destination: ONE transaction moves the instance there, records
    the statistics and bumps both hosts (the source forgets it, the destination adopts it)."""
    async with transaction(ctx.sessions) as s:
        migration = await _unfinished(s, migration_id)
        await move_instance(
            s,
            migration,
            stats,
            f"{migration.kind} migration {migration.id[:8]} to "
            f"{migration.destination_host.name} done{_figures(stats)}",
        )
    return migration


async def move_instance(
    s: AsyncSession, migration: Migration, stats: dict[str, Any], event: str
) -> None:
    """The one way an instance changes host, in the caller's transaction: the instance is
    placed on the destination, the migration is done with ``stats``, both hosts (and every
    host of the chains through it) are bumped, ``event`` is logged for the VNF. A migration's
    end (``finish``) and a failed host's recovery (services/recovery.py) both use it."""
    instance = await s.get(Instance, migration.instance_id)
    if instance is not None:
        instance.host_id = migration.destination_host_id
    migration.status, migration.stats, migration.finished_at = "done", stats, utcnow()
    await _bump(s, migration)
    alarming.log_event(s, f"vnf={migration.instance_name}", event)


async def fail(ctx: ServiceContext, migration_id: str, reason: str) -> Migration:
    """The migration failed: the VNF stays where it was; both hosts drop the marks (the
    destination removes what it prepared); an event says why."""
    async with transaction(ctx.sessions) as s:
        migration = await _unfinished(s, migration_id)
        migration.status, migration.error, migration.finished_at = "failed", reason, utcnow()
        await _bump(s, migration)
        alarming.log_event(
            s,
            f"vnf={migration.instance_name}",
            f"{migration.kind} migration {migration.id[:8]} to {migration.destination_host.name} "
            f"failed, the VNF stays on {migration.source_host.name}: {reason}",
            severity="major",
        )
    return migration


async def versions_applied(ctx: ServiceContext, migration_id: str) -> bool:
    """Whether every host the last transition changed (both ends, and the hosts of chains
    through the instance) has applied it: the steering feeds the copy that will run."""
    async with transaction(ctx.sessions) as s:
        migration = await s.get(Migration, migration_id)
        wanted = dict((migration.progress or {}).get("versions") or {}) if migration else {}
        for host_id, version in wanted.items():
            host = await s.get(Host, host_id)
            if host is not None and host.applied_version < int(version):
                return False
    return True


async def unfinished(ctx: ServiceContext) -> list[str]:
    """Ids of the migrations to resume (after a controller restart)."""
    async with transaction(ctx.sessions) as s:
        return [m.id for m in await vnf_migrations.active(s)]


# checks ------------------------------------------------------------------------------------
async def _check_movable(s: AsyncSession, instance: Instance, cold: bool) -> Host:
    if instance.host is None:
        raise Conflict(f"VNF {instance.name} has no host yet: only a running VNF migrates")
    devices = [v.hostdev_address for v in instance.vnics if v.hostdev_address]
    if devices and not cold:
        raise Conflict(
            f"VNF {instance.name} has host PCI devices ({', '.join(devices)}), which cannot "
            "move live: migrate it cold (stopped, then started on the destination)"
        )
    if instance.desired_state != "running" or instance.power_state != "running":
        raise Conflict(
            f"VNF {instance.name} is {instance.power_state or instance.status} on "
            f"{instance.host.name}, not running: only a running VNF migrates"
        )
    if await vnf_migrations.active_for(s, instance.id) is not None:
        raise Conflict(f"VNF {instance.name} is being migrated already")
    return instance.host


async def _destination(
    s: AsyncSession, instance: Instance, source: Host, to_host: str | None, cold: bool
) -> Host:
    request = scheduling.placement_request(instance)
    named = [] if request.anti_affinity_group is None else [request.anti_affinity_group]
    snapshot = await with_incoming(s, await scheduling.cluster_snapshot(s, named))
    others = tuple(h for h in snapshot.hosts if h.name != source.name)
    if to_host is not None:
        if to_host == source.name:
            raise InvalidInput(f"VNF {instance.name} is on host {to_host} already", "host")
        host = await repository.find_by_name(s, Host, to_host)
        if host is None:
            raise NotFound(f"no host named {to_host!r}")
        others = tuple(h for h in others if h.name == to_host)
    try:
        chosen = await repository.by_name(
            s, Host, place(ClusterSnapshot(others), request).host, "host"
        )
    except NoValidHost as exc:
        where = f"host {to_host} cannot" if to_host else "no other host can"
        raise Conflict(f"{where} take VNF {instance.name}: {exc}") from exc
    if not cold and not chosen.address:
        raise Conflict(
            f"host {chosen.name} has no internal address (edgecloud agent --address IP): a live "
            "migration needs one"
        )
    return chosen


async def with_incoming(s: AsyncSession, snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The snapshot with what unfinished migrations will bring to their destinations."""
    arriving: dict[str, list[Instance]] = {}
    for m in await vnf_migrations.active(s):
        instance = await s.get(Instance, m.instance_id)
        if instance is not None:
            arriving.setdefault(m.destination_host.name, []).append(instance)
    hosts = []
    for view in snapshot.hosts:
        extra = arriving.get(view.name, [])
        hosts.append(
            dataclasses.replace(
                view,
                used_vcpus=view.used_vcpus + sum(i.flavor.vcpus for i in extra),
                used_memory_mib=view.used_memory_mib + sum(i.flavor.memory_mib for i in extra),
                used_disk_gib=view.used_disk_gib + sum(i.flavor.disk_gib for i in extra),
                groups=view.groups
                | {i.anti_affinity_group for i in extra if i.anti_affinity_group},
            )
        )
    return ClusterSnapshot(tuple(hosts))


async def _unfinished(s: AsyncSession, migration_id: str) -> Migration:
    migration = await s.get(Migration, migration_id)
    if migration is None:
        raise NotFound(f"no migration with id {migration_id!r}")
    if migration.status not in vnf_migrations.ACTIVE:
        raise Conflict(f"migration {migration_id} is {migration.status} already")
    return migration


async def _bump(s: AsyncSession, migration: Migration) -> None:
    """Both hosts' snapshots follow the status; so do the flows of every chain through the
    instance (on every host they touch). The versions to await are kept on the migration."""
    await s.flush()  # the status (and the instance's host) as instance_moved must see them
    hosts = (migration.source_host_id, migration.destination_host_id)
    versions = await chain_paths.instance_moved(s, migration.instance_id, hosts)
    migration.progress = {**(migration.progress or {}), "versions": versions}


def _figures(stats: dict[str, Any]) -> str:
    parts = []
    if stats.get("downtime_ms") is not None:
        parts.append(f"downtime {float(stats['downtime_ms']):.0f} ms")
    if stats.get("total_ms") is not None:
        parts.append(f"total {float(stats['total_ms']) / 1000:.1f} s")
    return f" ({', '.join(parts)})" if parts else ""
