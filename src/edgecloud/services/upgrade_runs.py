"""Orchestrated upgrades (issue 12): ``upgrade start|show|abort|complete``, and the leader's
step that moves one along (``advance``, every second: controller/leader_work.py).

StarlingX's deploy lifecycle, small: ``start`` runs ``upgrade check`` and refuses on a
failure, then records the upgrade and one step per controller and host, in the order the
check planned (upgrades/batching.py: controllers one at a time, the leader last; hosts in
batches of at most ``max_parallel``). Then:

1. **controllers**: each controller restarts itself into the release when every controller
   before it runs it (controller/self_upgrade.py: stage the signed package from the store,
   select it, re-execute in the same process). The leader marks a step done when that
   controller's row says the release. The site is in compatibility mode meanwhile: a
   controller at N+1 serves agents at N (protocol/messages.py negotiation).
2. **hosts**: every host stages the release (staging.py via services/node_software.py),
   then batch by batch each agent restarts into it; a host is done when its hello says the
   release. In service, VMs run on throughout (the agent re-executes and adopts them). A
   release whose package reboots hosts first locks each host of the batch and waits until
   its VNFs moved live to other hosts (services/maintenance.py, as `host lock`), then
   restarts it, then unlocks it once it runs the release (a host locked before the upgrade
   stays locked). On one machine the reboot is the agent's restart: the node's hypervisor
   daemon is not restarted.
3. **activated**: everything runs the release. ``complete`` ends it (the point of no return:
   the next upgrade may contract the schema); ``abort`` rolls back: hosts first, then
   controllers, each restarting into the release installed with it.

A step that does not come back within ``RESTART_DEADLINE``, a host that cannot stage, or (with
``stop_on_alarm``) a critical or major alarm raised meanwhile stops the upgrade: state
``failed`` with the reason; ``start`` again (same release) resumes it, ``abort`` rolls back.
Every step is idempotent, so a leader that changes (or restarts into the release) picks the
upgrade up where the store says it is. Hosts enrolled after the start join it, in batches
after the last one (``_newcomers``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, EdgecloudError, NotConnected, NotFound
from edgecloud.services import maintenance, node_software, software, upgrades
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers, repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Alarm, Host, Upgrade, UpgradeStep, as_utc, utcnow

log = logging.getLogger(__name__)
ACTIVE = ("controllers", "hosts", "aborting")  # the leader moves these along
OPEN = (*ACTIVE, "activated", "failed")  # not finished: one upgrade at a time
RESTART_DEADLINE = 90.0  # seconds a controller or host may take to come back at a release
EMPTY_DEADLINE = 1800.0  # seconds a host's VNFs may take to move away (one by one, live)
STAGING_AT_ONCE = 4  # hosts fetching and unpacking the package at once
SERIOUS = ("critical", "major")


def process_of(controller_id: str) -> str:
    """A controller's lasting name (its id less the start's tag: controller/site.py
    ``controller_name``), which it keeps when it restarts or re-executes into a release."""
    return controller_id.split("/", 1)[0]


async def start(
    ctx: ServiceContext, to: str, max_parallel: int = 1, stop_on_alarm: bool = False
) -> Upgrade:
    """Start an upgrade to ``to`` (or resume a failed one to it); Conflict saying why not."""
    async with transaction(ctx.sessions) as s:
        underway = await _open(s)
        if underway is not None:
            if underway.state == "failed" and underway.to_release == to:
                _resume(underway)
                log.warning("upgrade to %s resumed", to)
                wake(ctx)
                return underway
            raise Conflict(
                f"an upgrade to {underway.to_release} is {underway.state}: " + _what_next(underway)
            )
    found = await upgrades.check(ctx, to, False, max_parallel)  # the package says reboot
    verdict = found.assessment
    if verdict.result == "failure":
        failed = [f"{c.name}: {c.detail}" for c in verdict.checks if c.result == "failure"]
        raise Conflict(f"cannot upgrade to {to}: " + "; ".join(failed))
    package = await software.get(ctx, verdict.to)
    async with transaction(ctx.sessions) as s:
        if await _open(s) is not None:
            raise Conflict("another upgrade started meanwhile (edgecloud upgrade show)")
        hosts = {h.name: h.id for h in await repository.all_of(s, Host)}
        upgrade = Upgrade(
            to_release=verdict.to,
            from_release=verdict.current,
            state="controllers",
            max_parallel=max_parallel,
            stop_on_alarm=stop_on_alarm,
            reboot=package.reboot_required,
        )
        upgrade.steps = [
            UpgradeStep(kind="controller", target=process_of(c), name=c, batch=turn)
            for turn, c in enumerate(found.plan.controllers)
        ] + [
            UpgradeStep(kind="host", target=hosts[name], name=name, batch=turn)
            for turn, batch in enumerate(found.plan.batches)
            for name in batch
        ]
        s.add(upgrade)
    log.warning("upgrade %s -> %s started", upgrade.from_release, upgrade.to_release)
    wake(ctx)
    return upgrade


async def latest(ctx: ServiceContext) -> Upgrade:
    """The newest upgrade, finished or not, with its steps."""
    async with transaction(ctx.sessions) as s:
        found = await s.scalar(select(Upgrade).order_by(Upgrade.created_at.desc()).limit(1))
    if found is None:
        raise NotFound("no upgrade has been started on this site (edgecloud upgrade start)")
    return found


async def abort(ctx: ServiceContext) -> Upgrade:
    """Roll back the upgrade under way (hosts first, then controllers)."""
    async with transaction(ctx.sessions) as s:
        underway = await _underway(s, "abort")
        if underway.state != "aborting":
            underway.state, underway.error = "aborting", None
            underway.updated_at = utcnow()
            for step in underway.steps:
                if step.state == "failed":
                    step.error = None
    log.warning("upgrade to %s aborted: rolling back", underway.to_release)
    wake(ctx)
    return underway


async def complete(ctx: ServiceContext) -> Upgrade:
    """End an activated upgrade: from here on it cannot be rolled back."""
    async with transaction(ctx.sessions) as s:
        underway = await _underway(s, "complete")
        if underway.state != "activated":
            raise Conflict(
                f"the upgrade to {underway.to_release} is {underway.state}: it completes once "
                "every controller and host runs it (state activated)"
            )
        underway.state = "completed"
        underway.updated_at = underway.finished_at = utcnow()
    log.warning("upgrade to %s completed", underway.to_release)
    return underway


@dataclass
class _Work:
    """What the leader does outside the transaction after one look: host steps to stage,
    to restart into the release, to restart back into the installed one."""

    stage: list[UpgradeStep] = field(default_factory=list)
    lock: list[UpgradeStep] = field(default_factory=list)  # lock and empty (reboot)
    restart: list[UpgradeStep] = field(default_factory=list)
    unlock: list[UpgradeStep] = field(default_factory=list)  # back in service
    revert: list[UpgradeStep] = field(default_factory=list)


WAKEUPS = ("upgrade-leader", "upgrade-controller")  # the loops that follow an upgrade


def wake(ctx: ServiceContext) -> None:
    """Tell this process's upgrade loops (the leader's, its own controller's) to look now."""
    for name in WAKEUPS:
        ctx.wakeup(name).set()


async def advance(ctx: ServiceContext) -> bool:
    """One step of the upgrade under way, if any (the leader, every second while there is
    one); whether there is one."""
    now = utcnow()
    async with transaction(ctx.sessions) as s:
        upgrade = await s.scalar(select(Upgrade).where(Upgrade.state.in_(ACTIVE)).limit(1))
        if upgrade is None:
            return False
        hosts = {h.id: h for h in await repository.all_of(s, Host)}
        running = {
            process_of(r.id): r.release
            for r in await controllers.all_known(s)
            if controllers.is_up(r, now) or r.id == ctx.settings.controller_id
        }
        work = _Work()
        if upgrade.state == "controllers":
            _controllers_forward(upgrade, running, now)
        elif upgrade.state == "hosts":
            await _hosts_forward(s, upgrade, hosts, now, work)
        else:
            _backward(upgrade, hosts, running, now, work)
        upgrade_id, to = upgrade.id, upgrade.to_release
    await _stage(ctx, upgrade_id, to, work.stage)
    for step in work.unlock:  # first: the next batch's VNFs may move onto it
        await _unlock(ctx, upgrade_id, step)
    for step in work.lock:
        await _lock(ctx, upgrade_id, step)
    for step in work.restart:
        await _restart(ctx, upgrade_id, step, to)
    for step in work.revert:
        await _restart(ctx, upgrade_id, step, None)
    return True


def _controllers_forward(
    upgrade: Upgrade, running: dict[str, str | None], now: dt.datetime
) -> None:
    steps = [st for st in upgrade.steps if st.kind == "controller"]
    for step in steps:
        if step.state == "done":
            continue
        if running.get(step.target) == upgrade.to_release:
            _set(step, "done", now)
        elif step.state == "restarting" and _overdue(step, now):
            _fail(upgrade, step, f"controller {step.name} did not come back at "
                  f"{upgrade.to_release} within {RESTART_DEADLINE:g} s", now)  # fmt: skip
            return
        elif step.state == "failed":
            upgrade.state = "failed"
            upgrade.error = upgrade.error or step.error
            return
    if all(st.state == "done" for st in steps):
        upgrade.state, upgrade.updated_at = "hosts", now
        log.warning("upgrade to %s: controllers done, hosts next", upgrade.to_release)


async def _hosts_forward(
    s: AsyncSession, upgrade: Upgrade, hosts: dict[str, Host], now: dt.datetime, work: _Work
) -> None:
    _newcomers(upgrade, hosts, now)
    steps = [st for st in upgrade.steps if st.kind == "host"]
    for step in steps:
        host = hosts.get(step.target)
        if step.state == "done":
            continue
        if host is None:
            step.error = "the host was deleted"
            _set(step, "done", now)
        elif host.release == upgrade.to_release and host.availability == "online":
            if step.locked and host.state == "locked":
                work.unlock.append(step)  # emptied, restarted: back in service
            _set(step, "done", now)
        elif step.state == "restarting" and _overdue(step, now):
            _fail(upgrade, step, f"host {step.name} did not come back at "
                  f"{upgrade.to_release} within {RESTART_DEADLINE:g} s", now)  # fmt: skip
            return
        elif step.state == "emptying" and _emptying_stopped(upgrade, step, host, now):
            return
    if upgrade.stop_on_alarm:
        raised = await s.scalar(
            select(Alarm).where(
                Alarm.state == "active",
                Alarm.severity.in_(SERIOUS),
                Alarm.raised_at > upgrade.created_at,
            )
        )
        if raised is not None:
            _fail(upgrade, None, f"stopped on alarm {raised.alarm_id} ({raised.severity}) on "
                  f"{raised.entity}: {raised.reason}", now)  # fmt: skip
            return
    left = [st for st in steps if st.state != "done"]
    if not left:
        upgrade.state, upgrade.updated_at = "activated", now
        log.warning("upgrade to %s activated: complete or abort it", upgrade.to_release)
        return
    for step in left:
        if step.state == "pending":
            host = hosts[step.target]
            if host.availability == "online":
                work.stage.append(step)
            elif _overdue(step, now, since=upgrade.updated_at):  # (a controller restarted)
                _fail(upgrade, step, f"host {step.name} is {host.availability}", now)
                return
    turn = min(st.batch for st in left)
    for step in left:
        if step.batch != turn:
            continue
        host = hosts[step.target]
        if step.state == "staged" and upgrade.reboot and host.state != "locked":
            _set(step, "emptying", now)  # lock it, its VNFs move away; restarted when empty
            step.locked = True
            work.lock.append(step)
        elif step.state == "staged" or (step.state == "emptying" and _emptied(host)):
            _set(step, "restarting", now)
            work.restart.append(step)


def _newcomers(upgrade: Upgrade, hosts: dict[str, Host], now: dt.datetime) -> None:
    """Hosts enrolled since the upgrade started join it: steps in batches of at most
    ``max_parallel`` after the last one (a new host runs no VNF yet, so no anti-affinity
    group or chain limits its batch); one already at the release is done at the next look."""
    covered = {st.target for st in upgrade.steps if st.kind == "host"}
    newcomers = sorted((h for h in hosts.values() if h.id not in covered), key=lambda h: h.name)
    if not newcomers:
        return
    first = max((st.batch for st in upgrade.steps if st.kind == "host"), default=-1) + 1
    for k, host in enumerate(newcomers):
        upgrade.steps.append(
            UpgradeStep(
                kind="host",
                target=host.id,
                name=host.name,
                batch=first + k // max(upgrade.max_parallel, 1),
                state="pending",
                locked=False,
                updated_at=now,
            )
        )
    log.warning(
        "upgrade to %s: %s joined it (enrolled after its start)",
        upgrade.to_release,
        ", ".join(h.name for h in newcomers),
    )


def _backward(
    upgrade: Upgrade,
    hosts: dict[str, Host],
    running: dict[str, str | None],
    now: dt.datetime,
    work: _Work,
) -> None:
    """Aborting: every host back at the release installed with it, then every controller
    (each restarts itself: controller/self_upgrade.py)."""
    host_steps = [st for st in upgrade.steps if st.kind == "host"]
    for step in host_steps:
        host = hosts.get(step.target)
        if step.state == "reverted":
            continue
        if host is None or (host.release != upgrade.to_release and host.availability == "online"):
            if host is not None and step.locked and host.state == "locked":
                work.unlock.append(step)  # the upgrade locked it: back in service
            _set(step, "reverted", now)
        elif step.state != "reverting":
            _set(step, "reverting", now)
            work.revert.append(step)
        elif _overdue(step, now):
            _fail(upgrade, step, f"host {step.name} did not come back at its installed release "
                  f"within {RESTART_DEADLINE:g} s: abort again to retry", now)  # fmt: skip
            return
    if any(st.state != "reverted" for st in host_steps):
        return
    controller_steps = [st for st in upgrade.steps if st.kind == "controller"]
    for step in controller_steps:
        if step.state != "reverted" and running.get(step.target, "") != upgrade.to_release:
            _set(step, "reverted", now)
    since = max(st.updated_at for st in controller_steps) if controller_steps else now
    back = all(  # the controllers' restarts are over: each host said hello again since
        _back_since(hosts[st.target], since) for st in host_steps if st.target in hosts
    )
    if back and all(st.state == "reverted" for st in controller_steps):
        upgrade.state = "aborted"
        upgrade.updated_at = upgrade.finished_at = now
        log.warning("upgrade to %s aborted: the site runs its earlier release", upgrade.to_release)


def _back_since(host: Host, since: dt.datetime) -> bool:
    seen = host.last_seen_at
    return host.availability == "online" and seen is not None and as_utc(seen) >= since


def _emptied(host: Host) -> bool:
    """The host is locked and its evacuation is over (services/maintenance.py)."""
    return host.state == "locked" and (host.maintenance or {}).get("status") == maintenance.DONE


def _emptying_stopped(upgrade: Upgrade, step: UpgradeStep, host: Host, now: dt.datetime) -> bool:
    """Fail the upgrade (True) when emptying ``host`` failed, was stopped, or takes too long."""
    status = (host.maintenance or {}).get("status")
    if host.state != "locked" or status == maintenance.CANCELLED:
        why = f"host {step.name} was unlocked while it was being emptied"
    elif status == maintenance.FAILED:
        error = (host.maintenance or {}).get("error")
        why = f"host {step.name} could not be emptied: {error}"
    elif (now - step.updated_at).total_seconds() > EMPTY_DEADLINE:
        why = f"host {step.name} was not emptied within {EMPTY_DEADLINE:g} s"
    else:
        return False
    _fail(upgrade, step, why, now)
    return True


async def _lock(ctx: ServiceContext, upgrade_id: str, step: UpgradeStep) -> None:
    try:
        await maintenance.lock_host(ctx, step.name)
    except EdgecloudError as exc:
        await _record(ctx, upgrade_id, step.id, "failed", str(exc))


async def _unlock(ctx: ServiceContext, upgrade_id: str, step: UpgradeStep) -> None:
    try:
        await maintenance.unlock_host(ctx, step.name)
    except EdgecloudError as exc:  # unlocked meanwhile by someone: nothing to do
        log.info("host %s was not unlocked after its upgrade: %s", step.name, exc)


async def _stage(ctx: ServiceContext, upgrade_id: str, to: str, steps: list[UpgradeStep]) -> None:
    """Stage the release on ``steps``' hosts, a few at a time; each step staged or failed."""
    turns = asyncio.Semaphore(STAGING_AT_ONCE)

    async def one(step: UpgradeStep) -> None:
        async with turns:
            try:
                await node_software.stage(ctx, step.name, to)
            except NotConnected as exc:  # reconnecting (a controller restarted): next round
                log.info("host %s not staged yet: %s", step.name, exc)
                return
            except EdgecloudError as exc:
                await _record(ctx, upgrade_id, step.id, "failed", f"staging failed: {exc}")
                return
            await _record(ctx, upgrade_id, step.id, "staged", None)

    await asyncio.gather(*(one(step) for step in steps))


async def _restart(
    ctx: ServiceContext, upgrade_id: str, step: UpgradeStep, release: str | None
) -> None:
    try:
        await node_software.restart(ctx, step.name, release)
    except NotConnected as exc:  # reconnecting: asked again at the next round
        log.info("host %s not restarted yet: %s", step.name, exc)
        await _record(ctx, upgrade_id, step.id, "staged" if release else "done", None)
    except EdgecloudError as exc:
        await _record(ctx, upgrade_id, step.id, "failed", f"restart failed: {exc}")


async def _record(
    ctx: ServiceContext, upgrade_id: str, step_id: str, state: str, error: str | None
) -> None:
    """A step's outcome; a failed one stops the upgrade, naming it."""
    now = utcnow()
    async with transaction(ctx.sessions) as s:
        step = await s.get(UpgradeStep, step_id)
        upgrade = await s.get(Upgrade, upgrade_id)
        if step is None or upgrade is None:
            return
        if state == "failed":
            _fail(upgrade, step, f"{step.kind} {step.name}: {error}", now)
        else:
            _set(step, state, now)


def _fail(upgrade: Upgrade, step: UpgradeStep | None, why: str, now: dt.datetime) -> None:
    if step is not None:
        step.error = why
        _set(step, "failed", now)
    if upgrade.state != "aborting":
        upgrade.state = "failed"
    upgrade.error, upgrade.updated_at = why, now
    log.warning("upgrade to %s stopped: %s", upgrade.to_release, why)


def _resume(upgrade: Upgrade) -> None:
    """A failed upgrade started again: its failed steps are tried again."""
    now = utcnow()
    for step in upgrade.steps:
        if step.state == "failed":
            step.error = None
            _set(step, "pending", now)
    controllers_left = any(st.kind == "controller" and st.state != "done" for st in upgrade.steps)
    upgrade.state = "controllers" if controllers_left else "hosts"
    upgrade.error, upgrade.updated_at = None, now


def _set(step: UpgradeStep, state: str, now: dt.datetime) -> None:
    step.state, step.updated_at = state, now


def _overdue(step: UpgradeStep, now: dt.datetime, since: dt.datetime | None = None) -> bool:
    """Whether ``step`` has waited longer than RESTART_DEADLINE (from its last change, or
    from ``since`` when that is later)."""
    start = max(step.updated_at, since) if since is not None else step.updated_at
    return (now - start).total_seconds() > RESTART_DEADLINE


def _what_next(upgrade: Upgrade) -> str:
    if upgrade.state == "activated":
        return "complete it (edgecloud upgrade complete) or abort it first"
    if upgrade.state == "failed":
        return f"it stopped ({upgrade.error}): start it again to resume, or abort it"
    return "wait for it (edgecloud upgrade show), or abort it"


async def _underway(s: AsyncSession, to_do: str) -> Upgrade:
    """The open upgrade; Conflict saying there is nothing ``to_do`` without one."""
    underway = await _open(s)
    if underway is None:
        raise Conflict(f"no upgrade is under way: nothing to {to_do}")
    return underway


async def _open(s: AsyncSession) -> Upgrade | None:
    return await s.scalar(select(Upgrade).where(Upgrade.state.in_(OPEN)).limit(1))
