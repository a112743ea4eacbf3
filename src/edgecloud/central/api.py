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
from edgecloud.central import deployments, sites
from edgecloud.central.models import CatalogueEntry, CentralAlarm, Deployment, Site
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
    group: Name | None = Field(None, description="deploy and upgrade sites by group")
    token_ttl: Annotated[float, Field(gt=0, le=30 * 24 * 3600)] | None = Field(
        None, description="seconds the join token stays valid (default 24 h)"
    )


class SiteOut(BaseModel):
    name: str
    group: str | None
    state: Literal["pending", "online", "offline"]
    release: str | None
    protocol: int | None
    inventory: dict[str, int]
    alarms: dict[str, int] = Field(description="the site's active alarms by severity")
    created_at: dt.datetime
    joined_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    state_since: dt.datetime
    desired_version: int
    applied_version: int
    in_sync: bool = Field(description="the site applied what central wants there now")


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
        group=site.group,
        state=site.state,
        release=site.release,
        protocol=site.protocol,
        inventory={k: int(v) for k, v in (report.get("inventory") or {}).items()},
        alarms={s: int((report.get("alarms") or {}).get(s, 0)) for s in SEVERITIES},
        created_at=site.created_at,
        joined_at=site.joined_at,
        last_seen_at=site.last_seen_at,
        state_since=site.state_since,
        desired_version=site.desired_version,
        applied_version=site.applied_version,
        in_sync=site.applied_version == site.desired_version,
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
        body.group,
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
    counted = await sites.fleet(ctx.sessions)
    return FleetOut(sites=counted.sites, site_alarms=counted.site_alarms,
                    central_alarms=counted.central_alarms, release=__version__)  # fmt: skip


# the catalogue and deployments ----------------------------------------------------------------
class TemplateIn(BaseModel):
    name: Name
    kind: Literal["stack", "chain"] = Field(
        "stack",
        description="stack: a HOT template; chain: a service chain (YAML: customer, host, "
        "ingress_port, egress_port, services [{name, template: a stack template's name, "
        "parameters}])",
    )
    template: str = Field(min_length=1, max_length=1_000_000)
    description: str = Field("", max_length=4096)


class TemplateUpdate(BaseModel):
    template: str = Field(min_length=1, max_length=1_000_000)
    description: str | None = Field(None, max_length=4096)


class TemplateOut(BaseModel):
    name: str
    kind: str
    description: str
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
    template: str | None = Field(None, description="the body (one template only)")


class DeploymentIn(BaseModel):
    name: Name = Field(description="the stack's name at each site")
    template: Name
    sites: list[Name] = Field(default_factory=list, max_length=10_000)
    group: Name | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=256)


class DeploymentOut(BaseModel):
    name: str
    site: str
    template: str
    parameters: dict[str, Any]
    status: Literal["pending", "in-sync", "failed", "conflict"]
    message: str | None
    updated_at: dt.datetime


def template_out(entry: CatalogueEntry, body: bool = False) -> TemplateOut:
    return TemplateOut(
        name=entry.name, kind=entry.kind, description=entry.description, revision=entry.revision,
        created_at=entry.created_at, updated_at=entry.updated_at,
        template=entry.body if body else None,
    )  # fmt: skip


def deployment_out(row: Deployment, site: str) -> DeploymentOut:
    return DeploymentOut(
        name=row.name, site=site, template=row.template, parameters=row.parameters,
        status=row.status, message=row.message, updated_at=row.updated_at,
    )  # fmt: skip


catalogue = APIRouter(prefix="/v1", tags=["catalogue"])


@catalogue.get("/templates", response_model=list[TemplateOut])
async def list_templates(ctx: Ctx) -> list[TemplateOut]:
    return [template_out(e) for e in await deployments.list_templates(ctx.sessions)]


@catalogue.post("/templates", status_code=201, response_model=TemplateOut)
async def add_template(body: TemplateIn, ctx: Ctx) -> TemplateOut:
    entry = await deployments.add_template(
        ctx.sessions, body.name, body.template, body.description, body.kind
    )
    return template_out(entry)


@catalogue.get("/templates/{name}", response_model=TemplateOut)
async def show_template(name: str, ctx: Ctx) -> TemplateOut:
    return template_out(await deployments.get_template(ctx.sessions, name), body=True)


@catalogue.put("/templates/{name}", response_model=TemplateOut)
async def update_template(name: str, body: TemplateUpdate, ctx: Ctx) -> TemplateOut:
    entry, site_ids = await deployments.update_template(
        ctx.sessions, name, body.template, body.description
    )
    ctx.gateway.sites_changed(site_ids)
    return template_out(entry)


@catalogue.delete("/templates/{name}", status_code=204)
async def delete_template(name: str, ctx: Ctx) -> Response:
    await deployments.delete_template(ctx.sessions, name)
    return Response(status_code=204)


@catalogue.get("/deployments", response_model=list[DeploymentOut], tags=["deployments"])
async def list_deployments(ctx: Ctx, site: str | None = None) -> list[DeploymentOut]:
    rows = await deployments.list_deployments(ctx.sessions, site)
    return [deployment_out(row, name) for row, name in rows]


@catalogue.post(
    "/deployments", status_code=201, response_model=list[DeploymentOut], tags=["deployments"]
)
async def deploy(body: DeploymentIn, ctx: Ctx) -> list[DeploymentOut]:
    """Deploy a catalogue template to the sites named and those of the group (or change the
    deployment of that name there); each site gets it now, or when it is next online."""
    targets = await deployments.target_sites(ctx.sessions, body.sites, body.group)
    made = await deployments.deploy(
        ctx.sessions, body.name, body.template, targets, body.parameters
    )
    ctx.gateway.sites_changed([site.id for site in targets])
    names = {site.id: site.name for site in targets}
    return [deployment_out(row, names[row.site_id]) for row in made]


@catalogue.delete("/deployments/{name}", status_code=204, tags=["deployments"])
async def undeploy(
    name: str,
    ctx: Ctx,
    site: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI reads it, never mutates)
    group: str | None = None,
) -> Response:
    """Remove the deployment from the sites named and those of the group (its stack goes)."""
    targets = await deployments.target_sites(ctx.sessions, site, group)
    await deployments.undeploy(ctx.sessions, name, targets)
    ctx.gateway.sites_changed([s.id for s in targets])
    return Response(status_code=204)


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
    app.include_router(catalogue)

    @app.get("/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
