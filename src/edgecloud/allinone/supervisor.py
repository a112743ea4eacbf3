"""Supervise an all-in-one site: controller + local agent as child processes.

Start order: controller (wait for STATE/controller.json), enroll the local agent on first start
(host record + join token through the REST API with the admin token), agent, then write the
client config and STATE/site.json (``ready``). A child that dies is started again after a
short backoff; SIGTERM/SIGINT stop the agent, then the controller, then the supervisor.

With ``nodes`` >= 2 (`edgecloud up --nodes N`), N agents instead of one, each an ordinary
agent with its own state, host name, hypervisor daemons, bridge and uplink (allinone/nodes.py
has the layout, written to STATE/nodes/layout.json first): the site switch and node bridges are
made (allinone/fabric.py), then for each node its libvirtd (allinone/hypervisors.py) and its
agent. Dead agents and dead hypervisor daemons are started again; stopping the site stops the
agents, the controller, then takes the nodes down (daemons with their guests, bridges,
namespaces). With the fake driver the nodes are just N fake agents.

With ``redundant`` (`edgecloud up --nodes 2 --redundant`) the replicated database starts first
(allinone/replicated_db.py), then a controller on each of the two nodes (allinone/controllers.py:
each on its node's address, both on the database's multi-host URL and the site secret), one
after the other, so that the join tokens and the client config name both.

Files: STATE/site.json {ready, pids, api_url, api_urls, controllers, host, nodes},
STATE/{controller,agent,site}.log (STATE/agent-n<i>.log per node, STATE/controller-n2.log),
STATE/controller/ (controller state; STATE/controller-n2/ on a redundant site), STATE/agent/
(agent state; STATE/nodes/n<i>/ per node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.allinone import controllers as site_controllers
from edgecloud.allinone.controllers import ControllerSpot
from edgecloud.allinone.hypervisors import HypervisorError
from edgecloud.allinone.nodes import Layout, Node

log = logging.getLogger("edgecloud.allinone.supervisor")  # also when run as __main__
READY_TIMEOUT = 120.0
PORTS_FILE = "ports.json"  # in a controller's state folder: the ports it listens on
CREDENTIALS_REFUSED_EXIT = 3


@dataclass
class SiteOptions:
    state_dir: Path
    driver: str = "fake"
    db_url: str | None = None
    listen: str = "127.0.0.1"
    api_listen: str | None = None  # the API's own address (default: listen)
    api_port: int = 0
    gateway_port: int = 0
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3  # silent intervals before a host is lost
    host_recovery: bool = False  # the controller's --host-recovery
    resync_interval: float = 5.0
    host_name: str | None = None
    bridge: str = "br-int"
    nodes: int = 1
    redundant: bool = False  # the store on a replicated PostgreSQL (allinone/replicated_db.py)


def local_host_name() -> str:
    """This machine's name as a valid edgecloud host name."""
    name = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")[:63]
    return name or "local"


class Supervisor:
    def __init__(self, options: SiteOptions, on_ready: Any = None) -> None:
        self.o = options
        self.state = options.state_dir
        self.children: dict[str, asyncio.subprocess.Process] = {}
        self.spawned_at: dict[str, float] = {}  # child -> Unix time of its last start
        self.stopping = asyncio.Event()
        self.on_ready = on_ready
        self.host = options.host_name or local_host_name()
        self.layout: Layout | None = None
        if options.nodes != 1:
            real = options.driver != "fake"
            self.layout = Layout.plan(self.state, self.host, options.nodes, real)
        self.controllers = site_controllers.plan(
            self.state,
            self.layout,
            options.redundant,
            options.listen,
            options.api_listen,
            options.api_port,
            options.gateway_port,
        )
        self.started: dict[str, dict[str, Any]] = {}  # controller.json of each controller
        self.db_witness: str | None = None  # the replicated database's monitor
        self.db_url_for: Callable[[str | None], str] | None = None  # its URL, a node first

    # lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        files.private_dir(self.state)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self._write_site(ready=False)
        try:
            if self.o.redundant:
                await self._start_database()
            controller = await self._start_controller(self.controllers[0])
            for spot in self.controllers[1:]:
                await self._start_controller(spot)
            if self.layout is None:
                await self._ensure_enrolled(controller)
                await self._spawn("agent", self._agent_args())
                await self._wait_host_online(controller)
            else:
                await self._start_nodes(controller, self.layout)
            info = self._write_site(ready=True, controller=controller)
            if self.on_ready is not None:
                self.on_ready(info, self._admin_token())
            await self._watch()
        finally:
            await self._stop_children()
            if self.layout is not None:
                await asyncio.to_thread(self.layout.take_down, self.state)
            if self.o.redundant:  # stopped, data kept: the next `up --redundant` resumes it
                from edgecloud.allinone import replicated_db

                await asyncio.to_thread(replicated_db.teardown, self.state, True)
            (self.state / "site.json").unlink(missing_ok=True)

    async def _watch(self) -> None:
        """Restart any child that exits while the site should run."""
        delays = {name: 1.0 for name in self.children}
        while not self.stopping.is_set():
            await self._restart_hypervisors()
            await self._restart_database()
            for name, proc in list(self.children.items()):
                if proc.returncode is None:
                    continue
                log.warning(
                    "%s exited with code %s; starting it again in %.0f s",
                    name,
                    proc.returncode,
                    delays[name],
                )
                await asyncio.sleep(delays[name])
                delays[name] = min(delays[name] * 2, 30.0)
                await self._spawn(name, self._args_of(name))
                self._write_site(ready=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def _start_database(self) -> None:
        """A pg_auto_failover monitor and two nodes, made on the first start (the packages
        installed if missing), started on later ones; the controller's store is their
        multi-host URL, which always reaches the primary."""
        from edgecloud.allinone.replicated_db import Cluster, ClusterError

        cluster = Cluster.load(self.state) or Cluster.plan(self.state)
        try:
            await asyncio.to_thread(cluster.create)
        except ClusterError as exc:
            raise RuntimeError(f"the site's replicated database did not start: {exc}") from exc
        self.o.db_url = cluster.url
        self.db_url_for = cluster.url_for
        self.db_witness = cluster.monitor_uri
        log.info("the store is replicated: %s", cluster.url)

    async def _restart_database(self) -> None:
        """A member whose pg_autoctl died is started again, as a service manager would: a
        node that comes back rejoins as a secondary (the monitor decides)."""
        if not self.o.redundant:
            return
        from edgecloud.allinone.replicated_db import Cluster, ClusterError

        cluster = Cluster.load(self.state)
        if cluster is None:
            return
        for member in cluster.members:
            if await asyncio.to_thread(cluster.running, member):
                continue
            log.warning("the database's %s is gone; starting it again", member.name)
            try:
                await asyncio.to_thread(cluster.start, member)
            except ClusterError as exc:
                log.warning("%s", exc)

    async def _restart_hypervisors(self) -> None:
        for node in self.layout.nodes if self.layout else ():
            hypervisor = node.hypervisor()
            if hypervisor is None or await asyncio.to_thread(hypervisor.running):
                continue
            log.warning("the hypervisor daemons of node %s are gone; starting them", node.host)
            try:
                await asyncio.to_thread(hypervisor.start)
            except HypervisorError as exc:
                log.warning("%s", exc)

    async def _stop_children(self) -> None:
        agents = sorted(name for name in self.children if name.startswith("agent"))
        controllers = [spot.child for spot in reversed(self.controllers)]
        for name in (*agents, *controllers):
            proc = self.children.get(name)
            if proc is None or proc.returncode is not None:
                continue
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                log.warning("%s did not stop in 30 s; killing it", name)
                proc.kill()
                await proc.wait()

    # children ------------------------------------------------------------------------------
    async def _spawn(self, name: str, args: list[str]) -> asyncio.subprocess.Process:
        logfile = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edgecloud",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
            )
        finally:
            logfile.close()
        self.children[name], self.spawned_at[name] = proc, time.time()
        log.info("started %s (pid %d)", name, proc.pid)
        return proc

    def _controller_args(self, spot: ControllerSpot | None = None) -> list[str]:
        spot = spot or self.controllers[0]
        args = [
            "controller",
            "--state-dir",
            str(spot.state_dir),
            "--listen",
            spot.listen,
            "--api-port",
            str(spot.api_port),
            "--gateway-port",
            str(spot.gateway_port),
            "--heartbeat-interval",
            str(self.o.heartbeat_interval),
            "--heartbeat-misses",
            str(self.o.heartbeat_misses),
        ]
        if self.o.host_recovery:
            args.append("--host-recovery")
        if spot.api_listen:
            args += ["--api-listen", spot.api_listen]
        if self.o.redundant:  # the site CA through the store, the secret on each node
            args += ["--site-secret-file", str(site_controllers.ensure_site_secret(self.state))]
        if self.db_witness is not None:
            args += ["--db-witness", self.db_witness]
            if spot.db_node is not None:
                args += ["--db-node", spot.db_node]
        url = self.o.db_url
        if self.db_url_for is not None:  # a replicated store: this controller's node first
            url = self.db_url_for(spot.db_node)
        return args + (["--db", url] if url else [])

    def _agent_args(self) -> list[str]:
        return [
            "agent",
            "--state-dir",
            str(self.state / "agent"),
            "--driver",
            self.o.driver,
            "--resync-interval",
            str(self.o.resync_interval),
            "--bridge",
            self.o.bridge,
        ]

    def _node_agent_args(self, node: Node) -> list[str]:
        args = ["agent", "--state-dir", str(node.state_dir), "--driver", self.o.driver]
        args += ["--resync-interval", str(self.o.resync_interval)]
        uri = node.libvirt_uri()
        if node.bridge and node.uplink and uri:
            args += ["--bridge", node.bridge, "--uplink", node.uplink, "--libvirt-uri", uri]
            args += ["--address", node.address]  # where its hypervisor takes migrations
        return args

    def _args_of(self, child: str) -> list[str]:
        for spot in self.controllers:
            if spot.child == child:
                return self._controller_args(spot)
        for node in self.layout.nodes if self.layout else ():
            if node.child == child:
                return self._node_agent_args(node)
        return self._agent_args()

    async def _start_nodes(self, controller: dict[str, Any], layout: Layout) -> None:
        """Enroll every node, make the switch and bridges, start each node's hypervisor and
        agent, then wait until every node's host is online."""
        layout.save(self.state)
        for node in layout.nodes:  # first: the node's TLS files are its hypervisor's too
            await self._ensure_enrolled(controller, node.host, node.state_dir, node.address)
        if layout.fabric is not None:
            await asyncio.to_thread(layout.fabric.create)
        for node in layout.nodes:
            hypervisor = node.hypervisor()
            if hypervisor is not None:
                await asyncio.to_thread(hypervisor.start)
            await self._spawn(node.child, self._node_agent_args(node))
        for node in layout.nodes:
            await self._wait_host_online(controller, node.host, node.child)

    async def _start_controller(self, spot: ControllerSpot) -> dict[str, Any]:
        info_file, ports_file = spot.state_dir / "controller.json", spot.state_dir / PORTS_FILE
        # port 0: the ports it had before, which its agents and clients know
        before = files.read_tolerant(ports_file, json.loads, "the controller's last ports") or {}
        spot.api_port = spot.api_port or int(before.get("api", 0))
        spot.gateway_port = spot.gateway_port or int(before.get("gateway", 0))
        info_file.unlink(missing_ok=True)
        proc = await self._spawn(spot.child, self._controller_args(spot))
        deadline = time.monotonic() + READY_TIMEOUT
        while not info_file.exists():
            if proc.returncode is not None:
                raise RuntimeError(
                    f"the controller exited with code {proc.returncode}; "
                    f"see {self.state / (spot.child + '.log')}"
                )
            if time.monotonic() > deadline or self.stopping.is_set():
                raise RuntimeError("the controller did not become ready in time")
            await asyncio.sleep(0.1)
        info: dict[str, Any] = json.loads(info_file.read_text())
        spot.api_port = spot.api_port or _port(info["api_url"])  # the same after a restart
        spot.gateway_port = spot.gateway_port or _port(info["gateway"])
        ports = {"api": spot.api_port, "gateway": spot.gateway_port}
        if ports != before:
            files.write_atomic(ports_file, json.dumps(ports))
        self.started[spot.child] = info
        return info

    # enrollment (in a short-lived child: allinone/local_enrollment.py) ---------------------
    def _admin_token(self) -> str:
        return (self.state / "controller" / "admin-token").read_text().strip()

    async def _site_call(self, controller: dict[str, Any], step: str, *args: str) -> None:
        """Run one step of local_enrollment against ``controller`` with the admin token;
        RuntimeError with its one line when it fails."""
        token_file = self.state / "controller" / "admin-token"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgecloud.allinone.local_enrollment", step,
            controller["api_url"], controller["ca_cert"], str(token_file), *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await proc.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(lines[-1].removeprefix("error: "))

    async def _ensure_enrolled(
        self,
        controller: dict[str, Any],
        host: str | None = None,
        state: Path | None = None,
        address: str | None = None,
    ) -> None:
        host, state = host or self.host, state or self.state / "agent"
        if (state / "agent.json").exists():
            return
        await self._site_call(
            controller, "enroll", host, str(state), *([address] if address else [])
        )
        log.info("enrolled the local agent as host %s", host)

    async def _wait_host_online(
        self, controller: dict[str, Any], host: str | None = None, child: str = "agent"
    ) -> None:
        """Until the host is online, its agent heard from since that agent started; sooner
        RuntimeError if the agent exits or we stop."""
        host = host or self.host
        since = self.spawned_at.get(child, time.time()) - 1.0  # (the store's clock: UTC)
        waiting = asyncio.create_task(
            self._site_call(controller, "online", host, str(READY_TIMEOUT), str(since))
        )
        try:
            while not waiting.done():
                agent = self.children.get(child)
                if agent is not None and agent.returncode is not None:
                    raise RuntimeError(
                        f"the agent of {host} exited with code {agent.returncode}; "
                        f"see {self.state / (child + '.log')}"
                    )
                if self.stopping.is_set():
                    raise RuntimeError(f"host {host} did not come online: the site is stopping")
                await asyncio.wait({waiting}, timeout=0.2)
            waiting.result()
        finally:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)

    def _write_site(self, ready: bool, controller: dict[str, Any] | None = None) -> dict[str, Any]:
        path = self.state / "site.json"
        info: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        if controller is not None:
            info.update(
                api_url=controller["api_url"],
                gateway=controller["gateway"],
                ca_cert=controller["ca_cert"],
                # every controller's API, the first one's first (client config ``urls``)
                api_urls=[self.started[s.child]["api_url"] for s in self.controllers],
                controllers=[
                    {
                        "child": s.child,
                        "node": s.node,
                        "api_url": self.started[s.child]["api_url"],
                        "gateway": self.started[s.child]["gateway"],
                    }
                    for s in self.controllers
                ],
            )
        info.update(
            ready=ready,
            host=self.host,
            driver=self.o.driver,
            nodes=[
                {
                    "host": n.host,
                    "child": n.child,
                    "bridge": n.bridge,
                    "address": n.address,
                    "libvirt_uri": n.libvirt_uri(),
                }
                for n in (self.layout.nodes if self.layout else ())
            ],
            pids={"supervisor": os.getpid(), **{n: p.pid for n, p in self.children.items()}},
        )
        files.write_atomic(path, json.dumps(info, indent=2))
        return info


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def main(argv: list[str]) -> int:
    """`edgecloud up` in the foreground execs this (``--config PATH --options JSON``), so the
    process that runs for the site's whole life carries none of the CLI's modules: when the
    site is ready it writes the client config there and says so; an error is one line."""
    import argparse

    from edgecloud.client.config import for_site, save_config

    parser = argparse.ArgumentParser(prog="edgecloud up")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--options", required=True, help="SiteOptions as JSON")
    args = parser.parse_args(argv)
    given = json.loads(args.options)
    options = SiteOptions(**{**given, "state_dir": Path(given["state_dir"])})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def ready(info: dict[str, Any], token: str) -> None:
        save_config(for_site(info, token), args.config)
        print(
            f"site ready: API {info['api_url']}, host {info['host']} online; "
            f"config in {args.config}",
            file=sys.stderr,
            flush=True,
        )

    try:
        asyncio.run(Supervisor(options, on_ready=ready).run())
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
