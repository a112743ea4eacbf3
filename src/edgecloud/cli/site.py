"""`edgecloud up` / `down` / `status`: an all-in-one site in one command.

`up` runs the supervisor (controller + local agent, enrolled automatically) in the foreground,
or with `--detach` in the background, waiting until the local host is online. It writes the
client config the other commands read. `down` stops a detached site cleanly. `--nodes N` runs
N nodes on this machine instead of one, each with its own hypervisor daemons and bridge,
joined by a site switch (allinone/nodes.py); `down` also takes down what a killed supervisor
left (daemons, bridges, namespaces), from the files under the state folder. The local node
runs real VMs (libvirt + Open vSwitch) unless `--driver fake` is given; a host that is not
prepared for them (drivers/readiness.py) is refused at once with one sentence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgecloud import files
from edgecloud.allinone.processes import alive
from edgecloud.cli.context import get_state
from edgecloud.cli.releases import controller_release, host_release
from edgecloud.client import Client
from edgecloud.client.config import for_site
from edgecloud.errors import ClientError

READY_TIMEOUT = 180.0


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgecloud"


def _site_info(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "site.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@click.command("up")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the site keeps its state [default: ~/.local/state/edgecloud].",
)
@click.option(
    "--driver",
    type=click.Choice(["libvirt", "fake"]),
    default="libvirt",
    show_default=True,
    help="Compute driver of the local node: real VMs, or fake (in memory, for trying things).",
)
@click.option("--db", "db_url", help="Store URL [default: SQLite in the state dir].")
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=7443,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--api-listen",
    metavar="ADDRESS",
    help="Address of the REST API alone [default: 127.0.0.1, as the agent gateway's].",
)
@click.option(
    "--gateway-port",
    type=click.IntRange(0, 65535),
    default=7444,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True
)
@click.option(
    "--heartbeat-misses",
    type=click.IntRange(2, 100),
    default=3,
    show_default=True,
    help="Silent heartbeat intervals before a host is lost.",
)
@click.option(
    "--host-recovery",
    is_flag=True,
    help="Rebuild a failed node's VNFs on the other nodes (see `edgecloud controller --help`).",
)
@click.option("--resync-interval", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True)
@click.option(
    "--bridge",
    default="br-int",
    show_default=True,
    help="OVS integration bridge of the local node (with --nodes N >= 2 each node has its own).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Nodes on this machine, each with its own hypervisor daemons and bridge, joined by a "
    "site switch (1: the local node, on the host's libvirtd and --bridge).",
)
@click.option(
    "--redundant",
    is_flag=True,
    default=None,
    help="With --nodes 2: the store on PostgreSQL replicated between two nodes, with automatic "
    "failover decided by a witness (pg_auto_failover's monitor); needs root.",
)
@click.option(
    "--central-token",
    metavar="TOKEN",
    help="A site join token from central (edgecloud central site add NAME): the site joins "
    "central and keeps one outbound connection to it.",
)
@click.option("--detach", is_flag=True, help="Run in the background; stop with `edgecloud down`.")
@click.pass_context
def up(ctx: click.Context, state_dir: Path | None, detach: bool, **options: Any) -> None:
    """Start an all-in-one site: controller + local agent, enrolled automatically."""
    state_dir = (state_dir or default_state_dir()).absolute()
    info = _site_info(state_dir)
    if info and alive(int(info["pids"]["supervisor"])):
        raise ClientError(
            f"a site is already running from {state_dir} (stop it with `edgecloud down --state-dir {state_dir}`)"
        )
    check_host(str(options["driver"]), int(options["nodes"]))
    check_redundant(options)
    central_token = options.pop("central_token", None)
    if central_token:  # never on a command line the site's processes show (ps)
        from edgecloud.controller import central_identity

        central_identity.save_token(state_dir / "controller" / "central", central_token)
    if _leftovers(state_dir, info):
        click.echo(f"took down what a previous site left in {state_dir}", err=True)
    config_path = get_state(ctx).resolved_config_path()
    if detach:
        _detach(state_dir, config_path, options)
        return
    _run_foreground(state_dir, config_path, options)


def check_host(driver: str, nodes: int = 1) -> None:
    """Refuse, in one sentence, to start real VMs on a host scripts/bootstrap-host did not
    prepare (several nodes run their own libvirtd, not the host's)."""
    from edgecloud.drivers.readiness import host_problems, node_daemon_problems
    from edgecloud.drivers.registry import DEFAULT_NETWORK_FOR

    if nodes > 1 and driver == "libvirt":
        problems = node_daemon_problems()
    else:
        problems = host_problems(driver, DEFAULT_NETWORK_FOR[driver])
    if problems:
        raise ClientError(
            f"this host is not prepared for real VMs ({'; '.join(problems)}): run "
            "scripts/bootstrap-host as root first, or use --driver fake"
        )


def check_redundant(options: dict[str, Any]) -> None:
    """`--redundant` needs two nodes to put the database on, root (PostgreSQL runs as the
    postgres user) and no --db of its own."""
    if not options.get("redundant"):
        options.pop("redundant", None)
        return
    if int(options["nodes"]) < 2:
        raise ClientError("--redundant needs --nodes 2 or more: the database runs on two nodes")
    if options.get("db_url"):
        raise ClientError("--redundant makes the site's own replicated store: drop --db")
    if options.get("api_listen"):
        raise ClientError(
            "--redundant puts each node's controller on the node's own address: drop --api-listen"
        )
    if os.geteuid() != 0:
        raise ClientError("--redundant runs PostgreSQL instances as the postgres user: run as root")


def _run_foreground(state_dir: Path, config_path: Path, options: dict[str, Any]) -> None:
    """Become the site's supervisor: exec a fresh interpreter on allinone/supervisor.py, so
    the long-lived process carries none of the CLI's modules (same pid, same terminal)."""
    given = json.dumps({**options, "state_dir": str(state_dir)})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(
        sys.executable,
        [sys.executable, "-m", "edgecloud.allinone.supervisor", "--config", str(config_path),
         "--options", given],
    )  # fmt: skip


def _detach(state_dir: Path, config_path: Path, options: dict[str, Any]) -> None:
    files.private_dir(state_dir)
    args = [
        sys.executable,
        "-m",
        "edgecloud",
        "--config",
        str(config_path),
        "up",
        "--state-dir",
        str(state_dir),
    ]
    for key, value in options.items():
        flag = "--db" if key == "db_url" else "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else []  # a flag
        elif value is not None:
            args += [flag, str(value)]
    started = time.time() - 1
    log = open(state_dir / "site.log", "ab")  # noqa: SIM115 - handed to the child
    with log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        info = _site_info(state_dir)
        if (
            info
            and info.get("ready")
            and config_path.exists()
            and config_path.stat().st_mtime >= started
        ):
            break
        if proc.poll() is not None:
            raise ClientError(
                f"the site failed to start (exit code {proc.returncode}); see {state_dir / 'site.log'}"
            )
        if time.monotonic() > deadline:
            raise ClientError(
                f"the site did not become ready in {READY_TIMEOUT:.0f} s; see {state_dir / 'site.log'}"
            )
        time.sleep(0.2)
    click.echo(f"site running in the background from {state_dir}")
    hosts = ", ".join(n["host"] for n in info.get("nodes") or []) or info["host"]
    apis = "  ".join(info.get("api_urls") or [info["api_url"]])
    click.echo(f"  API {apis}  host {hosts} online  driver {info['driver']}")
    click.echo(f"  client config {config_path}; stop with: edgecloud down --state-dir {state_dir}")


@click.command("down")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The site's state directory [default: ~/.local/state/edgecloud].",
)
@click.option(
    "--purge", is_flag=True, help="Delete every VNF first (VMs and vSwitch ports), then stop."
)
@click.option("--timeout", type=click.FloatRange(1, 600), default=120.0, show_default=True)
def down(state_dir: Path | None, purge: bool, timeout: float) -> None:
    """Stop a site started with `edgecloud up --detach`.

    VNFs keep running without their control plane (the next `up` adopts them) unless
    --purge deletes them first.
    """
    state_dir = (state_dir or default_state_dir()).absolute()
    info = _site_info(state_dir)
    pid = int(info["pids"]["supervisor"]) if info else None
    if info is None or pid is None or not alive(pid):
        if _leftovers(state_dir, info):
            click.echo(f"the site's supervisor was gone; took down what it left ({state_dir})")
            return
        click.echo(f"no site is running from {state_dir}")
        return
    remaining = _purge(state_dir, info, timeout) if purge else _count_vnfs(state_dir, info)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise ClientError(f"the site (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    click.echo(f"site stopped ({state_dir})")
    if _leftovers(state_dir, info):  # it died on its own meanwhile
        click.echo(f"the site's supervisor had died; took down what it left ({state_dir})")
    if remaining and info.get("nodes"):  # the nodes' hypervisors stopped with the site
        click.echo(
            f"{remaining} VNF(s) stopped with their nodes; the next `edgecloud up --nodes "
            f"{len(info['nodes'])}` starts them again, `down --purge` deletes them"
        )
    elif remaining:
        click.echo(
            f"{remaining} VNF(s) keep running; `edgecloud up` adopts them, `down --purge` deletes them"
        )


def _leftovers(state_dir: Path, info: dict[str, Any] | None) -> bool:
    """Take down what a multi-node site whose supervisor died left (its children, node
    daemons, bridges, namespaces); True if there was any. A single-node site leaves nothing
    to take down here: its VNFs keep running for the next `up` to adopt."""
    from edgecloud.allinone import replicated_db
    from edgecloud.allinone.nodes import LAYOUT_FILE, teardown

    supervisor = int((info or {}).get("pids", {}).get("supervisor", 0))
    if supervisor and alive(supervisor):
        return False
    done = False
    if (state_dir / LAYOUT_FILE).exists():  # first the children, which use the database
        done = teardown(state_dir, dict((info or {}).get("pids", {})))
        (state_dir / "site.json").unlink(missing_ok=True)
    # the replicated database is stopped, its data kept: the next `up --redundant` resumes it
    return replicated_db.teardown(state_dir, keep_data=True) or done


def _site_client(state_dir: Path, info: dict[str, Any]) -> Client:
    token = (state_dir / "controller" / "admin-token").read_text().strip()
    return Client(for_site(info, token))


def _count_vnfs(state_dir: Path, info: dict[str, Any]) -> int:
    try:
        with _site_client(state_dir, info) as client:
            return len(client.list_vnfs())
    except (ClientError, OSError, KeyError):
        return 0


def _purge(state_dir: Path, info: dict[str, Any], timeout: float) -> int:
    with _site_client(state_dir, info) as client:
        names = [v["name"] for v in client.list_vnfs()]
        for name in names:
            client.delete_vnf(name)
        for name in names:
            client.wait_for_vnf_gone(name, timeout)
    if names:
        click.echo(f"deleted {len(names)} VNF(s): {', '.join(names)}")
    return 0


@click.command("status")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, state_dir: Path | None, as_json: bool) -> None:
    """Show whether a local site is running and its processes, and (from the API of the
    configured site) which controllers are up and which one leads, and each host's state; on
    a redundant site also the database's primary and replica."""
    state_dir = (state_dir or default_state_dir()).absolute()
    info = _site_info(state_dir) or {}
    pids: dict[str, int] = info.get("pids", {})
    running = {name: bool(pid) and alive(int(pid)) for name, pid in pids.items()}
    result: dict[str, Any] = {
        "state_dir": str(state_dir),
        "running": bool(running.get("supervisor")),
        "processes": {n: {"pid": pids[n], "alive": a} for n, a in running.items()},
        **{k: info[k] for k in ("api_url", "host", "driver", "nodes") if k in info},
    }
    _hypervisors_alive(state_dir, result.get("nodes") or [])
    result["controllers"], unreachable = _controllers(ctx)
    _controller_nodes(result["controllers"], info)
    result["hosts"] = _hosts(ctx) if result["controllers"] is not None else None
    _database(state_dir, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"site at {state_dir}: {'running' if result['running'] else 'not running'}")
    width = max([11, *map(len, result["processes"])])  # controller-n2 on a redundant site
    for name, proc in result["processes"].items():
        click.echo(f"  {name:<{width}} pid {proc['pid']:<8} {'alive' if proc['alive'] else 'dead'}")
    for node in result.get("nodes") or []:
        where = f"bridge {node['bridge']}  {node['libvirt_uri']}" if node["bridge"] else "fake"
        if node.get("hypervisor") is not None:
            where += f"  libvirtd {'alive' if node['hypervisor'] else 'dead'}"
        click.echo(f"  node {node['host']}  address {node['address']}  {where}")
    _echo_controllers(result["controllers"], unreachable)
    for host in result["hosts"] or []:
        click.echo(
            f"  host {host['name']}  {host['state']}  {host['availability']}  "
            f"release {host_release(host)}"
        )
    if "database" in result:
        database = result["database"]
        replicas = ", ".join(database["replicas"]) or "none"
        click.echo(
            f"  database primary {database['primary'] or 'none'}  replica {replicas}: "
            f"{database['status']}"
        )
        if database["primary"] is None:  # nothing can be written: say it plainly
            click.echo("  THE SITE CANNOT WRITE: its database has no writable primary")


def _controllers(ctx: click.Context) -> tuple[dict[str, Any] | None, str]:
    """The site's controllers from the configured API (GET /v1/controllers), or None and why
    not (no config, no controller answering)."""
    state = get_state(ctx)
    try:
        with state.client_factory(state.config_path) as client:
            return client.controllers(), ""
    except ClientError as exc:
        return None, str(exc)


def _controller_nodes(found: dict[str, Any] | None, info: dict[str, Any]) -> None:
    """Name, on each controller the API listed, the node of this site it runs on (matched by
    API URL with site.json; None for a controller started elsewhere)."""
    nodes = {c["api_url"]: c["node"] for c in info.get("controllers") or [] if c["node"]}
    for c in (found or {}).get("controllers") or [] if nodes else ():
        c["node"] = nodes.get(c["api_url"])


def _hosts(ctx: click.Context) -> list[dict[str, Any]] | None:
    """Each host's name, state and availability from the configured API (None: no answer)."""
    state = get_state(ctx)
    try:
        with state.client_factory(state.config_path) as client:
            hosts = client.list_hosts()
    except ClientError:
        return None
    keep = ("name", "state", "availability", "release", "protocol")
    return [{k: h.get(k) for k in keep} for h in hosts]


def _echo_controllers(found: dict[str, Any] | None, unreachable: str) -> None:
    if found is None:
        click.echo(f"controllers: unknown ({unreachable})")
        return
    leader = found.get("leader")
    if leader:
        click.echo(
            f"leader: {leader['id']}  epoch {leader['epoch']}  API {leader['api_url']}  "
            f"agents {leader['gateway']}{'' if leader['up'] else '  (not seen: down?)'}"
        )
    else:
        click.echo("leader: none")
    for c in found.get("controllers") or []:
        role = "leads" if c["leads"] else "follows"
        where = f"  node {c['node']}" if c.get("node") else ""
        click.echo(
            f"  controller {c['id']}  {'up' if c['up'] else 'down'}  {role}  API {c['api_url']}  "
            f"agents {c['gateway']}{where}  release {controller_release(c)}"
        )


def _database(state_dir: Path, result: dict[str, Any]) -> None:
    """A redundant site's database: which node is primary, and in one sentence why not."""
    from edgecloud.allinone.replicated_db import Cluster

    cluster = Cluster.load(state_dir)
    if cluster is not None:
        primary, why = cluster.health()
        replicas = [n.name for n in cluster.nodes if n.name != primary]
        result["database"] = {
            "primary": primary,
            "replicas": replicas,
            "status": why,
            "url": cluster.url,
        }


def _hypervisors_alive(state_dir: Path, nodes: list[dict[str, Any]]) -> None:
    """Add to each node whether its libvirtd runs (None: it has none, fake drivers)."""
    from edgecloud.allinone.nodes import Layout

    layout = Layout.load(state_dir)
    by_host = {n.host: n.hypervisor() for n in layout.nodes} if layout else {}
    for node in nodes:
        hypervisor = by_host.get(node["host"])
        node["hypervisor"] = hypervisor.running() if hypervisor else None


def register(cli: click.Group) -> None:
    cli.add_command(up)
    cli.add_command(down)
    cli.add_command(status)
