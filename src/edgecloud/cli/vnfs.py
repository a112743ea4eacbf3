"""`edgecloud vnf ...`: create, inspect, power and delete VNF instances (VMs).

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. A --nic SPEC is
parsed here into one entry of the request's "nics" list; their order is the vNIC order the
guest sees. --wait polls through Client.wait_for_vnf with a progress line on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, wait_options
from edgecloud.client import Client
from edgecloud.errors import ClientError, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])
COLUMNS = ("name", "status", "power_state", "binding", "host", "image", "flavor", "updated_at")
NIC_KEYS = {
    "model": "model",
    "mac": "mac",
    "tag": "tag",
    "slot": "pci_slot",
    "hostdev": "hostdev_address",
    "ip": "ip_address",  # one fixed IP: moved into "fixed_ips" by parse_nic
    "subnet": "subnet",
}
FIXED_IP_KEYS = ("ip_address", "subnet")
MAX_USER_DATA = 65536  # bytes, as the server (Nova's limit)
ACTION_TARGETS = {"start": "running", "stop": "stopped"}


class NicSpec(click.ParamType):
    """NETWORK[,model=M][,mac=X][,tag=T][,slot=N][,hostdev=ADDR][,ip=ADDR][,subnet=S]
    -> one request vNIC."""

    name = "SPEC"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            return parse_nic(value)
        except ValueError as exc:
            self.fail(f"'{value}': {exc}", param, ctx)


def parse_nic(spec: str) -> dict[str, Any]:
    """Parse a --nic SPEC; ValueError names the bad part."""
    network, *options = (part.strip() for part in spec.split(","))
    if not network or "=" in network:
        raise ValueError("it must start with the network name, e.g. lan,model=virtio")
    nic: dict[str, Any] = {"network": network}
    for option in options:
        key, value = _option(option)
        if NIC_KEYS[key] in nic:
            raise ValueError(f"{key} is given twice")
        nic[NIC_KEYS[key]] = _slot(value) if key == "slot" else value
    fixed = {k: nic.pop(k) for k in FIXED_IP_KEYS if k in nic}
    if fixed:
        nic["fixed_ips"] = [fixed]
    return nic


def _option(option: str) -> tuple[str, str]:
    key, equals, value = (part.strip() for part in option.partition("="))
    if not option:
        raise ValueError("there is an empty part between commas")
    if not equals or not value:
        raise ValueError(f"'{option}' is not KEY=VALUE")
    if key not in NIC_KEYS:
        raise ValueError(f"unknown key '{key}' (known: {', '.join(NIC_KEYS)})")
    return key, value


def _slot(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"slot={value} is not a number")
    return int(value)


class Progress:
    """on_progress for Client.wait_for_vnf: one stderr line each time the status changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = ""

    def __call__(self, vnf: dict[str, Any]) -> None:
        line = f"vnf {self.name}: {vnf.get('status')}"
        if vnf.get("host"):
            line += f" on {vnf['host']}"
        if line != self.last:
            click.echo(line, err=True)
            self.last = line


def settle(client: Client, name: str, target: str, timeout: float) -> dict[str, Any]:
    """Wait until the VNF reaches `target` status; ClientError with its fault on error."""
    vnf = client.wait_for_vnf(name, {target, "error"}, timeout, on_progress=Progress(name))
    if vnf.get("status") == "error" and target != "error":
        raise ClientError(f"vnf {name} failed: {vnf.get('fault') or 'no fault was recorded'}")
    return vnf


@click.group()
def vnf() -> None:
    """VNF instances."""


@vnf.command()
@click.argument("name")
@click.option("--image", required=True, help="Image name.")
@click.option("--flavor", required=True, help="Flavor name.")
@click.option(
    "--nic",
    "nics",
    type=NicSpec(),
    multiple=True,
    help="NETWORK[,model=M][,mac=X][,tag=T][,slot=N][,hostdev=ADDR][,ip=ADDR][,subnet=S]; "
    "repeat, in vNIC order.",
)
@click.option("--anti-affinity", "group", metavar="GROUP", help="Never share a host with GROUP.")
@click.option("--key-name", help="Key pair whose public key the guest gets.")
@click.option(
    "--user-data",
    "user_data",
    type=click.File("rb"),
    help="File given to the guest as user data (at most 64 KiB), e.g. a cloud-config.",
)
@click.option("--hostname", help="The guest's hostname [default: made from NAME].")
@click.option("--stopped", is_flag=True, help="Create it without starting it.")
@click.option(
    "--recovery-policy",
    type=click.Choice(["recover", "restart", "none"]),
    help="When its host fails: rebuild it on another host (recover, the default), start it "
    "again when the host returns (restart), or leave it stopped (none).",
)
@wait_options()
@json_option
@pass_client
def create(
    client: Client,
    name: str,
    image: str,
    flavor: str,
    nics: tuple[dict[str, Any], ...],
    group: str | None,
    key_name: str | None,
    user_data: BinaryIO | None,
    hostname: str | None,
    stopped: bool,
    recovery_policy: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create VNF NAME (and start it, unless --stopped)."""
    desired = "stopped" if stopped else None
    data = user_data.read(MAX_USER_DATA + 1) if user_data is not None else None
    if data is not None and len(data) > MAX_USER_DATA:
        raise InvalidInput(f"--user-data is over the limit of {MAX_USER_DATA} bytes (64 KiB)")
    created = client.create_vnf(
        name,
        image,
        flavor,
        nics,
        group,
        desired,
        key_name=key_name,
        user_data=data,
        hostname=hostname,
        recovery_policy=recovery_policy,
    )
    if wait:
        created = settle(client, name, "stopped" if stopped else "running", timeout)
    emit(created, as_json)


@vnf.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List VNFs."""
    emit(client.list_vnfs(), as_json, COLUMNS)


@vnf.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one VNF with its vNICs and their addresses."""
    found = client.get_vnf(name)
    emit(found if as_json else addresses_as_text(found), as_json)


def addresses_as_text(vnf: dict[str, Any]) -> dict[str, Any]:
    """The VNF with each vNIC's fixed_ips as 'ADDRESS (SUBNET)' strings, for a table."""
    nics = [
        {**nic, "fixed_ips": [f"{ip['ip_address']} ({ip['subnet']})" for ip in nic["fixed_ips"]]}
        if nic.get("fixed_ips")
        else nic
        for nic in vnf.get("nics", [])
    ]
    return {**vnf, "nics": nics}


@vnf.command()
@click.argument("name")
@wait_options()
@pass_client
def delete(client: Client, name: str, wait: bool, timeout: float) -> None:
    """Delete VNF NAME."""
    client.delete_vnf(name)
    if wait:
        client.wait_for_vnf_gone(name, timeout, on_progress=Progress(name))
        click.echo(f"vnf {name} deleted")
    else:
        click.echo(f"vnf {name} is being deleted")


def action_command(action: str, summary: str) -> click.Command:
    """`vnf start|stop|reboot NAME`; start and stop can --wait for the new status."""

    @click.argument("name")
    @pass_client
    def act(client: Client, name: str, wait: bool = False, timeout: float = 0) -> None:
        client.vnf_action(name, action)
        if wait:
            settle(client, name, ACTION_TARGETS[action], timeout)
            click.echo(f"vnf {name} is {ACTION_TARGETS[action]}")
        else:
            click.echo(f"vnf {name}: {action} requested")

    act.__doc__ = summary
    return click.command(action)(wait_options()(act) if action in ACTION_TARGETS else act)


@vnf.command()
@click.argument("name")
@pass_client
def console(client: Client, name: str) -> None:
    """Print the serial console output of VNF NAME."""
    output = client.vnf_console(name)["output"]
    click.echo(output, nl=not output.endswith("\n"))


@vnf.command()
@click.argument("name")
@click.option(
    "--nic", "nic", type=NicSpec(), required=True, help="NETWORK[,model=M][,mac=X][,tag=T][,slot=N]"
)
@click.option(
    "--position", type=click.IntRange(0, 27), help="Declared position [default: after the last]."
)
@json_option
@pass_client
def attach(
    client: Client, name: str, nic: dict[str, Any], position: int | None, as_json: bool
) -> None:
    """Hot-add a vNIC to VNF NAME; the other vNICs keep their PCI slots."""
    emit(client.attach_vnic(name, nic, position), as_json)


@vnf.command()
@click.argument("name")
@click.argument("position", type=click.IntRange(0, 27))
@json_option
@pass_client
def detach(client: Client, name: str, position: int, as_json: bool) -> None:
    """Hot-remove the vNIC at POSITION from VNF NAME; the others stay where they are."""
    emit(client.detach_vnic(name, position), as_json)


vnf.add_command(action_command("start", "Start VNF NAME."))
vnf.add_command(action_command("stop", "Stop VNF NAME (power off)."))
vnf.add_command(action_command("reboot", "Reboot VNF NAME."))


def register(cli: click.Group) -> None:
    cli.add_command(vnf)
