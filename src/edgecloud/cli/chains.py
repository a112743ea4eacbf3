"""`edgecloud chain ...`: service chains, changed make-before-break, and what a change cost.

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. Each service is
a stack made from a template file, read here with the helpers of cli/stacks.py. Every
change is answered at once while the controller carries it out; --wait follows it through
Client.wait_for_chain with a progress line per phase on stderr, then prints the result
("chain c1: insert done, switchover 12.3 ms; path: a -> b") or fails with the chain's error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, wait_options
from edgecloud.cli.stacks import parameter_options, read_parameters, read_template, template_option
from edgecloud.client import Client

F = TypeVar("F", bound=Callable[..., Any])
COLUMNS = ("name", "customer", "host", "status", "path", "operation", "last_error")
SERVICE_COLUMNS = ("position", "name", "state", "customer_vnic", "network_vnic", "instance_id")


class ServiceSpec(click.ParamType):
    """NAME=TEMPLATE_FILE -> (name, path)."""

    name = "NAME=FILE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, Path]:
        if isinstance(value, tuple):
            return value
        name, equals, path = (part.strip() for part in str(value).partition("="))
        if not equals or not name or not path:
            self.fail(f"'{value}' is not NAME=TEMPLATE_FILE", param, ctx)
        return name, Path(path)


class Progress:
    """on_progress for Client.wait_for_chain: one stderr line each time the phase changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = ""

    def __call__(self, chain: dict[str, Any]) -> None:
        operation = chain.get("operation")
        if operation:
            state = f"{operation.get('kind')} {operation.get('phase')}"
        elif not chain.get("path_applied", True):
            state = "waiting for the host to apply the path"
        else:
            state = str(chain.get("status"))
        line = f"chain {self.name}: {state}"
        if line != self.last:
            click.echo(line, err=True)
            self.last = line


def path_text(chain: dict[str, Any]) -> str:
    """The path as 'a -> b -> c' ('(empty)' for a chain with no service in it)."""
    return " -> ".join(chain.get("path") or []) or "(empty)"


def result_line(chain: dict[str, Any], kind: str, since: dict[str, Any] | None = None) -> str:
    """'chain c1: insert done, switchover 12.3 ms; path: a -> b'. A last_result that was
    already there in `since` (before the change) belongs to an earlier operation."""
    result = chain.get("last_result") or {}
    if since is not None and result == since.get("last_result"):
        result = {}
    line = f"chain {chain.get('name')}: {kind} done"
    if result.get("switchover_ms") is not None:
        line += f", switchover {result['switchover_ms']} ms"
    return f"{line}; path: {path_text(chain)}"


def service(
    name: str,
    template: Path,
    parameters: dict[str, Any] | None = None,
    health_timeout: float | None = None,
) -> dict[str, Any]:
    """One service of a request: its name, the template's text, its parameters."""
    spec: dict[str, Any] = {
        "name": name,
        "template": read_template(template),
        "parameters": parameters or {},
    }
    if health_timeout is not None:
        spec["health_timeout"] = health_timeout
    return spec


def change_options(command: F) -> F:
    """--wait/--no-wait, --timeout and --json for the commands that change a chain."""
    return wait_options(600, "Wait until the change is done and applied.")(json_option(command))


def health_timeout_option(command: F) -> F:
    return click.option(
        "--health-timeout",
        type=click.FloatRange(1, 3600),
        metavar="SECONDS",
        help="How long a new service may take to become healthy [default: the controller's].",
    )(command)


def follow(
    client: Client, started: dict[str, Any], kind: str, wait: bool, timeout: float, as_json: bool
) -> None:
    """After a change request: wait for it (with --wait) and print the outcome."""
    name = str(started.get("name"))
    if not wait:
        if as_json:
            emit(started, True)
        else:
            click.echo(
                f"chain {name}: {kind} started; follow it with `edgecloud chain show {name}`"
            )
        return
    done = client.wait_for_chain(name, timeout, on_progress=Progress(name), since=started)
    if as_json:
        emit(done, True)
    else:
        click.echo(result_line(done, kind, started))


def for_table(chain: dict[str, Any]) -> dict[str, Any]:
    """The chain with its path as 'a -> b' and its services in a fixed column order."""
    services = sorted(chain.get("services") or [], key=lambda s: s.get("position") or 0)
    return {
        **chain,
        "path": path_text(chain),
        "services": [{key: s.get(key) for key in SERVICE_COLUMNS} for s in services],
    }


def _list_row(chain: dict[str, Any]) -> dict[str, Any]:
    operation = chain.get("operation")
    busy = f"{operation.get('kind')} ({operation.get('phase')})" if operation else None
    return {**chain, "path": path_text(chain), "operation": busy}


@click.group()
def chain() -> None:
    """Service chains: a customer's traffic through VNFs in order."""


@chain.command()
@click.argument("name")
@click.option("--customer", required=True, help="The customer the chain serves.")
@click.option(
    "--host",
    required=True,
    help="The host of the ingress and egress ports (the services may run on any host).",
)
@click.option("--ingress", "ingress_port", required=True, metavar="PORT", help="Customer port.")
@click.option("--egress", "egress_port", required=True, metavar="PORT", help="Network port.")
@click.option(
    "--service",
    "services",
    type=ServiceSpec(),
    multiple=True,
    help="NAME=TEMPLATE_FILE; repeat, in path order (customer side first).",
)
@health_timeout_option
@change_options
@pass_client
def create(
    client: Client,
    name: str,
    customer: str,
    host: str,
    ingress_port: str,
    egress_port: str,
    services: tuple[tuple[str, Path], ...],
    health_timeout: float | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create chain NAME from ingress through the --service VNFs to egress."""
    specs = [service(svc, path, health_timeout=health_timeout) for svc, path in services]
    started = client.create_chain(name, customer, host, ingress_port, egress_port, specs)
    if wait or as_json:
        follow(client, started, "create", wait, timeout, as_json)
    else:
        emit(for_table(started), False)


@chain.command()
@click.argument("name")
@click.argument("new", metavar="SERVICE")
@template_option
@parameter_options
@click.option("--before", metavar="SERVICE", help="Put it just before SERVICE.")
@click.option("--after", metavar="SERVICE", help="Put it just after SERVICE.")
@click.option("--first", is_flag=True, help="Put it first (on the customer side).")
@click.option("--last", is_flag=True, help="Put it last (on the network side) [default].")
@health_timeout_option
@change_options
@pass_client
def insert(
    client: Client,
    name: str,
    new: str,
    template: Path,
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    before: str | None,
    after: str | None,
    first: bool,
    last: bool,
    health_timeout: float | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Insert SERVICE into chain NAME; traffic moves only once it is healthy."""
    places = [given for given in (before, after, first or None, last or None) if given]
    if len(places) > 1:
        raise click.UsageError("give at most one of --before, --after, --first and --last")
    at = "first" if first else "last" if last else None
    values = read_parameters(parameters_file, parameters)
    spec = service(new, template, values, health_timeout)
    started = client.chain_insert(name, spec, before=before, after=after, at=at)
    follow(client, started, "insert", wait, timeout, as_json)


@chain.command()
@click.argument("name")
@click.argument("old")
@click.argument("new")
@template_option
@parameter_options
@health_timeout_option
@change_options
@pass_client
def replace(
    client: Client,
    name: str,
    old: str,
    new: str,
    template: Path,
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    health_timeout: float | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Replace service OLD of chain NAME by NEW, in the same place, make-before-break."""
    values = read_parameters(parameters_file, parameters)
    spec = service(new, template, values, health_timeout)
    started = client.chain_replace(name, old, spec)
    follow(client, started, "replace", wait, timeout, as_json)


@chain.command()
@click.argument("name")
@click.argument("service_name", metavar="SERVICE")
@change_options
@pass_client
def remove(
    client: Client, name: str, service_name: str, wait: bool, timeout: float, as_json: bool
) -> None:
    """Take SERVICE out of chain NAME (its neighbours are joined first), then delete it."""
    started = client.chain_remove(name, service_name)
    follow(client, started, "remove", wait, timeout, as_json)


@chain.command()
@click.argument("name")
@click.argument("order", nargs=-1, required=True, metavar="SERVICE...")
@change_options
@pass_client
def reorder(
    client: Client, name: str, order: tuple[str, ...], wait: bool, timeout: float, as_json: bool
) -> None:
    """Put the services of chain NAME in the order given (every service, once)."""
    started = client.chain_reorder(name, order)
    follow(client, started, "reorder", wait, timeout, as_json)


@chain.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List chains with their paths."""
    chains = client.list_chains()
    emit(chains if as_json else [_list_row(c) for c in chains], as_json, COLUMNS)


@chain.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show chain NAME: its path, services, operation in progress and last result."""
    found = client.get_chain(name)
    emit(found if as_json else for_table(found), as_json)


@chain.command()
@click.argument("name")
@wait_options(600, "Wait until it is gone.")
@pass_client
def delete(client: Client, name: str, wait: bool, timeout: float) -> None:
    """Delete chain NAME: stop steering its traffic, then delete its services."""
    client.delete_chain(name)
    if wait:
        client.wait_for_chain_gone(name, timeout, on_progress=Progress(name))
        click.echo(f"chain {name} deleted")
    else:
        click.echo(f"chain {name} is being deleted")


def register(cli: click.Group) -> None:
    cli.add_command(chain)
