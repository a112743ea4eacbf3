"""The controllers of an all-in-one site: where each runs and what it is started with.

One-controller sites (the default, and ``--nodes N`` without ``--redundant``): one controller,
child ``controller``, state STATE/controller/, on the site's ``--listen``/``--api-listen`` and
ports, exactly as before.

A redundant site (``edgecloud up --nodes 2 --redundant``) runs a controller on each of its two
database nodes, as two machines would: the one of node i listens (API and agent gateway) on
node i's own address (allinone/fabric.py ``node_address``, 127.<a>.<b>.<i>) with the site's
ports, so a node's controller and its address go away together. Node 1's is child
``controller`` with state STATE/controller/ (the admin token and the client config's CA file
are there, as on every site); node 2's is ``controller-n2`` with STATE/controller-n2/. Both use
the replicated store's multi-host URL and the site secret STATE/site-secret (made once,
mode 0600), through which the second takes the site CA from the store
(controller/shared_ca.py). Leadership, following and failover are theirs (controller/).

Callers: allinone/supervisor.py (starts, restarts and stops them), cli/site.py (client config).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from edgecloud import files
from edgecloud.allinone.nodes import Layout

SECRET_FILE = "site-secret"
FIRST = "controller"
REDUNDANT_CONTROLLERS = 2  # one per database node


@dataclass
class ControllerSpot:
    """One controller of the site. The ports start as asked (0: free ones) and are set to
    what the controller took, so a restarted controller comes back on the same ones."""

    child: str  # the supervisor's name for its process (and its log file)
    state_dir: Path
    listen: str  # the agent gateway's address (and the API's, unless api_listen)
    api_listen: str | None
    api_port: int
    gateway_port: int
    node: str | None = None  # the host name of the node it runs on (redundant sites)
    db_node: str | None = None  # that node's database node (allinone/replicated_db.py names)


def plan(
    state_dir: Path,
    layout: Layout | None,
    redundant: bool,
    listen: str,
    api_listen: str | None,
    api_port: int,
    gateway_port: int,
) -> list[ControllerSpot]:
    """The site's controllers, first the one that makes the admin token."""
    if not redundant or layout is None:
        return [
            ControllerSpot(FIRST, state_dir / FIRST, listen, api_listen, api_port, gateway_port)
        ]
    from edgecloud.allinone.replicated_db import node_name  # only a redundant site needs it

    spots = []
    for node in layout.nodes[:REDUNDANT_CONTROLLERS]:
        child = FIRST if node.index == 1 else f"{FIRST}-n{node.index}"
        spots.append(
            ControllerSpot(
                child,
                state_dir / child,
                node.address,
                None,
                api_port,
                gateway_port,
                node.host,
                node_name(node.index),
            )
        )
    return spots


def ensure_site_secret(state_dir: Path) -> Path:
    """STATE/site-secret: made once (43 random URL-safe characters, mode 0600), then kept:
    the site CA's key in the store is encrypted with it."""
    path = state_dir / SECRET_FILE
    if not path.exists():
        files.write_atomic(path, secrets.token_urlsafe(32) + "\n")
    files.restrict(path)
    return path
