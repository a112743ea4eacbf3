"""dnsmasq as a network's DHCP server: static reservations only, as Neutron's DHCP agent runs it.

drivers/network/ovs.py calls ``ensure`` with the namespace and interface it made for the
network (an OVS internal port on the network's VLAN) and ``stop`` when the network leaves the
node. One dnsmasq per network, in that namespace, with a folder of its own (hosts file, options
file, leases, pid, the argv it was started with). ``ensure`` is idempotent: a running server
whose argv is unchanged gets SIGHUP when its reservations or options changed (dnsmasq re-reads
--dhcp-hostsfile and --dhcp-optsfile), a dead one is started again, a changed argv (a subnet
came or went) restarts it. dnsmasq only answers the MACs in its hosts file (``static`` ranges),
never gives a dynamic lease, and serves no DNS (``--port=0``). The content (``render``) is a pure
function, tested on its own; the process part needs root and runs in the e2e tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from edgecloud.drivers.network.base import DhcpSubnet
from edgecloud.errors import DriverError

LEASE_TIME = "86400s"  # as Neutron's default
START_TIMEOUT = 5.0


@dataclass(frozen=True)
class Rendered:
    """What one dnsmasq is started with and reads: argv options and its two files."""

    options: tuple[str, ...]
    hosts: str
    opts: str


def render(interface: str, folder: Path, subnets: tuple[DhcpSubnet, ...]) -> Rendered:
    """dnsmasq's options, --dhcp-hostsfile and --dhcp-optsfile for ``subnets`` (pure)."""
    options = [
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",
        "--bind-interfaces",
        f"--interface={interface}",
        "--except-interface=lo",
        "--dhcp-authoritative",
        "--user=root",
        f"--pid-file={folder / 'dnsmasq.pid'}",
        f"--dhcp-hostsfile={folder / 'hosts'}",
        f"--dhcp-optsfile={folder / 'opts'}",
        f"--dhcp-leasefile={folder / 'leases'}",
    ]
    hosts, opts = [], []
    for n, subnet in enumerate(sorted(subnets, key=lambda s: s.subnet_id)):
        net = ipaddress.ip_network(subnet.cidr)
        tag = f"subnet{n}"
        mask = str(net.netmask) if net.version == 4 else str(net.prefixlen)
        options.append(f"--dhcp-range=set:{tag},{net.network_address},static,{mask},{LEASE_TIME}")
        for r in sorted(subnet.reservations, key=lambda r: r.mac):
            address = r.ip_address if net.version == 4 else f"[{r.ip_address}]"
            hosts.append(f"{r.mac.lower()},{address}")
        opts += _options(tag, net.version, subnet)
    return Rendered(tuple(options), "\n".join(hosts) + "\n", "\n".join(opts) + "\n")


def _options(tag: str, version: int, subnet: DhcpSubnet) -> list[str]:
    if version == 6:
        dns = [f"[{d}]" for d in subnet.dns_nameservers if ":" in d]
        return [f"tag:{tag},option6:dns-server,{','.join(dns)}"] if dns else []
    lines = [f"tag:{tag},option:router" + (f",{subnet.gateway}" if subnet.gateway else "")]
    dns = [d for d in subnet.dns_nameservers if ":" not in d]
    if dns:
        lines.append(f"tag:{tag},option:dns-server,{','.join(dns)}")
    if subnet.host_routes:  # RFC 3442: with classless routes the client ignores option 3
        routes = [f"{dest},{hop}" for dest, hop in subnet.host_routes]
        if subnet.gateway:
            routes.append(f"0.0.0.0/0,{subnet.gateway}")
        lines.append(f"tag:{tag},option:classless-static-route,{','.join(routes)}")
    return lines


async def ensure(namespace: str, folder: Path, rendered: Rendered) -> int:
    """Make a dnsmasq serve ``rendered`` inside ``namespace``; returns its pid."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    argv_file = folder / "argv.json"
    wanted_argv = json.dumps(rendered.options)
    changed = await asyncio.to_thread(_write_if_changed, folder / "hosts", rendered.hosts)
    changed |= await asyncio.to_thread(_write_if_changed, folder / "opts", rendered.opts)
    pid = running_pid(folder)
    if pid is not None and _read(argv_file) == wanted_argv:
        if changed:
            os.kill(pid, signal.SIGHUP)
        return pid
    await stop(folder, keep_folder=True)
    await asyncio.to_thread(argv_file.write_text, wanted_argv)
    return await _start(namespace, folder, rendered)


async def _start(namespace: str, folder: Path, rendered: Rendered) -> int:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    argv = ["ip", "netns", "exec", namespace, dnsmasq, *rendered.options]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()  # dnsmasq forks into the background once it is ready
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip().splitlines()
        raise DriverError(
            f"could not start dnsmasq in namespace {namespace}: "
            f"{'; '.join(text) or f'exit code {proc.returncode}'}"
        )
    deadline = time.monotonic() + START_TIMEOUT
    while (pid := running_pid(folder)) is None:
        if time.monotonic() > deadline:
            raise DriverError(f"dnsmasq in namespace {namespace} wrote no pid file")
        await asyncio.sleep(0.05)
    return pid


def running_pid(folder: Path) -> int | None:
    """The pid of this folder's dnsmasq if it runs (and is that dnsmasq), else None."""
    text = _read(folder / "dnsmasq.pid").strip()
    if not text.isdigit():
        return None
    try:
        cmdline = Path(f"/proc/{text}/cmdline").read_bytes()
    except OSError:
        return None
    return int(text) if str(folder / "dnsmasq.pid").encode() in cmdline else None


async def stop(folder: Path, keep_folder: bool = False) -> None:
    """Stop this folder's dnsmasq (no-op if none) and remove the folder unless asked not to."""
    pid = running_pid(folder)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while running_pid(folder) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if running_pid(folder) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if not keep_folder:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_if_changed(path: Path, text: str) -> bool:
    if _read(path) == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
