"""/v1/upgrade: whether the site can upgrade to a release (`upgrade check`), before anything
changes; the orchestrated upgrade (start, show, abort, complete: services/upgrade_runs.py)
(issue 12)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import (
    UpgradeCheckItem,
    UpgradeCheckOut,
    UpgradeOut,
    UpgradePlanOut,
    UpgradeStart,
    UpgradeStepOut,
)
from edgecloud.services import upgrade_runs, upgrades
from edgecloud.store.models import Upgrade
from edgecloud.upgrades.releases import PATTERN

router = APIRouter(prefix="/v1/upgrade", tags=["upgrades"])


@router.get("/check")
async def check_upgrade(
    ctx: Ctx,
    to: Annotated[str, Query(pattern=PATTERN, description="The release to upgrade to, e.g. 0.3.0")],
    reboot: Annotated[
        bool, Query(description="The release reboots hosts: each must be emptied first.")
    ] = False,
    max_parallel: Annotated[
        int, Query(ge=1, le=1000, description="Hosts upgraded at once (the plan's batches).")
    ] = 1,
) -> UpgradeCheckOut:
    """Every check (release, upgrade in progress, controllers, hosts, alarms, room to empty
    hosts) with its result, and the order the upgrade would take; nothing is changed.
    ``result`` failure: do not start."""
    found = await upgrades.check(ctx, to, reboot, max_parallel)
    verdict = found.assessment
    return UpgradeCheckOut(
        current=verdict.current,
        to=verdict.to,
        result=verdict.result,
        checks=[UpgradeCheckItem(**asdict(c)) for c in verdict.checks],
        plan=UpgradePlanOut(
            controllers=list(found.plan.controllers),
            batches=[list(b) for b in found.plan.batches],
        ),
    )


@router.post("", status_code=202)
async def start_upgrade(ctx: Ctx, body: UpgradeStart) -> UpgradeOut:
    """Start an upgrade to a release whose package is uploaded (or resume a failed one to
    it): 409 naming the failed checks when `upgrade check` fails. 202: it goes on in the
    background; GET /v1/upgrade shows where."""
    return _out(await upgrade_runs.start(ctx, body.to, body.max_parallel, body.stop_on_alarm))


@router.get("")
async def show_upgrade(ctx: Ctx) -> UpgradeOut:
    """The newest upgrade, with each controller's and host's step."""
    return _out(await upgrade_runs.latest(ctx))


@router.post("/abort", status_code=202)
async def abort_upgrade(ctx: Ctx) -> UpgradeOut:
    """Roll the upgrade under way back: hosts, then controllers, to their installed release."""
    return _out(await upgrade_runs.abort(ctx))


@router.post("/complete")
async def complete_upgrade(ctx: Ctx) -> UpgradeOut:
    """End an activated upgrade (every controller and host runs the release); no way back."""
    return _out(await upgrade_runs.complete(ctx))


def _out(upgrade: Upgrade) -> UpgradeOut:
    steps = [
        UpgradeStepOut(
            kind=st.kind,
            name=st.name,
            batch=st.batch,
            state=st.state,
            error=st.error,
            updated_at=st.updated_at,
        )
        for st in sorted(upgrade.steps, key=lambda st: (st.kind != "controller", st.batch, st.name))
    ]
    finished = ("reverted",) if upgrade.state in ("aborting", "aborted") else ("done",)
    return UpgradeOut(
        id=upgrade.id,
        to_release=upgrade.to_release,
        from_release=upgrade.from_release,
        state=upgrade.state,
        max_parallel=upgrade.max_parallel,
        stop_on_alarm=upgrade.stop_on_alarm,
        reboot=upgrade.reboot,
        error=upgrade.error,
        done=sum(1 for st in steps if st.state in finished),
        total=len(steps),
        steps=steps,
        created_at=upgrade.created_at,
        updated_at=upgrade.updated_at,
        finished_at=upgrade.finished_at,
    )
