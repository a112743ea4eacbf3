"""One node's own hypervisor daemons, for a multi-node site on one machine.

Each node of `edgecloud up --nodes N` runs its own libvirtd and virtlogd, as separate machines
would: own configuration, run, state and log folders, own host UUID (libvirt refuses to
migrate between two daemons with the same one), own socket. They live in a private mount
namespace (``unshare --mount``) in which the node's folders are bind-mounted over
/etc/libvirt, /run/libvirt, /var/lib/libvirt and /var/log/libvirt; the client socket is put
outside those mounts (a short path under /run/edgecloud-hv/, because a unix socket path has
at most 107 bytes) so that the node's agent, in the host's namespace, reaches it. When the
node's TLS files exist (written by its agent at enrollment, AGENT_STATE/tls/), libvirtd also
listens for TLS on the node's internal address, and QEMU migrates with TLS on that address:
that is how one node's libvirtd reaches another's, as over a real site network.

Only allinone/ (and through it cli/) uses this; the agent and drivers see a libvirt URI like
any other. Verified recipe: ../shared/HOST-NOTES.md ("Two hypervisor daemons on one machine").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgecloud.allinone.processes import alive
from edgecloud.firewall import LIBVIRTD_TLS_PORT

SOCKET_BASE = Path("/run/edgecloud-hv")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
TLS_PORT = LIBVIRTD_TLS_PORT
# what the daemons' namespace sees -> the node's folder under ROOT
MOUNTS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
          ("log", "/var/log/libvirt"))  # fmt: skip
LIBVIRTD_PID = "libvirtd.pid"
VIRTLOGD_PID = "virtlogd.pid"


class HypervisorError(RuntimeError):
    """A node's hypervisor daemons could not be started or stopped."""


@dataclass(frozen=True)
class NodeHypervisor:
    """libvirtd + virtlogd of one node, with folders under ``root``.

    ``address``: the node's internal address (a loopback alias such as 127.0.1.2 on one
    machine); ``tls_dir``: the node agent's TLS folder (libvirt/ and qemu/ layouts), used
    when it holds the files.
    """

    name: str
    root: Path
    address: str
    tls_dir: Path | None = None

    @property
    def socket_dir(self) -> Path:
        digest = hashlib.sha256(str(self.root.absolute()).encode()).hexdigest()[:12]
        return SOCKET_BASE / digest

    @property
    def socket(self) -> Path:
        return self.socket_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def host_uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgecloud-node:{self.root.absolute()}"))

    @property
    def tls_enabled(self) -> bool:
        return self.tls_dir is not None and (self.tls_dir / "libvirt" / "servercert.pem").exists()

    # lifecycle -----------------------------------------------------------------------------
    def running(self) -> bool:
        return _pid_alive(self._pid(LIBVIRTD_PID)) and self.socket.exists()

    def start(self) -> None:
        """Start the node's daemons unless they run (idempotent); wait for the socket."""
        if self.running():
            return
        # a libvirtd that died: its guests keep running and the new one reconnects to them
        # (their state and monitor sockets are in the node's folders); a virtlogd that lives
        # on keeps their console logs, so only the missing daemons start
        _terminate(self._pid(LIBVIRTD_PID), "libvirtd")
        (self.root / "run" / LIBVIRTD_PID).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.socket).unlink()
        logd_alive = _pid_alive(self._pid(VIRTLOGD_PID)) and _runs(
            self._pid(VIRTLOGD_PID) or 0, "virtlogd"
        )
        self._write_config()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        script = [
            *(f"mount --bind {self.root / folder} {target}" for folder, target in MOUNTS),
            *([] if logd_alive else [f"virtlogd -d -p /run/libvirt/{VIRTLOGD_PID}"]),
            "libvirtd -d --config /etc/libvirt/libvirtd.conf "
            f"--pid-file /run/libvirt/{LIBVIRTD_PID}" + (" --listen" if self.tls_enabled else ""),
        ]
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", "\n".join(script)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise HypervisorError(
                f"node {self.name}: its libvirtd did not start: {done.stderr.strip() or done.stdout.strip()}"
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.running():
            if time.monotonic() > deadline:
                raise HypervisorError(
                    f"node {self.name}: libvirtd did not open {self.socket} within "
                    f"{START_TIMEOUT:.0f} s; see {self.root / 'log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the node's guests (its QEMU processes) and daemons; works from the pid files
        alone, so also after the supervisor crashed. Folders stay (``purge`` removes them)."""
        qemu_pids = [_read_pid(p) for p in sorted((self.root / "run" / "qemu").glob("*.pid"))]
        for pid in qemu_pids:
            _terminate(pid, "qemu-system")
        for pid_file, program in ((LIBVIRTD_PID, "libvirtd"), (VIRTLOGD_PID, "virtlogd")):
            _terminate(self._pid(pid_file), program)
            (self.root / "run" / pid_file).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.socket_dir)

    def purge(self) -> None:
        """Stop, then remove every folder of the node's hypervisor."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # configuration -------------------------------------------------------------------------
    def _write_config(self) -> None:
        for folder, _ in MOUNTS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        etc = self.root / "etc"
        (etc / "qemu").mkdir(exist_ok=True)
        (self.root / "lib" / "qemu").mkdir(parents=True, exist_ok=True)
        libvirtd = [
            f'unix_sock_dir = "{self.socket_dir}"',
            'unix_sock_rw_perms = "0700"',
            f'host_uuid = "{self.host_uuid}"',
            "listen_tcp = 0",
        ]
        qemu = [
            'user = "root"',
            'group = "root"',
            f'migration_address = "{self.address}"',
            f'migration_host = "{self.address}"',
        ]
        if self.tls_enabled:
            assert self.tls_dir is not None
            pki = self.tls_dir / "libvirt"
            libvirtd += [
                "listen_tls = 1",
                f'listen_addr = "{self.address}"',
                f'tls_port = "{TLS_PORT}"',
                f'ca_file = "{pki / "cacert.pem"}"',
                f'cert_file = "{pki / "servercert.pem"}"',
                f'key_file = "{pki / "serverkey.pem"}"',
                "tls_no_verify_certificate = 0",
                'auth_tls = "none"',
            ]
            qemu += [
                f'default_tls_x509_cert_dir = "{self.tls_dir / "qemu"}"',
                "default_tls_x509_verify = 1",
                f'migrate_tls_x509_cert_dir = "{self.tls_dir / "qemu"}"',
                "migrate_tls_x509_verify = 1",
            ]
        else:
            libvirtd.append("listen_tls = 0")
        _write(etc / "libvirtd.conf", libvirtd)
        _write(etc / "qemu.conf", qemu)
        _write(etc / "virtlogd.conf", [])

    def _pid(self, pid_file: str) -> int | None:
        return _read_pid(self.root / "run" / pid_file)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int | None) -> bool:
    return pid is not None and alive(pid)


def _terminate(pid: int | None, program: str) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns when the process is gone. Only a
    process running ``program`` is touched: a stale pid file may name a reused pid."""
    if pid is None or not _pid_alive(pid) or not _runs(pid, program):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
        time.sleep(0.05)


def _runs(pid: int, program: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith(program[:15])
    except OSError:
        return False
