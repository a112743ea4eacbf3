"""Software on a host, through its agent (issue 12): stage a release there, restart its agent
into a staged release (or back into the one installed with it).

``stage`` hands the host's agent the package's signed manifest; the agent checks the
signature against the site CA, fetches the wheel over its own mTLS port, checks it and
unpacks it beside the running release (agent/staging.py). ``restart`` makes the agent select
a release and run it in the same process; its VMs run on and are adopted at its hello, which
says the new release (stored per host: ``host list`` shows it). The orchestrated upgrade
calls these host by host (services/upgrades.py); they are idempotent, so a step cut short is
simply asked again.
"""

from __future__ import annotations

import logging
from typing import Any

from edgecloud.errors import Conflict
from edgecloud.services import software
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import Host

log = logging.getLogger(__name__)
STAGE_TIMEOUT = 600.0  # fetching a wheel over a slow link, unpacking it
RESTART_TIMEOUT = 30.0


async def stage(ctx: ServiceContext, host_name: str, release: str) -> None:
    """Stage the package of ``release`` on host ``host_name``."""
    package = await software.get(ctx, release)
    host_id = await _host_id(ctx, host_name)
    wire: dict[str, Any] = software.signed(package).to_wire()
    await _nodes(ctx).call(host_id, "stage", wire, STAGE_TIMEOUT)
    log.info("release %s staged on host %s", release, host_name)


async def restart(ctx: ServiceContext, host_name: str, release: str | None) -> None:
    """Restart host ``host_name``'s agent into staged ``release`` (None: the installed one)."""
    host_id = await _host_id(ctx, host_name)
    await _nodes(ctx).call(host_id, "restart", {"release": release}, RESTART_TIMEOUT)
    log.info("host %s restarts into release %s", host_name, release or "installed")


async def _host_id(ctx: ServiceContext, name: str) -> str:
    async with transaction(ctx.sessions) as s:
        return (await repository.by_name(s, Host, name, "host")).id


def _nodes(ctx: ServiceContext) -> Any:
    if ctx.nodes is None:
        raise Conflict("this controller reaches no node")
    return ctx.nodes
