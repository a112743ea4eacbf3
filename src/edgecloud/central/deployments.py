"""Central's catalogue of service templates, and what it deploys where: each site's desired
state, versioned.

A deployment is a catalogue template deployed to one site under a name (the stack's name at
the site) with parameters. Every change of what a site should run (a deployment added,
changed or removed; a template it uses changed) bumps the site's ``desired_version`` in the
same transaction, and the site gateway pushes the whole snapshot (``snapshot``) to the site
when it is connected, or when it next says hello with an older version: changes made while a
site is offline are queued as nothing more than that version (central/site_gateway.py). The
site answers per deployment (``record_applied``): in-sync, failed or conflict (a site-local
stack holds the name: docs/operations.md, "Central and sites: who owns what").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.central.models import CatalogueEntry, Deployment, Site
from edgecloud.central.sites import Sessions
from edgecloud.errors import Conflict, InvalidInput, NotFound
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import utcnow
from edgecloud.templates.loading import load_template

STATUSES = ("pending", "in-sync", "failed", "conflict")


# the catalogue -------------------------------------------------------------------------------
class ChainService(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63)
    template: str = Field(min_length=1, max_length=63, description="a stack template's name")
    parameters: dict[str, Any] = Field(default_factory=dict)
    health_timeout: float | None = Field(None, ge=1, le=3600)  # as the site's chain API


class ChainTemplate(BaseModel):
    """A chain in the catalogue: the site API's chain request, its services naming catalogue
    stack templates. A deployment's parameters may set customer, host, ingress_port and
    egress_port per site (host: default the site's first host)."""

    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=255)
    host: str | None = None
    ingress_port: str = Field(min_length=1, max_length=15)
    egress_port: str = Field(min_length=1, max_length=15)
    services: list[ChainService] = Field(min_length=1, max_length=16)


CHAIN_SETTINGS = frozenset({"customer", "host", "ingress_port", "egress_port"})


async def add_template(
    sessions: Sessions, name: str, body: str, description: str = "", kind: str = "stack"
) -> CatalogueEntry:
    """A new service template, checked now (not when a site gets it): a HOT template (kind
    ``stack``) or a chain of catalogue stack templates (kind ``chain``, YAML)."""
    async with transaction(sessions) as s:
        await _check(s, name, kind, body)
        if await _entry(s, name) is not None:
            raise Conflict(f"template {name!r} is already in the catalogue")
        entry = CatalogueEntry(name=name, kind=kind, body=body, description=description)
        s.add(entry)
    return entry


async def _check(s: AsyncSession, name: str, kind: str, body: str) -> None:
    if kind == "stack":
        load_template(body, f"template {name}")
        return
    if kind != "chain":
        raise InvalidInput(f"kind must be stack or chain, not {kind!r}", field="kind")
    chain = _chain_of(name, body)
    for service in chain.services:
        entry = await _entry(s, service.template)
        if entry is None or entry.kind != "stack":
            raise InvalidInput(
                f"chain {name!r}: service {service.name!r} names {service.template!r}, "
                "which is not a stack template in the catalogue",
                field="template",
            )


def _chain_of(name: str, body: str) -> ChainTemplate:
    try:
        return ChainTemplate.model_validate(yaml.safe_load(body))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"chain {name!r} is not YAML: {exc}", field="template") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "template"
        raise InvalidInput(f"chain {name!r}: {where}: {first['msg']}", field="template") from None


async def update_template(
    sessions: Sessions, name: str, body: str, description: str | None = None
) -> tuple[CatalogueEntry, list[str]]:
    """A new revision of a template: every site that runs it gets it (its version bumped);
    the entry and those sites' ids."""
    site_ids: list[str] = []
    async with transaction(sessions) as s:
        entry = await _entry(s, name)
        if entry is None:
            raise NotFound(f"template {name!r} not found")
        await _check(s, name, entry.kind, body)
        if body != entry.body:
            entry.body, entry.revision, entry.updated_at = body, entry.revision + 1, utcnow()
            users = [name, *await _chains_using(s, name)]  # chains that use a stack template
            using = select(Deployment.site_id).where(Deployment.template.in_(users)).distinct()
            site_ids = list(await s.scalars(using))
            await _bump(s, site_ids)
            await s.execute(
                update(Deployment)
                .where(Deployment.template.in_(users))
                .values(status="pending", message=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        if description is not None:
            entry.description = description
    return entry, site_ids


async def list_templates(sessions: Sessions) -> list[CatalogueEntry]:
    async with reading(sessions) as s:
        return list(await s.scalars(select(CatalogueEntry).order_by(CatalogueEntry.name)))


async def get_template(sessions: Sessions, name: str) -> CatalogueEntry:
    async with reading(sessions) as s:
        entry = await _entry(s, name)
        if entry is None:
            raise NotFound(f"template {name!r} not found")
        return entry


async def delete_template(sessions: Sessions, name: str) -> None:
    async with transaction(sessions) as s:
        entry = await _entry(s, name)
        if entry is None:
            raise NotFound(f"template {name!r} not found")
        used = (await s.scalars(select(Deployment).where(Deployment.template == name))).first()
        if used is not None:
            raise Conflict(f"template {name!r} is deployed (e.g. {used.name!r}): undeploy it first")
        chains = await _chains_using(s, name)
        if chains:
            raise Conflict(f"template {name!r} is a service of chain {chains[0]!r}")
        await s.delete(entry)


# deployments ---------------------------------------------------------------------------------
async def target_sites(
    sessions: Sessions, names: Sequence[str] = (), group: str | None = None
) -> list[Site]:
    """The sites named, and those of ``group``; NotFound for a name central does not know."""
    if not names and group is None:
        raise InvalidInput("name the sites (--site) or a group (--group)", field="sites")
    async with reading(sessions) as s:
        found = {x.name: x for x in await s.scalars(select(Site).where(Site.name.in_(names)))}
        missing = sorted(set(names) - set(found))
        if missing:
            raise NotFound(f"site {missing[0]!r} not found")
        if group is not None:
            in_group = list(await s.scalars(select(Site).where(Site.group == group)))
            if not in_group and not names:
                raise NotFound(f"no site is in group {group!r}")
            found.update({x.name: x for x in in_group})
    return [found[n] for n in sorted(found)]


async def deploy(
    sessions: Sessions,
    name: str,
    template: str,
    sites: Sequence[Site],
    parameters: Mapping[str, Any],
) -> list[Deployment]:
    """Deploy ``template`` as ``name`` to each site (or change the deployment of that name to
    this template and these parameters); each site's version is bumped."""
    async with transaction(sessions) as s:
        if await _entry(s, template) is None:
            raise NotFound(f"template {template!r} not found")
        made = []
        ids = [site.id for site in sites]
        found = {
            row.site_id: row
            for row in await s.scalars(
                select(Deployment).where(Deployment.name == name, Deployment.site_id.in_(ids))
            )
        }  # one read for every site (a group may be thousands)
        for site in sites:
            row = found.get(site.id)
            if row is None:
                row = Deployment(name=name, site_id=site.id, template=template, parameters={})
                s.add(row)
            row.template, row.parameters = template, dict(parameters)
            row.status, row.message, row.updated_at = "pending", None, utcnow()
            made.append(row)
        await _bump(s, [site.id for site in sites])
    return made


async def undeploy(sessions: Sessions, name: str, sites: Sequence[Site]) -> int:
    """Remove the deployment ``name`` from each site (its stack goes there); how many."""
    removed = 0
    async with transaction(sessions) as s:
        for site in sites:
            query = select(Deployment).where(Deployment.site_id == site.id, Deployment.name == name)
            row = (await s.scalars(query)).first()
            if row is not None:
                await s.delete(row)
                removed += 1
        if not removed:
            raise NotFound(f"deployment {name!r} not found on those sites")
        await _bump(s, [site.id for site in sites])
    return removed


async def list_deployments(
    sessions: Sessions, site: str | None = None
) -> list[tuple[Deployment, str]]:
    """Every deployment with its site's name (or one site's)."""
    async with reading(sessions) as s:
        query = select(Deployment, Site.name).join(Site, Site.id == Deployment.site_id)
        if site is not None:
            query = query.where(Site.name == site)
        query = query.order_by(Deployment.name, Site.name)
        return [(row, str(name)) for row, name in (await s.execute(query)).all()]


async def snapshot(sessions: Sessions, site_id: str) -> tuple[int, list[dict[str, Any]]] | None:
    """The site's desired version and every deployment with its template's body (None: the
    site is gone)."""
    async with reading(sessions) as s:
        site = await s.get(Site, site_id)
        if site is None:
            return None
        query = (
            select(Deployment, CatalogueEntry.body, CatalogueEntry.kind)
            .join(CatalogueEntry, CatalogueEntry.name == Deployment.template)
            .where(Deployment.site_id == site_id)
            .order_by(Deployment.name)
        )
        specs = []
        for d, body, kind in (await s.execute(query)).all():
            if kind == "chain":
                chain = await _chain_request(s, d, body)
                specs.append({"name": d.name, "kind": kind, "chain": chain})
            else:
                specs.append(
                    {"name": d.name, "kind": kind, "template": body, "parameters": d.parameters}
                )
        return site.desired_version, specs


async def _chain_request(s: AsyncSession, row: Deployment, body: str) -> dict[str, Any]:
    """The site API's chain request for a chain deployment: the catalogue chain, the
    deployment's settings over it, each service's template body in place of its name."""
    chain = _chain_of(row.template, body)
    request: dict[str, Any] = chain.model_dump(exclude={"services"})
    request.update({k: v for k, v in row.parameters.items() if k in CHAIN_SETTINGS})
    request["name"] = row.name
    services = []
    for service in chain.services:
        entry = await _entry(s, service.template)
        wanted: dict[str, Any] = {"name": service.name, "template": entry.body if entry else "",
                  "parameters": service.parameters}  # fmt: skip
        if service.health_timeout is not None:
            wanted["health_timeout"] = service.health_timeout
        services.append(wanted)
    request["services"] = services
    return request


async def _chains_using(s: AsyncSession, template: str) -> list[str]:
    """The catalogue chains that have a service from stack template ``template``."""
    chains = await s.scalars(select(CatalogueEntry).where(CatalogueEntry.kind == "chain"))
    return [
        c.name for c in chains
        if any(svc.template == template for svc in _chain_of(c.name, c.body).services)
    ]  # fmt: skip


async def record_applied(
    sessions: Sessions, site_id: str, version: int, results: Mapping[str, tuple[str, str | None]]
) -> bool:
    """What the site made of desired ``version``: each deployment's status. An answer to an
    older version than the site's current one is dropped (the newer push is on its way);
    whether it was recorded."""
    async with transaction(sessions) as s:
        site = await s.get(Site, site_id)
        if site is None or version != site.desired_version:
            return False
        site.applied_version = version
        for row in await s.scalars(select(Deployment).where(Deployment.site_id == site_id)):
            status, message = results.get(row.name, ("failed", "the site did not say"))
            row.status = status if status in STATUSES else "failed"
            row.message = message
    return True


async def _entry(s: AsyncSession, name: str) -> CatalogueEntry | None:
    query = select(CatalogueEntry).where(CatalogueEntry.name == name)
    return (await s.scalars(query)).first()


async def _bump(s: AsyncSession, site_ids: Sequence[str]) -> None:
    if site_ids:
        await s.execute(
            update(Site)
            .where(Site.id.in_(list(site_ids)))
            .values(desired_version=Site.desired_version + 1)
            .execution_options(synchronize_session=False)
        )
