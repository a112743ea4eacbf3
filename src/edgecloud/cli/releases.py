"""`edgecloud version`: this CLI's release, and the configured site's: each controller's
release and the agent protocol versions it speaks, each host's release and the protocol its
session speaks (issue 12). A release before 0.2.0 did not say its release: it is 0.1.0,
protocol 1 (protocol/messages.py lists what each version adds).

Commands call the client SDK (cli/context.py) and print with cli/output.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from edgecloud import __version__
from edgecloud.cli.context import get_state
from edgecloud.cli.output import emit, json_option
from edgecloud.errors import ClientError
from edgecloud.protocol.messages import OLDEST_VERSION, PROTOCOL_VERSION
from edgecloud.upgrades.releases import BEFORE_RELEASES


def protocols(oldest: int, newest: int) -> str:
    return str(newest) if oldest == newest else f"{oldest}-{newest}"


def controller_release(c: dict[str, Any]) -> str:
    """``0.2.0 (protocols 1-2)`` for a controller row of GET /v1/controllers."""
    oldest, newest = c.get("protocols") or (1, 1)
    return f"{c.get('release') or BEFORE_RELEASES} (protocols {protocols(oldest, newest)})"


def host_release(h: dict[str, Any]) -> str:
    """``0.2.0 (protocol 2)`` for a host of GET /v1/hosts; ``-`` before its first hello."""
    if h.get("protocol") is None:
        return "-"
    return f"{h.get('release') or BEFORE_RELEASES} (protocol {h['protocol']})"


@click.command("version")
@json_option
@click.pass_context
def version(ctx: click.Context, as_json: bool) -> None:
    """Show this CLI's release and the site's: every controller's and every host's release
    and protocol version."""
    result: dict[str, Any] = {
        "cli": {"release": __version__, "protocols": [OLDEST_VERSION, PROTOCOL_VERSION]}
    }
    state = get_state(ctx)
    try:
        with state.client_factory(state.config_path) as client:
            found = client.controllers()
            hosts = client.list_hosts()
    except ClientError as exc:
        result["site"] = None
        result["unreachable"] = str(exc)
    else:
        result["site"] = {
            "controllers": [
                {k: c.get(k) for k in ("id", "release", "protocols", "leads", "up")}
                for c in found.get("controllers") or []
            ],
            "hosts": [
                {k: h.get(k) for k in ("name", "release", "protocol", "availability")}
                for h in hosts
            ],
        }
    if as_json:
        emit(result, as_json)
        return
    click.echo(
        f"edgecloud {__version__} (this CLI; agent protocols "
        f"{protocols(OLDEST_VERSION, PROTOCOL_VERSION)})"
    )
    site = result["site"]
    if site is None:
        click.echo(f"site: unknown ({result['unreachable']})")
        return
    for c in site["controllers"]:
        role = "leads" if c["leads"] else "follows"
        click.echo(f"controller {c['id']}  {controller_release(c)}  {role}")
    by_release = Counter(host_release(h) for h in site["hosts"])
    for release, count in sorted(by_release.items()):
        click.echo(f"hosts at {release}: {count}")


def register(cli: click.Group) -> None:
    cli.add_command(version)
