"""A replicated store's multi-host URL (SQLAlchemy's form, one host=H:P per node) reaches
asyncpg, used directly by leadership and the change feed, as one host=H1:P1,H2:P2 list with
target_session_attrs kept: otherwise asyncpg would take only the last node."""

from __future__ import annotations

import urllib.parse

from edgecloud.store.leadership import dsn

MULTI = (
    "postgresql+asyncpg://edgecloud:pw@/edgecloud?host=127.0.0.1:5001&host=127.0.0.2:5002"
    "&target_session_attrs=read-write"
)


def test_every_host_reaches_asyncpg_with_the_session_attrs() -> None:
    libpq = urllib.parse.urlsplit(dsn(MULTI))
    assert libpq.scheme == "postgresql" and libpq.path == "/edgecloud"
    query = urllib.parse.parse_qs(libpq.query)
    assert query == {
        "host": ["127.0.0.1:5001,127.0.0.2:5002"],  # asyncpg's host list (one parameter)
        "target_session_attrs": ["read-write"],
    }


def test_a_single_host_url_is_only_renamed() -> None:
    url = "postgresql+asyncpg://u:p@127.0.0.1:5432/db"
    assert dsn(url) == "postgresql://u:p@127.0.0.1:5432/db"
