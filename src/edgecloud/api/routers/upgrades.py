"""/v1/upgrade: whether the site can upgrade to a release (`upgrade check`), before anything
changes (issue 12)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import UpgradeCheckItem, UpgradeCheckOut, UpgradePlanOut
from edgecloud.services import upgrades
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
