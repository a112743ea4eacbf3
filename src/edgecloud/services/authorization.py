"""Who may do what: the one table that classifies every API route, and the checks on it.

Neighbours: services/auth.py says who a token is (a Principal: name, role, customer scope);
api/deps.py runs ``decide`` and ``check_owner`` for every authenticated request, before the
handler; tests/unit/api/test_authorization.py walks the app's routes so that a route missing
from RULES (or a rule with no route) fails the suite.

Roles, each including the one below it:
    reader    GET (except the serial console, which is operator's)
    operator  + change stacks, chains, VNFs, networks, subnets, key pairs, images
    admin     + hosts, flavors, migrations, software, upgrades, tokens, the audit log:
              everything

Customer scope (a token with ``customer``): stacks, chains and VNFs of that customer only;
another customer's (or the site's) object answers 404 exactly like a missing one, whether
read or changed, so a scoped token cannot even learn that it exists. Catalogue objects
(networks, subnets, flavors, images, key pairs) are readable, not changeable; everything
site-wide (hosts, alarms, events, migrations, tokens, audit) answers 403. Objects a scoped
token creates belong to its customer; a chain's service stacks and a stack's VNFs belong to
the chain's or the stack's customer. Names stay unique site-wide: creating a name another
customer uses answers 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy import select

from edgecloud.errors import Forbidden, NotFound
from edgecloud.services.auth import Principal
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import Chain, Instance, Stack


class Access(IntEnum):
    """The least role a route needs, in order."""

    READ = 1
    OPERATE = 2
    ADMIN = 3


LEVEL = {"reader": Access.READ, "operator": Access.OPERATE, "admin": Access.ADMIN}

SITE = "site"  # site-wide: unscoped tokens only
CATALOGUE = "catalogue"  # shared by every customer: scoped tokens may read
OWNED = {"stack": (Stack, "stack"), "chain": (Chain, "chain"), "vnf": (Instance, "VNF")}


@dataclass(frozen=True)
class Rule:
    """A route's classification: the least role, and its reach (SITE, CATALOGUE, or the
    kind of owned object its ``{name}`` path parameter names, or lists or creates)."""

    access: Access
    reach: str


READ, OPERATE, ADMIN = Access.READ, Access.OPERATE, Access.ADMIN

# every authenticated route, as (method, path template); /v1/health is public
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/stacks"): Rule(READ, "stack"),
    ("POST", "/v1/stacks"): Rule(OPERATE, "stack"),
    ("GET", "/v1/stacks/{name}"): Rule(READ, "stack"),
    ("PUT", "/v1/stacks/{name}"): Rule(OPERATE, "stack"),
    ("DELETE", "/v1/stacks/{name}"): Rule(OPERATE, "stack"),
    ("GET", "/v1/chains"): Rule(READ, "chain"),
    ("POST", "/v1/chains"): Rule(OPERATE, "chain"),
    ("GET", "/v1/chains/{name}"): Rule(READ, "chain"),
    ("DELETE", "/v1/chains/{name}"): Rule(OPERATE, "chain"),
    ("POST", "/v1/chains/{name}/services"): Rule(OPERATE, "chain"),
    ("PUT", "/v1/chains/{name}/services/{service}"): Rule(OPERATE, "chain"),
    ("DELETE", "/v1/chains/{name}/services/{service}"): Rule(OPERATE, "chain"),
    ("POST", "/v1/chains/{name}/order"): Rule(OPERATE, "chain"),
    ("GET", "/v1/vnfs"): Rule(READ, "vnf"),
    ("POST", "/v1/vnfs"): Rule(OPERATE, "vnf"),
    ("GET", "/v1/vnfs/{name}"): Rule(READ, "vnf"),
    ("DELETE", "/v1/vnfs/{name}"): Rule(OPERATE, "vnf"),
    ("POST", "/v1/vnfs/{name}/actions"): Rule(OPERATE, "vnf"),
    ("GET", "/v1/vnfs/{name}/console"): Rule(OPERATE, "vnf"),  # reads a guest's secrets, too
    ("POST", "/v1/vnfs/{name}/nics"): Rule(OPERATE, "vnf"),
    ("DELETE", "/v1/vnfs/{name}/nics/{position}"): Rule(OPERATE, "vnf"),
    ("POST", "/v1/vnfs/{name}/migrate"): Rule(ADMIN, SITE),  # moves load between hosts
    ("GET", "/v1/migrations"): Rule(READ, SITE),
    ("GET", "/v1/migrations/{migration_id}"): Rule(READ, SITE),
    ("GET", "/v1/networks"): Rule(READ, CATALOGUE),
    ("POST", "/v1/networks"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/networks/{name}"): Rule(READ, CATALOGUE),
    ("DELETE", "/v1/networks/{name}"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/subnets"): Rule(READ, CATALOGUE),
    ("POST", "/v1/subnets"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/subnets/{name}"): Rule(READ, CATALOGUE),
    ("DELETE", "/v1/subnets/{name}"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/keypairs"): Rule(READ, CATALOGUE),
    ("POST", "/v1/keypairs"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/keypairs/{name}"): Rule(READ, CATALOGUE),
    ("DELETE", "/v1/keypairs/{name}"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/images"): Rule(READ, CATALOGUE),
    ("GET", "/v1/images/{name}"): Rule(READ, CATALOGUE),
    ("PUT", "/v1/images/{name}"): Rule(OPERATE, CATALOGUE),
    ("DELETE", "/v1/images/{name}"): Rule(OPERATE, CATALOGUE),
    ("GET", "/v1/flavors"): Rule(READ, CATALOGUE),
    ("POST", "/v1/flavors"): Rule(ADMIN, CATALOGUE),
    ("GET", "/v1/flavors/{name}"): Rule(READ, CATALOGUE),
    ("DELETE", "/v1/flavors/{name}"): Rule(ADMIN, CATALOGUE),
    ("GET", "/v1/hosts"): Rule(READ, SITE),
    ("POST", "/v1/hosts"): Rule(ADMIN, SITE),
    ("GET", "/v1/hosts/{name}"): Rule(READ, SITE),
    ("PATCH", "/v1/hosts/{name}"): Rule(ADMIN, SITE),
    ("DELETE", "/v1/hosts/{name}"): Rule(ADMIN, SITE),
    ("POST", "/v1/hosts/{name}/lock"): Rule(ADMIN, SITE),
    ("POST", "/v1/hosts/{name}/unlock"): Rule(ADMIN, SITE),
    ("POST", "/v1/hosts/{name}/join-token"): Rule(ADMIN, SITE),
    ("GET", "/v1/alarms"): Rule(READ, SITE),
    ("GET", "/v1/alarms/{alarm_id}"): Rule(READ, SITE),
    ("GET", "/v1/events"): Rule(READ, SITE),
    ("GET", "/v1/tokens"): Rule(ADMIN, SITE),
    ("POST", "/v1/tokens"): Rule(ADMIN, SITE),
    ("GET", "/v1/tokens/{name}"): Rule(ADMIN, SITE),
    ("DELETE", "/v1/tokens/{name}"): Rule(ADMIN, SITE),
    ("POST", "/v1/tokens/{name}/rotate"): Rule(ADMIN, SITE),
    ("GET", "/v1/audit"): Rule(ADMIN, SITE),
    ("GET", "/v1/controllers"): Rule(READ, SITE),
    ("GET", "/v1/upgrade/check"): Rule(READ, SITE),
    ("GET", "/v1/upgrade"): Rule(READ, SITE),
    ("POST", "/v1/upgrade"): Rule(ADMIN, SITE),
    ("POST", "/v1/upgrade/abort"): Rule(ADMIN, SITE),
    ("POST", "/v1/upgrade/complete"): Rule(ADMIN, SITE),
    ("GET", "/v1/software"): Rule(READ, SITE),
    ("GET", "/v1/software/{release}"): Rule(READ, SITE),
    ("POST", "/v1/software"): Rule(ADMIN, SITE),  # what every node will run
    ("DELETE", "/v1/software/{release}"): Rule(ADMIN, SITE),
}

PUBLIC = frozenset({("GET", "/v1/health")})


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (HEAD as GET); None: not classified, so refused."""
    return RULES.get(("GET" if method == "HEAD" else method, path))


def decide(principal: Principal, rule: Rule | None) -> None:
    """Forbidden unless the principal's role and scope allow a route of this rule."""
    who = f"token {principal.name!r} (role {principal.role}"
    who += f", customer {principal.customer!r})" if principal.customer else ")"
    if rule is None:
        raise Forbidden(f"{who} may not use this route: it has no access rule")
    if LEVEL.get(principal.role, Access.READ) < rule.access:
        need = {Access.OPERATE: "operator or admin", Access.ADMIN: "admin"}[rule.access]
        raise Forbidden(f"{who} may not do this: it needs role {need}")
    if principal.customer is None:
        return
    if rule.reach == SITE:
        raise Forbidden(f"{who} may not use site-wide resources")
    if rule.reach == CATALOGUE and rule.access > Access.READ:
        raise Forbidden(f"{who} may read the site's catalogue but not change it")


async def check_owner(ctx: ServiceContext, principal: Principal, rule: Rule, name: str) -> None:
    """NotFound, worded as for a missing object, when a scoped principal names an object
    of an owned kind that belongs to someone else; nothing when it does not exist."""
    if principal.customer is None or rule.reach not in OWNED:
        return
    model, what = OWNED[rule.reach]
    async with transaction(ctx.sessions) as s:
        query = select(model.customer).where(model.name == name)  # type: ignore[attr-defined]
        found = (await s.execute(query)).first()
    if found is not None and found[0] != principal.customer:
        raise NotFound(f"no {what} named {name!r}")


def creating_for(principal: Principal, customer: str | None) -> str | None:
    """The customer a new object belongs to: a scoped principal's own (Forbidden when it
    names another); an unscoped one's choice (None: the site's)."""
    if principal.customer is None:
        return customer
    if customer is not None and customer != principal.customer:
        raise Forbidden(
            f"token {principal.name!r} is scoped to customer {principal.customer!r}",
            field="customer",
        )
    return principal.customer


def visible_to(principal: Principal) -> str | None:
    """The customer whose objects a list shows, None: every object."""
    return principal.customer
