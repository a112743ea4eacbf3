"""/v1/upgrade: whether the site can upgrade to a release (`upgrade check`), before anything
changes (issue 12)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from edgecloud.api.deps import Ctx
from edgecloud.api.schemas import UpgradeCheckItem, UpgradeCheckOut
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
) -> UpgradeCheckOut:
    """Every check (release, upgrade in progress, controllers, hosts, alarms, room to empty
    hosts) with its result; nothing is changed. ``result`` failure: do not start."""
    found = await upgrades.check(ctx, to, reboot)
    return UpgradeCheckOut(
        current=found.current,
        to=found.to,
        result=found.result,
        checks=[UpgradeCheckItem(**asdict(c)) for c in found.checks],
    )
