"""Every API route is classified in services/authorization.py (a new route cannot be
forgotten), and the classification means what docs/security.md says for each role and scope."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from edgecloud.api import deps
from edgecloud.api.app import create_app
from edgecloud.api.auditing import AuditMiddleware
from edgecloud.errors import Forbidden
from edgecloud.services.auth import Principal
from edgecloud.services.authorization import (
    CATALOGUE,
    OWNED,
    PUBLIC,
    RULES,
    SITE,
    Access,
    creating_for,
    decide,
    rule_for,
)
from edgecloud.services.context import ServiceContext


def _routes() -> list[tuple[str, str, APIRoute]]:
    app = create_app(ServiceContext(sessions=None))  # type: ignore[arg-type]
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found += [(method, route.path, route) for method in sorted(route.methods)]
    return found


def _calls(dependant: Any) -> set[Any]:
    calls = {dependant.call}
    for sub in dependant.dependencies:
        calls |= _calls(sub)
    return calls


def test_every_route_is_classified_and_every_rule_has_a_route() -> None:
    routes = _routes()
    keys = {(method, path) for method, path, _ in routes}
    assert len(routes) > 50
    assert keys - set(RULES) == set(PUBLIC), "a route has no rule in services/authorization.py"
    assert set(RULES) - keys == set(), "a rule names a route that does not exist"


def test_every_classified_route_authenticates_and_public_ones_do_not() -> None:
    for method, path, route in _routes():
        authenticates = deps.authenticated in _calls(route.dependant)
        assert authenticates == ((method, path) not in PUBLIC), f"{method} {path}"


def test_reads_are_for_readers_and_every_change_needs_more() -> None:
    for (method, path), rule in RULES.items():
        if method != "GET":
            assert rule.access >= Access.OPERATE, f"{method} {path} is a change"
        assert rule.reach in (SITE, CATALOGUE, *OWNED), f"{method} {path}"


def test_the_audit_middleware_is_installed() -> None:
    app = create_app(ServiceContext(sessions=None))  # type: ignore[arg-type]
    assert any(m.cls is AuditMiddleware for m in app.user_middleware)


ADMIN = Principal("root", "admin")
OPERATOR = Principal("ops", "operator")
READER = Principal("eyes", "reader")
SCOPED_OPERATOR = Principal("acme-ops", "operator", "acme")
SCOPED_READER = Principal("acme-eyes", "reader", "acme")


def _allowed(principal: Principal, method: str, path: str) -> bool:
    try:
        decide(principal, rule_for(method, path))
    except Forbidden:
        return False
    return True


@pytest.mark.parametrize(
    ("method", "path", "admin", "operator", "reader", "scoped_operator", "scoped_reader"),
    [
        ("GET", "/v1/chains/{name}", True, True, True, True, True),
        ("HEAD", "/v1/chains", True, True, True, True, True),
        ("POST", "/v1/chains", True, True, False, True, False),
        ("DELETE", "/v1/chains/{name}", True, True, False, True, False),
        ("PUT", "/v1/stacks/{name}", True, True, False, True, False),
        ("POST", "/v1/vnfs/{name}/actions", True, True, False, True, False),
        ("GET", "/v1/vnfs/{name}/console", True, True, False, True, False),
        ("POST", "/v1/vnfs/{name}/migrate", True, False, False, False, False),
        ("POST", "/v1/networks", True, True, False, False, False),
        ("GET", "/v1/networks", True, True, True, True, True),
        ("POST", "/v1/flavors", True, False, False, False, False),
        ("GET", "/v1/hosts", True, True, True, False, False),
        ("POST", "/v1/hosts", True, False, False, False, False),
        ("POST", "/v1/hosts/{name}/join-token", True, False, False, False, False),
        ("GET", "/v1/alarms", True, True, True, False, False),
        ("POST", "/v1/tokens", True, False, False, False, False),
        ("GET", "/v1/tokens", True, False, False, False, False),
        ("GET", "/v1/audit", True, False, False, False, False),
        ("GET", "/v1/unknown", False, False, False, False, False),
    ],
)
def test_role_and_scope_matrix(
    method: str,
    path: str,
    admin: bool,
    operator: bool,
    reader: bool,
    scoped_operator: bool,
    scoped_reader: bool,
) -> None:
    assert _allowed(ADMIN, method, path) is admin
    assert _allowed(OPERATOR, method, path) is operator
    assert _allowed(READER, method, path) is reader
    assert _allowed(SCOPED_OPERATOR, method, path) is scoped_operator
    assert _allowed(SCOPED_READER, method, path) is scoped_reader


def test_refusals_say_who_and_what_is_needed() -> None:
    with pytest.raises(Forbidden, match=r"token 'eyes' \(role reader\).*needs role operator"):
        decide(READER, rule_for("POST", "/v1/chains"))
    with pytest.raises(Forbidden, match=r"customer 'acme'.*site-wide"):
        decide(SCOPED_OPERATOR, rule_for("GET", "/v1/hosts"))


def test_a_scoped_token_creates_for_its_own_customer_only() -> None:
    assert creating_for(SCOPED_OPERATOR, None) == "acme"
    assert creating_for(SCOPED_OPERATOR, "acme") == "acme"
    with pytest.raises(Forbidden) as refused:
        creating_for(SCOPED_OPERATOR, "globex")
    assert refused.value.field == "customer"
    assert creating_for(OPERATOR, "globex") == "globex"
    assert creating_for(OPERATOR, None) is None
