"""`edgecloud firewall-profile`: the firewall rules this site needs, from its actual setup.

Where the controller listens comes from the running controller's own record
(``controller.json`` in its state folder: the address and port agents dial, the API's URL);
the nodes' internal addresses from the API (``host list``), or from ``--node-address``. The
rules themselves are edgecloud/firewall.py's (pure); this module only gathers and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import click

from edgecloud.cli.context import get_client
from edgecloud.cli.site import default_state_dir
from edgecloud.errors import ClientError
from edgecloud.firewall import FORMATS, Format, SiteEndpoints, profile, render


@click.command("firewall-profile")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The site's state folder (`edgecloud up`) or the controller's (`edgecloud "
    "controller`) [default: ~/.local/state/edgecloud].",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="nft", show_default=True)
@click.option(
    "--node-address",
    "node_addresses",
    multiple=True,
    metavar="IP",
    help="A node's internal address (repeat) [default: the hosts' addresses, from the API].",
)
@click.option(
    "--api-from",
    metavar="CIDR",
    help="Who may reach the REST API, e.g. the management network [default: anyone].",
)
@click.pass_context
def firewall_profile(
    ctx: click.Context,
    state_dir: Path | None,
    fmt: str,
    node_addresses: tuple[str, ...],
    api_from: str | None,
) -> None:
    """Print the firewall rules this site needs (nftables or iptables lines): a node dials
    one TCP port on the controller and listens for nothing but the other nodes' migrations."""
    record = _controller_record((state_dir or default_state_dir()).absolute())
    nodes = node_addresses or _node_addresses(ctx)
    site = SiteEndpoints(
        gateway=_host_port(record["gateway"]),
        api=_url_host_port(record["api_url"]),
        nodes=tuple(sorted(set(nodes))),
        api_from=api_from,
    )
    click.echo(
        f"# edgecloud firewall profile: agent gateway {record['gateway']}, API "
        f"{record['api_url']}, nodes {', '.join(site.nodes) or 'none with an address'}"
    )
    click.echo("# edgecloud's needs only: keep what the machine needs itself (SSH, DNS, NTP,")
    click.echo("# a remote database) before loading these; they drop everything else.")
    for line in render(profile(site), cast(Format, fmt)):
        click.echo(line)


def _controller_record(state_dir: Path) -> dict[str, Any]:
    for path in (state_dir / "controller.json", state_dir / "controller" / "controller.json"):
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read the controller's record {path}: {exc}") from exc
        if isinstance(record, dict) and {"gateway", "api_url"} <= record.keys():
            return record
        raise ClientError(f"{path} does not say where the controller listens")
    raise ClientError(
        f"no running controller's record (controller.json) in {state_dir} or its controller/ "
        "folder: start the site, or give its folder with --state-dir"
    )


def _node_addresses(ctx: click.Context) -> list[str]:
    hosts = get_client(ctx).list_hosts()
    return [str(h["address"]) for h in hosts if h.get("address")]


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return str(parts.hostname), int(parts.port or 443)


def register(cli: click.Group) -> None:
    cli.add_command(firewall_profile)
