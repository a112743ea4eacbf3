"""The site's PostgreSQL, replicated, with automatic failover by pg_auto_failover.

A redundant site keeps its store on two PostgreSQL nodes (a primary and a streaming-replication
secondary) and a third, small PostgreSQL instance, the pg_auto_failover *monitor*, which is the
witness: it decides every role change, and a node promotes only when the monitor tells it to.
So without the monitor (no majority: one node alone is not two of three) a secondary never
promotes itself, and a primary that can reach neither the monitor nor its secondary demotes
itself after ``NETWORK_PARTITION_TIMEOUT``; the monitor promotes a secondary only after
``PRIMARY_DEMOTE_TIMEOUT`` (longer), so two primaries never take writes at once.

Why pg_auto_failover (Debian: postgresql-15-auto-failover + pg-auto-failover-cli): one
``pg_autoctl run`` process per instance supervises its own PostgreSQL (no systemd, which these
machines lack, and no etcd/Consul as Patroni needs), and its monitor is exactly the witness the
split-brain rule asks for; repmgr's repmgrd has no monitor that decides, each node votes.

On one machine (``edgecloud up --nodes 2 --redundant``, and the tests) every instance has its
own data folder, port and socket folder under ``/var/lib/edgecloud-db/<12 hex digits of the
state folder>`` (the postgres user must reach it, which a root-only pytest folder does not
allow, and a socket path holds at most 107 bytes), and runs as the postgres user. The layout
(ports, root) is written to ``STATE/db/cluster.json`` before anything is made, so ``teardown``
works from it alone, also after a crash. Callers: allinone/ (and tests); the controllers see
only ``url``, a multi-host connection string that targets the primary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.allinone.processes import alive

ROOT_BASE = Path("/var/lib/edgecloud-db")
LAYOUT_FILE = Path("db") / "cluster.json"
PACKAGES = ("postgresql", "postgresql-15-auto-failover", "pg-auto-failover-cli")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
log = logging.getLogger(__name__)
HOST = "127.0.0.1"
DBNAME = "edgecloud"
USER = "edgecloud"
PASSWORD = "edgecloud"
START_TIMEOUT = 90.0
PORTS_FROM = 20000  # the cluster's ports are picked from here up to the ephemeral range
CREATE_TIMEOUT = 45.0  # one node's `pg_autoctl create postgres` (about 5 s when all is well)
STOP_TIMEOUT = 15.0
# monitor side (milliseconds): how fast a silent primary is judged, and how long the monitor
# waits for it to have demoted itself before it promotes the secondary. The health checks are
# also what a controller cut off from the store asks the monitor about (controller/vouching.py):
# a lost node must show as unreachable well within an agent's fence_after (1.5 s on a
# two-node site): at most 0.2 + 0.25 + 0.05 + 0.25 s for a node that does not answer
HEALTH_CHECK_PERIOD_MS = 200
HEALTH_CHECK_TIMEOUT_MS = 250
HEALTH_CHECK_RETRY_DELAY_MS = 50
HEALTH_CHECK_MAX_RETRIES = 1
NODE_UNHEALTHY_TIMEOUT_MS = 3000
PRIMARY_DEMOTE_TIMEOUT_MS = 6000
# keeper side (seconds): a primary alone (no monitor, no secondary) demotes itself after this;
# it must stay below PRIMARY_DEMOTE_TIMEOUT, or two primaries could take writes at once
NETWORK_PARTITION_TIMEOUT = 3


def node_name(index: int) -> str:
    """The database node of the site's node ``index`` (1-based), as the monitor names it."""
    return f"n{index}"


class ClusterError(RuntimeError):
    """The replicated database could not be set up, started or taken down."""


class AutoctlTimeout(ClusterError):
    """pg_autoctl did not finish in time (its whole session was killed)."""


@dataclass(frozen=True)
class Member:
    """One PostgreSQL instance run by its own ``pg_autoctl run``: the monitor or a node."""

    name: str  # "monitor", "n1", "n2"
    port: int

    @property
    def is_monitor(self) -> bool:
        return self.name == "monitor"


@dataclass(frozen=True)
class Cluster:
    """A monitor and ``len(members) - 1`` nodes under ``root``; see the module docstring."""

    state_dir: Path
    root: Path
    members: tuple[Member, ...]

    @classmethod
    def plan(cls, state_dir: Path, nodes: int = 2) -> Cluster:
        digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:12]
        names = ["monitor", *(node_name(i) for i in range(1, nodes + 1))]
        ports = _free_ports(len(names))
        members = tuple(Member(n, p) for n, p in zip(names, ports, strict=True))
        return cls(state_dir, ROOT_BASE / digest, members)

    @classmethod
    def load(cls, state_dir: Path) -> Cluster | None:
        try:
            raw = json.loads((state_dir / LAYOUT_FILE).read_text())
        except (OSError, ValueError):
            return None
        members = tuple(Member(**m) for m in raw["members"])
        return cls(state_dir, Path(raw["root"]), members)

    def save(self) -> None:
        path = self.state_dir / LAYOUT_FILE
        files.private_dir(path.parent)
        raw = {"root": str(self.root), "members": [asdict(m) for m in self.members]}
        files.write_atomic(path, json.dumps(raw, indent=2))

    # what clients see ------------------------------------------------------------------------
    @property
    def monitor(self) -> Member:
        return self.members[0]

    @property
    def nodes(self) -> tuple[Member, ...]:
        return self.members[1:]

    @property
    def url(self) -> str:
        """The store URL for controllers: every node, and only a writable one is taken."""
        return self.url_for(None)

    def url_for(self, first: str | None) -> str:
        """The store URL for the controller on the node of database node ``first``: its own
        node first. A connection tries the hosts in order within ONE timeout (asyncpg), so a
        node that drops packets (cut off, not dead) would use it all up; the own node is the
        one a controller can always reach, and the one that is promoted when the other is cut
        off (controller/vouching.py)."""
        nodes = sorted(self.nodes, key=lambda n: n.name != first)
        hosts = "&".join(f"host={HOST}:{n.port}" for n in nodes)
        return (
            f"postgresql+asyncpg://{USER}:{PASSWORD}@/{DBNAME}?{hosts}"
            "&target_session_attrs=read-write"
        )

    @property
    def monitor_uri(self) -> str:
        return (
            f"postgres://autoctl_node@{HOST}:{self.monitor.port}/pg_auto_failover?sslmode=disable"
        )

    def states(self) -> dict[str, dict[str, Any]]:
        """Each node's state as the monitor sees it: {name: {reported, assigned, health}}."""
        done = self._autoctl(["show", "state", "--json", "--monitor", self.monitor_uri])
        return {
            row["nodename"]: {
                "reported": row["current_group_state"],
                "assigned": row["assigned_group_state"],
                "health": row["health"],
            }
            for row in json.loads(done.stdout)
        }

    def primary(self) -> str | None:
        """The node the monitor has as primary (None without a monitor or a primary)."""
        try:
            states = self.states()
        except ClusterError:
            return None
        for name, state in states.items():
            if state["reported"] == state["assigned"] and state["assigned"] in (
                "primary",
                "single",
                "wait_primary",
            ):
                return name
        return None

    def health(self) -> tuple[str | None, str]:
        """(the writable node or None, one sentence saying why): what a status or an alarm
        shows. Asks the monitor first, then each node itself (the monitor may be gone)."""
        writable = [n.name for n in self.nodes if self._in_recovery(n) is False]
        standby = [n.name for n in self.nodes if self._in_recovery(n) is True]
        try:
            states = self.states()
        except ClusterError:
            states = None
        if states is None:
            if writable:
                return writable[0], (
                    f"{writable[0]} is primary, but the monitor (witness) is unreachable: "
                    "no automatic failover until it is back"
                )
            return None, (
                "no writable database: the monitor (witness) is unreachable, and "
                + (f"{', '.join(standby)} stays secondary: " if standby else "")
                + "a node never promotes itself without the monitor (no majority, split-brain rule)"
            )
        if writable:
            return writable[0], ", ".join(
                f"{name} {s['reported']}" + ("" if s["health"] == 1 else " (unreachable)")
                for name, s in sorted(states.items())
            )
        return None, "no writable database: the monitor has not promoted a node yet " + str(
            {name: s["assigned"] for name, s in states.items()}
        )

    # lifecycle -------------------------------------------------------------------------------
    def create(self) -> None:
        """Install the packages, make and start the monitor and every node; returns when the
        first node is primary and the others are its streaming secondaries. Idempotent: a
        member already made is only started."""
        install_packages()
        self.save()
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self._sockets, self._run):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "postgres", "postgres")
        self._create_monitor()
        self.start(self.monitor)
        for count, node in enumerate(self.nodes, start=1):
            made = self._create_node(node)
            self.start(node)
            if made:  # the next node is made from this one (pg_basebackup)
                self._wait(lambda n=count: self._settled(n), f"node {node.name} to join")
        self._wait(lambda: self._settled(len(self.nodes)), "a primary and its secondaries")
        self._ensure_role()

    def start(self, member: Member) -> None:
        """Start a member's ``pg_autoctl run`` (which starts its PostgreSQL) unless it runs."""
        if self.running(member):
            return
        # after a crash: pg_autoctl and PostgreSQL test their pid files with kill(pid, 0),
        # which a zombie passes (PID 1 here reaps no orphans), and would refuse to start
        self._autoctl_pid_file(member).unlink(missing_ok=True)
        if not self._postgres_alive(member):  # its socket's lock file names the pid too
            (self._pgdata(member) / "postmaster.pid").unlink(missing_ok=True)
            for name in (f".s.PGSQL.{member.port}.lock", f".s.PGSQL.{member.port}"):
                (self._sockets / name).unlink(missing_ok=True)
        log = open(self.root / f"{member.name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:  # setsid --fork: the keeper outlives this process (`up`, a test) in its own session
            subprocess.run(
                ["setsid", "--fork", "pg_autoctl", "run", "--pgdata", str(self._pgdata(member))],
                env=self._env(), user="postgres", group="postgres", extra_groups=[],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root, check=True,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ClusterError(f"pg_autoctl of {member.name} did not start: {exc}") from exc
        finally:
            log.close()
        self._wait(lambda: self.running(member), f"pg_autoctl of {member.name} to start")

    def running(self, member: Member) -> bool:
        pid = self._autoctl_pid(member)
        return pid is not None and alive(pid) and _runs(pid, "pg_autoctl")

    def kill(self, member: Member) -> None:
        """SIGKILL a member's pg_autoctl and its PostgreSQL at once, as a node that dies;
        returns when its PostgreSQL is gone."""
        self.kill_now(member)
        self._wait(lambda: not self._postgres_alive(member), f"{member.name} to die", STOP_TIMEOUT)

    def kill_now(self, member: Member) -> None:
        """Send SIGKILL to the process groups of a member's pg_autoctl and its PostgreSQL,
        without waiting (a test kills a whole node's processes in one go)."""
        for pid in (self._autoctl_pid(member), self._postmaster_pid(member)):
            if pid is not None and alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)

    def stop(self, member: Member) -> None:
        """Stop a member cleanly (pg_autoctl stops its PostgreSQL); force it after a while."""
        pid = self._autoctl_pid(member)
        if pid is not None and alive(pid) and _runs(pid, "pg_autoctl"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.kill(member)  # whatever is left: the pg_autoctl or a PostgreSQL orphaned by a crash

    def stop_all(self) -> bool:
        """Stop every member, keeping the data: ``create`` starts them again (`down`/`up`).
        True when any of them ran."""
        ran = [m for m in self.members if self.running(m) or self._postgres_alive(m)]
        for member in reversed(self.members):
            self.stop(member)
        return bool(ran)

    def teardown(self) -> None:
        """Stop every member and remove every folder and the layout file. Idempotent."""
        for member in reversed(self.members):
            self.stop(member)
        shutil.rmtree(self.root, ignore_errors=True)
        (self.state_dir / LAYOUT_FILE).unlink(missing_ok=True)

    # making the members ---------------------------------------------------------------------
    def _create_monitor(self) -> None:
        monitor = self.monitor
        if (self._pgdata(monitor) / "PG_VERSION").exists():
            return
        self._autoctl(["create", "monitor", *self._common(monitor)])
        settings = {
            "health_check_period": HEALTH_CHECK_PERIOD_MS,
            "health_check_timeout": HEALTH_CHECK_TIMEOUT_MS,
            "health_check_retry_delay": HEALTH_CHECK_RETRY_DELAY_MS,
            "health_check_max_retries": HEALTH_CHECK_MAX_RETRIES,
            "node_considered_unhealthy_timeout": NODE_UNHEALTHY_TIMEOUT_MS,
            "primary_demote_timeout": PRIMARY_DEMOTE_TIMEOUT_MS,
        }
        with (self._pgdata(monitor) / "postgresql.conf").open("a") as conf:
            conf.write("# edgecloud: failover timing (allinone/replicated_db.py)\n")
            conf.writelines(f"pgautofailover.{k} = {v}\n" for k, v in settings.items())

    def _create_node(self, node: Member) -> bool:
        """Make the node (True), or nothing when it was made before (False)."""
        if (self._pgdata(node) / "PG_VERSION").exists():
            return False
        args = ["create", "postgres", *self._common(node), "--name", node.name]
        args += ["--dbname", DBNAME, "--monitor", self.monitor_uri, "--listen", HOST]
        try:
            self._autoctl(args, timeout=CREATE_TIMEOUT)
        except AutoctlTimeout as exc:
            # seen twice in a day (2026-12-01), never understood: `create postgres` sat before
            # registering with the monitor, which answered; a second try made the node
            log.warning("%s; trying once more", exc)
            shutil.rmtree(self._pgdata(node), ignore_errors=True)
            self._autoctl(args, timeout=CREATE_TIMEOUT)
        pgdata = ["--pgdata", str(self._pgdata(node))]
        timeout = str(NETWORK_PARTITION_TIMEOUT)
        self._autoctl(["config", "set", *pgdata, "timeout.network_partition_timeout", timeout])
        return True

    def _common(self, member: Member) -> list[str]:
        return [
            "--pgdata", str(self._pgdata(member)), "--pgport", str(member.port),
            "--pgctl", str(PG_BIN / "pg_ctl"), "--hostname", HOST, "--auth", "trust", "--no-ssl",
        ]  # fmt: skip

    def _settled(self, count: int) -> bool:
        """``count`` nodes joined: one primary (single when alone), the rest secondaries."""
        try:
            states = self.states()
        except ClusterError:
            return False
        wanted = {"single"} if count == 1 else {"primary", "secondary"}
        good = [s for s in states.values() if s["reported"] == s["assigned"] in wanted]
        return len(states) == count and len(good) == count

    def _ensure_role(self) -> None:
        """The controllers' role and database, on whichever node takes writes. Retried: on a
        restart the monitor reports the states it last saw before the node's PostgreSQL is up."""
        sql = (
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{USER}') THEN "
            f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; END IF; END $$; "
            f"ALTER DATABASE {DBNAME} OWNER TO {USER}; GRANT ALL ON SCHEMA public TO {USER};"
        )

        def done() -> bool:
            for node in self.nodes:
                if self._in_recovery(node) is False:
                    try:
                        self._psql(node, sql)
                    except ClusterError:
                        return False
                    return True
            return False

        self._wait(done, "a writable primary")

    # plumbing -------------------------------------------------------------------------------
    @property
    def _sockets(self) -> Path:
        return self.root / "sock"

    @property
    def _run(self) -> Path:
        return self.root / "run"

    def _pgdata(self, member: Member) -> Path:
        return self.root / member.name

    def _env(self) -> dict[str, str]:
        return {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self._run),
            "PGHOST": str(self._sockets),  # pg_autoctl's local connections
            "PG_REGRESS_SOCK_DIR": str(self._sockets),  # unix_socket_directories
            "PG_CONFIG": str(PG_BIN / "pg_config"),
        }

    def _autoctl(self, args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run pg_autoctl in a session of its own: when it times out, the whole session is
        killed (``create postgres`` forks helpers that would outlive it)."""
        what = f"pg_autoctl {' '.join(args[:2])}"
        try:
            proc = subprocess.Popen(
                ["pg_autoctl", *args], env=self._env(), user="postgres", group="postgres",
                extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=self.root, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise ClusterError(f"{what}: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            tail = " / ".join((err or out).strip().splitlines()[-3:]) or "nothing"
            raise AutoctlTimeout(f"{what} timed out after {timeout:g} s; it said: {tail}") from exc
        if proc.returncode != 0:
            lines = (err or out).strip().splitlines()[-3:]
            raise ClusterError(f"{what} failed: {' / '.join(lines)}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def _psql(self, node: Member, sql: str, timeout: float = 30.0) -> str:
        try:
            done = subprocess.run(
                ["psql", "-h", str(self._sockets), "-p", str(node.port), "-d", DBNAME, "-qtAX",
                 "-v", "ON_ERROR_STOP=1", "-c", sql],
                env={**self._env(), "PGCONNECT_TIMEOUT": "3"}, user="postgres",
                group="postgres", extra_groups=[], capture_output=True, text=True,
                timeout=timeout, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"psql on {node.name}: {exc}") from exc
        if done.returncode != 0:
            raise ClusterError(f"psql on {node.name}: {done.stderr.strip()}")
        return done.stdout

    def _autoctl_pid_file(self, member: Member) -> Path:
        # pg_autoctl keeps its pid file under XDG_RUNTIME_DIR/pg_autoctl/<pgdata>/
        return self._run / "pg_autoctl" / str(self._pgdata(member)).lstrip("/") / "pg_autoctl.pid"

    def _autoctl_pid(self, member: Member) -> int | None:
        return _first_int(self._autoctl_pid_file(member))

    def _postmaster_pid(self, member: Member) -> int | None:
        pid = _first_int(self._pgdata(member) / "postmaster.pid")
        return pid if pid is not None and _runs(pid, "postgres") else None

    def _in_recovery(self, node: Member) -> bool | None:
        """True on a standby, False on a writable primary, None when it does not answer."""
        try:
            answer = self._psql(node, "SELECT pg_is_in_recovery()", timeout=5)
        except ClusterError:
            return None
        return answer.strip() == "t"

    def _postgres_alive(self, member: Member) -> bool:
        pid = self._postmaster_pid(member)
        return pid is not None and alive(pid)

    def _wait(self, done: Any, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; see {self.root}/*.log")
            time.sleep(0.1)


def install_packages() -> None:
    """apt-get install pg_auto_failover and PostgreSQL unless pg_autoctl is there (root)."""
    if shutil.which("pg_autoctl") and (PG_BIN / "pg_ctl").exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-300:]}")


def teardown(state_dir: Path, keep_data: bool = False) -> bool:
    """Take down the replicated database of a site from its layout file (also after a crash):
    stop every member and, unless ``keep_data``, remove it. True when there was anything to
    do (with ``keep_data``: when anything ran)."""
    cluster = Cluster.load(state_dir)
    if cluster is None:
        return False
    if keep_data:
        return cluster.stop_all()
    cluster.teardown()
    return True


def _free_ports(count: int) -> list[int]:
    """Free ports BELOW the kernel's ephemeral range: a port picked from that range (bind to
    port 0) can be taken as the local end of some outgoing connection before PostgreSQL binds
    it, and PostgreSQL then listens on IPv6 and the Unix socket only (seen 2026-12-01 while
    10,000 simulated agents held 20,000 loopback connections: a node's `pg_autoctl create`
    never reached the monitor). The ports are kept for the cluster's life (cluster.json)."""
    low = _ephemeral_low()
    ports: list[int] = []
    for candidate in random.sample(range(PORTS_FROM, max(PORTS_FROM + count, low)), k=200):
        if len(ports) == count:
            break
        if candidate not in ports and _bindable(candidate):
            ports.append(candidate)
    if len(ports) < count:
        raise ClusterError(f"no {count} free ports between {PORTS_FROM} and {low}")
    return ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    """Nothing holds ``port`` on any IPv4 or IPv6 address (a host without IPv6: IPv4)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family)
        except OSError:
            continue  # no such family here
        with s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def _first_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _runs(pid: int, program: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith(program[:15])
    except OSError:
        return False
