"""Central's REST API (HTTPS, bearer token, OpenAPI at /openapi.json): sites and the fleet view.

Errors are the site API's (api/errors.py: ``{"error": {"code", "message", "field"}}``, 4xx for
anything a client sends), bodies bounded the same way (api/limits.py). One admin token
(STATE/admin-token) for now; roles at central follow the site's (issue 14).
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from edgecloud import __version__
from edgecloud.api import errors
from edgecloud.api.limits import BodyLimitMiddleware, BodyLimits
from edgecloud.api.schemas import ErrorOut, Name
from edgecloud.central import sites
from edgecloud.central.models import CentralAlarm, Site
from edgecloud.central.site_gateway import SiteGateway
from edgecloud.errors import Unauthorized
from edgecloud.pki.authority import CertificateAuthority

ERROR_RESPONSES = (400, 401, 404, 409, 413, 422)
SEVERITIES = ("critical", "major", "minor", "warning")


@dataclass
class CentralContext:
    """What central's API works with."""

    sessions: sites.Sessions
    ca: CertificateAuthority
    gateway: SiteGateway
    site_address: str  # "host:port" sites dial (goes into site join tokens)
    admin_token: str
    token_ttl: float = 24 * 3600.0


# schemas --------------------------------------------------------------------------------------
class SiteIn(BaseModel):
    name: Name
    token_ttl: Annotated[float, Field(gt=0, le=30 * 24 * 3600)] | None = Field(
        None, description="seconds the join token stays valid (default 24 h)"
    )


class SiteOut(BaseModel):
    name: str
    state: Literal["pending", "online", "offline"]
    release: str | None
    protocol: int | None
    inventory: dict[str, int]
    alarms: dict[str, int] = Field(description="the site's active alarms by severity")
    created_at: dt.datetime
    joined_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    state_since: dt.datetime


class SiteToken(BaseModel):
    site: SiteOut
    join_token: str = Field(description="give it to the site: edgecloud up --central-token")


class CentralAlarmOut(BaseModel):
    id: str
    alarm_id: str
    severity: str
    entity: str
    reason: str
    state: str
    raised_at: dt.datetime
    cleared_at: dt.datetime | None


class FleetOut(BaseModel):
    sites: dict[str, int] = Field(description="sites by state")
    site_alarms: dict[str, int] = Field(description="active alarms at the sites, by severity")
    central_alarms: dict[str, int] = Field(description="central's own active alarms")
    release: str


def site_out(site: Site) -> SiteOut:
    report: dict[str, Any] = site.report or {}
    return SiteOut(
        name=site.name,
        state=site.state,
        release=site.release,
        protocol=site.protocol,
        inventory={k: int(v) for k, v in (report.get("inventory") or {}).items()},
        alarms={s: int((report.get("alarms") or {}).get(s, 0)) for s in SEVERITIES},
        created_at=site.created_at,
        joined_at=site.joined_at,
        last_seen_at=site.last_seen_at,
        state_since=site.state_since,
    )


def alarm_out(alarm: CentralAlarm) -> CentralAlarmOut:
    return CentralAlarmOut(
        id=alarm.id, alarm_id=alarm.alarm_id, severity=alarm.severity, entity=alarm.entity,
        reason=alarm.reason, state=alarm.state, raised_at=alarm.raised_at,
        cleared_at=alarm.cleared_at,
    )  # fmt: skip


# dependencies ---------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False)


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CentralContext:
    if credentials is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    ctx: CentralContext = request.app.state.central
    if not hmac.compare_digest(credentials.credentials.encode(), ctx.admin_token.encode()):
        raise Unauthorized("unknown API token")
    return ctx


Ctx = Annotated[CentralContext, Depends(authenticated)]
router = APIRouter(prefix="/v1", tags=["sites"])


@router.get("/sites", response_model=list[SiteOut])
async def list_sites(ctx: Ctx) -> list[SiteOut]:
    return [site_out(s) for s in await sites.list_sites(ctx.sessions)]


@router.post("/sites", status_code=201, response_model=SiteToken)
async def add_site(body: SiteIn, ctx: Ctx) -> SiteToken:
    issued = await sites.add_site(
        ctx.sessions,
        body.name,
        ctx.site_address,
        ctx.ca.fingerprint,
        body.token_ttl or ctx.token_ttl,
    )
    return SiteToken(site=site_out(issued.site), join_token=issued.token)


@router.get("/sites/{name}", response_model=SiteOut)
async def show_site(name: str, ctx: Ctx) -> SiteOut:
    return site_out(await sites.get_site(ctx.sessions, name))


@router.post("/sites/{name}/token", response_model=SiteToken)
async def new_site_token(name: str, ctx: Ctx) -> SiteToken:
    issued = await sites.new_token(
        ctx.sessions, name, ctx.site_address, ctx.ca.fingerprint, ctx.token_ttl
    )
    ctx.gateway.forget(issued.site.id)  # its old certificate stops working now
    return SiteToken(site=site_out(issued.site), join_token=issued.token)


@router.delete("/sites/{name}", status_code=204)
async def delete_site(name: str, ctx: Ctx) -> Response:
    ctx.gateway.forget(await sites.delete_site(ctx.sessions, name))
    return Response(status_code=204)


@router.get("/alarms", response_model=list[CentralAlarmOut], tags=["alarms"])
async def list_alarms(
    ctx: Ctx, include_cleared: Annotated[bool, Query(alias="all")] = False
) -> list[CentralAlarmOut]:
    return [alarm_out(a) for a in await sites.list_alarms(ctx.sessions, include_cleared)]


@router.get("/fleet", response_model=FleetOut, tags=["fleet"])
async def fleet(ctx: Ctx) -> FleetOut:
    """The fleet at a glance: sites by state, alarms aggregated over the sites."""
    by_state = {"pending": 0, "online": 0, "offline": 0}
    site_alarms = dict.fromkeys(SEVERITIES, 0)
    for site in await sites.list_sites(ctx.sessions):
        out = site_out(site)
        by_state[out.state] += 1
        for severity, count in out.alarms.items():
            site_alarms[severity] += count
    own = dict.fromkeys(SEVERITIES, 0)
    for alarm in await sites.list_alarms(ctx.sessions):
        own[alarm.severity] = own.get(alarm.severity, 0) + 1
    return FleetOut(sites=by_state, site_alarms=site_alarms, central_alarms=own,
                    release=__version__)  # fmt: skip


def create_app(ctx: CentralContext, limits: BodyLimits | None = None) -> FastAPI:
    app = FastAPI(
        title="edgecloud central",
        version=__version__,
        description="Central orchestration of many edgecloud sites: sites join with a "
        "one-time token and dial out to central; the fleet view shows each site's release, "
        "inventory and alarms.",
        responses={code: {"model": ErrorOut} for code in ERROR_RESPONSES},
    )
    app.add_middleware(BodyLimitMiddleware, limits=limits or BodyLimits())
    app.state.central = ctx
    errors.install(app)
    app.include_router(router)

    @app.get("/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
