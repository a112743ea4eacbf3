"""`edgecloud controller` and `edgecloud agent`: run the two long-lived processes.

Both run in the foreground until SIGTERM/SIGINT and log to stderr. `edgecloud up` starts them
for an all-in-one site; on a multi-node site the agent runs on each compute node with
`--join TOKEN` the first time (token from `edgecloud host add NAME`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

import click

from edgecloud.errors import EdgecloudError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_CREDENTIALS_REFUSED = 3


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr
    )
    for noisy in ("httpx", "asyncio", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _until_signal(stopping: asyncio.Event, work: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await work


@click.command("controller")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Controller state (PKI, SQLite store, admin token).",
)
@click.option(
    "--db",
    "db_url",
    help="Store URL, e.g. postgresql+asyncpg://user:pass@host/db [default: SQLite in the state dir].",
)
@click.option(
    "--listen",
    default="127.0.0.1",
    show_default=True,
    help="Address for the agent gateway, and for the API unless --api-listen is given.",
)
@click.option(
    "--api-listen",
    metavar="ADDRESS",
    help="Address for the REST API alone (e.g. the management network only) [default: --listen].",
)
@click.option(
    "--advertise", help="Address agents should dial (put in join tokens) [default: --listen]."
)
@click.option("--api-port", type=click.IntRange(0, 65535), default=7443, show_default=True)
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=7444, show_default=True)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True
)
@click.option(
    "--heartbeat-misses",
    type=click.IntRange(2, 100),
    default=3,
    show_default=True,
    help="Silent heartbeat intervals before a host is lost (a two-node site: e.g. "
    "--heartbeat-interval 0.25 --heartbeat-misses 4 detects a dead host within about 1 s).",
)
@click.option(
    "--host-recovery",
    is_flag=True,
    help="Rebuild a failed host's VNFs on other hosts (per VNF recovery policy); agents stop "
    "their recoverable VNFs by themselves when cut off from the controllers for longer than "
    "the failure timeout.",
)
@click.option(
    "--no-protection",
    is_flag=True,
    help="Turn off admission control, resume-by-version and multi-host-loss avoidance "
    "(the baseline for `edgecloud sim`; never in production).",
)
@click.option(
    "--max-handshakes",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Agent TLS handshakes in flight.",
)
@click.option(
    "--max-syncs",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Agent sessions in their initial sync.",
)
@click.option(
    "--max-image-transfers",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Image blobs streaming to nodes at once (the rest wait, then are told to retry).",
)
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the gateway's counters (JSON) here every second.",
)
@click.option(
    "--site-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PostgreSQL: keep the site CA in the store, its key encrypted with the secret in this "
    "file (at least 16 characters); every controller of the site is given the same file.",
)
@click.option(
    "--image-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where image blobs live [default: STATE/images]; controllers on several machines "
    "point it at one shared file system.",
)
@click.option(
    "--db-witness",
    metavar="URI",
    help="A store replicated by pg_auto_failover: its monitor's URI; the leading controller "
    "raises alarm 100.010 while the database could not fail over.",
)
@click.option(
    "--db-node",
    metavar="NAME",
    help="With --db-witness and --host-recovery: this node's database node, as the monitor "
    "names it; while the store does not answer, a monitor that reaches only this node lets "
    "the controller go on answering its agents (they do not fence their VNFs).",
)
@click.option(
    "--central-token",
    metavar="TOKEN",
    help="A site join token from central (edgecloud central site add NAME): the site joins "
    "central once and keeps one outbound connection to it (kept in STATE/central/).",
)
@click.option("-v", "--verbose", is_flag=True)
def controller(
    state_dir: Path,
    db_url: str | None,
    listen: str,
    api_listen: str | None,
    advertise: str | None,
    api_port: int,
    gateway_port: int,
    heartbeat_interval: float,
    heartbeat_misses: int,
    host_recovery: bool,
    no_protection: bool,
    max_handshakes: int,
    max_syncs: int,
    max_image_transfers: int,
    stats_file: Path | None,
    site_secret_file: Path | None,
    image_dir: Path | None,
    db_witness: str | None,
    db_node: str | None,
    central_token: str | None,
    verbose: bool,
) -> None:
    """Run a site controller (REST API + agent gateway) in the foreground."""
    from edgecloud import staging
    from edgecloud.controller.site import Controller, ControllerConfig
    from edgecloud.gateway.admission import Protection
    from edgecloud.gateway.image_serving import TransferLimits

    _logging(verbose)
    if central_token is not None:  # kept for the controller to join with (central_link.py)
        from edgecloud.controller import central_identity

        central_identity.save_token(state_dir / "central", central_token)
    staging.reexec_if_needed(state_dir, sys.argv[1:])  # the release this controller runs
    config = ControllerConfig(
        state_dir=state_dir,
        db_url=db_url,
        listen=listen,
        api_listen=api_listen,
        advertise=advertise,
        api_port=api_port,
        gateway_port=gateway_port,
        heartbeat_interval=heartbeat_interval,
        heartbeat_misses=heartbeat_misses,
        host_recovery=host_recovery,
        protection=Protection(
            enabled=not no_protection, max_handshakes=max_handshakes, max_syncs=max_syncs
        ),
        stats_file=stats_file,
        image_transfers=TransferLimits(max_transfers=max_image_transfers),
        site_secret=_site_secret(site_secret_file),
        image_dir=image_dir,
        db_witness=db_witness,
        db_node=db_node,
    )

    site = Controller(config)

    async def run() -> bool:
        await _until_signal(site.stopping, asyncio.ensure_future(site.run()))
        return site.restart_requested

    try:
        restart = asyncio.run(run())
    except OSError as exc:
        raise EdgecloudError(f"the controller could not start: {exc.strerror or exc}") from exc
    if restart:  # its turn in the site's upgrade (controller/self_upgrade.py)
        _reexec(state_dir, _pinned(sys.argv[1:], site.ports))


def _pinned(argv: list[str], ports: dict[str, int]) -> list[str]:
    """``argv`` with each port option set to the port it bound (``--api-port 0`` took a free
    one: the controller comes back on it, where its agents and clients find it)."""
    out = list(argv)
    for option, port in ports.items():
        for i, arg in enumerate(out):
            if arg == option and i + 1 < len(out):
                out[i + 1] = str(port)
            elif arg.startswith(option + "="):
                out[i] = f"{option}={port}"
    return out


def _reexec(state_dir: Path, argv: list[str] | None = None) -> None:
    """Become the release selected in ``state_dir`` (staging.py), same PID and arguments."""
    from edgecloud import staging

    release = staging.selected(state_dir)
    args = sys.argv[1:] if argv is None else argv
    command, env = staging.exec_command(state_dir, release, args, os.environ)
    logging.getLogger(__name__).warning("re-executing as release %s", release or "installed")
    os.execve(command[0], command, env)


def _site_secret(path: Path | None) -> str | None:
    """The secret in ``path`` (None without one); one sentence when it cannot be used."""
    from edgecloud.controller.shared_ca import check_secret

    if path is None:
        return None
    try:
        return check_secret(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecloudError(f"cannot read the site secret file {path}: {exc}") from exc


@click.command("agent")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Agent state (certificate, desired state, driver files).",
)
@click.option(
    "--join",
    "join_token",
    help="One-time join token from `edgecloud host add NAME` (first start only).",
)
@click.option(
    "--driver",
    type=click.Choice(["fake", "libvirt"]),
    default="libvirt",
    show_default=True,
    help="Compute driver: real VMs, or fake (in memory, for tests and the simulator).",
)
@click.option(
    "--network-driver",
    type=click.Choice(["fake", "ovs"]),
    help="Network driver [default: fake for fake, ovs for libvirt].",
)
@click.option("--resync-interval", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True)
@click.option(
    "--bridge",
    default="br-int",
    show_default=True,
    help="OVS integration bridge (ovs network driver).",
)
@click.option(
    "--uplink",
    metavar="PORT",
    help="Trunk port of the bridge towards the other nodes (every network's VLAN crosses it); "
    "a NIC name, added to the bridge if missing [default: none, a single node].",
)
@click.option(
    "--libvirt-uri",
    metavar="URI",
    default="qemu:///system",
    show_default=True,
    help="The hypervisor the libvirt driver runs VNFs on.",
)
@click.option(
    "--pci-device",
    "pci_devices",
    multiple=True,
    metavar="ADDRESS[=KIND]",
    help="A host PCI device VNFs may be given (repeat); KIND: sriov-vf (default) or "
    "pci-passthrough. Nothing else is ever handed to a guest.",
)
@click.option(
    "--address",
    metavar="IP",
    help="This node's address on the site's internal network: put in its certificate at "
    "enrollment, where its hypervisor takes live migrations.",
)
@click.option("-v", "--verbose", is_flag=True)
def agent(
    state_dir: Path,
    join_token: str | None,
    driver: str,
    network_driver: str | None,
    resync_interval: float,
    bridge: str,
    uplink: str | None,
    libvirt_uri: str,
    pci_devices: tuple[str, ...],
    address: str | None,
    verbose: bool,
) -> None:
    """Run the node agent: dial the controller over mTLS and run this node's VNFs."""
    from edgecloud import staging
    from edgecloud.agent import identity
    from edgecloud.agent.connection import CredentialsRefused
    from edgecloud.agent.enrolling import enroll
    from edgecloud.agent.runner import Agent
    from edgecloud.drivers.readiness import host_problems
    from edgecloud.drivers.registry import DEFAULT_NETWORK_FOR
    from edgecloud.openfiles import raise_limit
    from edgecloud.pci import parse_allowlist

    _logging(verbose)
    staging.reexec_if_needed(state_dir, sys.argv[1:])  # the release this node runs
    raise_limit()
    if address is not None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            click.echo(f"error: --address {address!r} is not an IP address", err=True)
            sys.exit(2)
    allowlist = parse_allowlist(pci_devices)
    problems = host_problems(driver, network_driver or DEFAULT_NETWORK_FOR[driver], libvirt_uri)
    if problems:
        click.echo(
            f"error: this host is not prepared for real VMs ({'; '.join(problems)}): run "
            "scripts/bootstrap-host as root first, or use --driver fake",
            err=True,
        )
        sys.exit(1)

    async def run() -> bool:
        who = (
            await enroll(join_token, state_dir, address) if join_token else identity.load(state_dir)
        )
        node = Agent(
            who,
            compute=driver,
            network=network_driver,
            resync_interval=resync_interval,
            bridge=bridge,
            pci_devices=allowlist,
            libvirt_uri=libvirt_uri,
            uplink=uplink,
            address=address,
        )
        await _until_signal(node.stopping, asyncio.ensure_future(node.run()))
        return node.restart_requested

    try:
        restart = asyncio.run(run())
    except CredentialsRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CREDENTIALS_REFUSED)
    if restart:  # the controller asked for another release (staging.py)
        _reexec(state_dir)


def register(cli: click.Group) -> None:
    cli.add_command(controller)
    cli.add_command(agent)
