"""`edgecloud central ...`: run central (the orchestrator of many sites) and ask it about them.

`central up` runs central (central/run.py) in the foreground, or in the background with
--detach (`central down` stops it); the other commands talk to it through the client SDK
(client/central.py), found by its state folder (--central-dir).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgecloud.allinone.processes import alive
from edgecloud.cli.output import emit, json_option
from edgecloud.cli.stacks import parameter_options, read_parameters, read_template, template_option
from edgecloud.client.central import INFO_FILE, CentralClient, config_for
from edgecloud.errors import ClientError

SITE_COLUMNS = (
    "name", "group", "state", "release", "hosts", "vnfs", "stacks", "alarms", "sync",
    "last_seen_at",
)  # fmt: skip
TEMPLATE_COLUMNS = ("name", "kind", "revision", "description", "updated_at")
DEPLOYMENT_COLUMNS = ("name", "site", "template", "status", "message", "updated_at")
ALARM_COLUMNS = ("id", "alarm_id", "severity", "entity", "reason", "state", "raised_at")
READY_TIMEOUT = 30.0
META = "edgecloud.central_dir"


def default_central_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgecloud-central"


@click.group()
@click.option(
    "--central-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGECLOUD_CENTRAL_DIR",
    help="Central's state folder [default: $XDG_STATE_HOME/edgecloud-central].",
)
@click.pass_context
def central(ctx: click.Context, central_dir: Path | None) -> None:
    """Central: one orchestrator for many sites (each site dials out to it)."""
    ctx.meta[META] = (central_dir or default_central_dir()).absolute()  # shared by subcommands


def _dir(ctx: click.Context) -> Path:
    return Path(ctx.meta.get(META, default_central_dir()))


def _client(ctx: click.Context) -> CentralClient:
    return CentralClient(config_for(_dir(ctx)))


@central.command()
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address of the site port.")
@click.option("--api-listen", metavar="ADDRESS", help="The API's own address [default: --listen].")
@click.option("--api-port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option("--site-port", type=click.IntRange(0, 65535), default=8444, show_default=True)
@click.option(
    "--advertise",
    metavar="HOST[:PORT]",
    help="Address sites dial, in site join tokens (a port when they reach the site port "
    "through a NAT or proxy) [default: --listen and the site port].",
)
@click.option("--db", "db_url", help="Store URL [default: SQLite in the state folder].")
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True
)
@click.option(
    "--no-protection",
    is_flag=True,
    help="Turn the site port's admission control off (the simulator's baseline).",
)
@click.option("--detach", is_flag=True, help="Run in the background; stop with `central down`.")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def up(ctx: click.Context, detach: bool, verbose: bool, **options: Any) -> None:
    """Start central (its API and the port sites dial out to)."""
    state = _dir(ctx)
    if (info := _info(state)) and alive(int(info.get("pid", 0))):
        raise ClientError(f"central is already running from {state} (API {info['api_url']})")
    if detach:
        _detach(state, options, verbose)
        return
    from edgecloud.central.run import Central, CentralConfig
    from edgecloud.cli.daemons import _logging, _until_signal
    from edgecloud.gateway.admission import Protection

    _logging(verbose)
    protection = Protection(enabled=not options.pop("no_protection"))
    process = Central(CentralConfig(state_dir=state, protection=protection, **options))

    async def run() -> None:
        await _until_signal(process.stopping, asyncio.ensure_future(process.run()))

    try:
        asyncio.run(run())
    except OSError as exc:
        raise ClientError(f"central could not start: {exc.strerror or exc}") from exc


def _detach(state: Path, options: dict[str, Any], verbose: bool) -> None:
    from edgecloud import files

    files.private_dir(state)
    args = [sys.executable, "-m", "edgecloud", "central", "--central-dir", str(state), "up"]
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}".replace("--db-url", "--db")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    if verbose:
        args.append("--verbose")
    (state / INFO_FILE).unlink(missing_ok=True)
    with (state / "central.log").open("ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while (info := _info(state)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise ClientError(f"central did not start: see {state / 'central.log'}")
        time.sleep(0.1)
    click.echo(f"central running: API {info['api_url']}, sites dial {info['site_gateway']}")


@central.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the central that runs from the state folder."""
    state = _dir(ctx)
    info = _info(state)
    if info is None or not alive(pid := int(info.get("pid", 0))):
        raise ClientError(f"no central is running from {state}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    click.echo("central stopped")


@central.command()
@json_option
@click.pass_context
def fleet(ctx: click.Context, as_json: bool) -> None:
    """The fleet at a glance: sites by state, alarms over all sites."""
    with _client(ctx) as client:
        emit(client.fleet(), as_json)


@central.group()
def site() -> None:
    """Sites central orchestrates."""


@site.command("add")
@click.argument("name")
@click.option("--group", help="A group to deploy to and upgrade by.")
@click.option("--token-ttl", type=click.FloatRange(1, 30 * 24 * 3600), help="Seconds [24 h].")
@json_option
@click.pass_context
def add_site(
    ctx: click.Context, name: str, group: str | None, token_ttl: float | None, as_json: bool
) -> None:
    """Add a site; prints its one-time join token (edgecloud up --central-token TOKEN)."""
    with _client(ctx) as client:
        answer = client.add_site(name, token_ttl, group)
    if as_json:
        emit(answer, True)
    else:
        click.echo(answer["join_token"])


@site.command("list")
@json_option
@click.pass_context
def list_sites(ctx: click.Context, as_json: bool) -> None:
    """Every site: state, release, inventory and active alarms."""
    with _client(ctx) as client:
        sites = client.list_sites()
    emit(sites if as_json else [_row(s) for s in sites], as_json, SITE_COLUMNS)


@site.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show_site(ctx: click.Context, name: str, as_json: bool) -> None:
    """One site in full."""
    with _client(ctx) as client:
        emit(client.get_site(name), as_json)


@site.command("token")
@click.argument("name")
@click.pass_context
def site_token(ctx: click.Context, name: str) -> None:
    """A new join token for the site (its current certificate stops working)."""
    with _client(ctx) as client:
        click.echo(client.new_site_token(name)["join_token"])


@site.command("delete")
@click.argument("name")
@click.pass_context
def delete_site(ctx: click.Context, name: str) -> None:
    """Forget a site (its link is closed; the site goes on by itself)."""
    with _client(ctx) as client:
        client.delete_site(name)


@central.group()
def alarm() -> None:
    """Alarms central raises about its sites."""


@alarm.command("list")
@click.option("--all", "all_", is_flag=True, help="Include cleared alarms.")
@json_option
@click.pass_context
def list_alarms(ctx: click.Context, all_: bool, as_json: bool) -> None:
    """Central's alarms (a site offline, ...)."""
    with _client(ctx) as client:
        emit(client.list_central_alarms(all=all_), as_json, ALARM_COLUMNS)


@central.group()
def template() -> None:
    """The catalogue: service templates (HOT) central deploys to sites."""


@template.command("add")
@click.argument("name")
@template_option
@click.option(
    "--kind",
    type=click.Choice(["stack", "chain"]),
    default="stack",
    show_default=True,
    help="stack: a HOT template; chain: a service chain of catalogue stack templates (YAML: "
    "customer, host, ingress_port, egress_port, services [{name, template, parameters}]).",
)
@click.option("--description", default="", help="What it is.")
@json_option
@click.pass_context
def add_template(
    ctx: click.Context, name: str, template: Path, kind: str, description: str, as_json: bool
) -> None:
    """Add a template to the catalogue (checked now)."""
    with _client(ctx) as client:
        emit(client.add_template(name, read_template(template), description, kind), as_json)


@template.command("update")
@click.argument("name")
@template_option
@json_option
@click.pass_context
def update_template(ctx: click.Context, name: str, template: Path, as_json: bool) -> None:
    """A new revision of a template: every site that runs it gets it."""
    with _client(ctx) as client:
        emit(client.update_template(name, read_template(template)), as_json)


@template.command("list")
@json_option
@click.pass_context
def list_templates(ctx: click.Context, as_json: bool) -> None:
    """The catalogue."""
    with _client(ctx) as client:
        emit(client.list_templates(), as_json, TEMPLATE_COLUMNS)


@template.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show_template(ctx: click.Context, name: str, as_json: bool) -> None:
    """One template, with its body."""
    with _client(ctx) as client:
        emit(client.get_template(name), as_json)


@template.command("delete")
@click.argument("name")
@click.pass_context
def delete_template(ctx: click.Context, name: str) -> None:
    """Remove a template no deployment uses."""
    with _client(ctx) as client:
        client.delete_template(name)


@central.command()
@click.argument("name")
@click.option("--template", "template_name", required=True, help="A catalogue template.")
@click.option("--site", "sites", multiple=True, help="A site; repeat for more.")
@click.option("--group", help="Every site of this group.")
@parameter_options
@json_option
@click.pass_context
def deploy(
    ctx: click.Context,
    name: str,
    template_name: str,
    sites: tuple[str, ...],
    group: str | None,
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    as_json: bool,
) -> None:
    """Deploy a catalogue template as stack NAME to sites (now, or when each is next online)."""
    values = read_parameters(parameters_file, parameters)
    with _client(ctx) as client:
        made = client.deploy(name, template_name, list(sites), group, values)
    emit(made, as_json, DEPLOYMENT_COLUMNS)


@central.command()
@click.argument("name")
@click.option("--site", "sites", multiple=True, help="A site; repeat for more.")
@click.option("--group", help="Every site of this group.")
@click.pass_context
def undeploy(ctx: click.Context, name: str, sites: tuple[str, ...], group: str | None) -> None:
    """Remove deployment NAME from sites (its stack is deleted there)."""
    with _client(ctx) as client:
        client.undeploy(name, list(sites), group)


@central.group()
def deployment() -> None:
    """What central deploys where, and how each site applied it."""


@deployment.command("list")
@click.option("--site", help="One site's only.")
@json_option
@click.pass_context
def list_deployments(ctx: click.Context, site: str | None, as_json: bool) -> None:
    """Every deployment and its status at its site (pending, in-sync, failed, conflict)."""
    with _client(ctx) as client:
        emit(client.list_deployments(site), as_json, DEPLOYMENT_COLUMNS)


def _row(site: dict[str, Any]) -> dict[str, Any]:
    inventory, alarms = site.get("inventory") or {}, site.get("alarms") or {}
    shown = " ".join(f"{k[:4]}:{v}" for k, v in alarms.items() if v) or "-"
    return {
        **site,
        "hosts": f"{inventory.get('hosts_online', 0)}/{inventory.get('hosts', 0)}",
        "vnfs": f"{inventory.get('vnfs_running', 0)}/{inventory.get('vnfs', 0)}",
        "stacks": inventory.get("stacks", 0),
        "alarms": shown,
        "sync": "in-sync"
        if site.get("in_sync")
        else f"{site.get('applied_version')}/{site.get('desired_version')}",
    }


def _info(state: Path) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((state / INFO_FILE).read_text())
        return info
    except (OSError, ValueError):
        return None


def register(cli: click.Group) -> None:
    cli.add_command(central)
