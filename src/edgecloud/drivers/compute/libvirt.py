"""The libvirt compute driver: domains are real QEMU VMs (TCG, or KVM when it works).

Implements drivers/compute/base.py for the agent; registry.py builds it for ``--driver
libvirt``. Domain XML comes from domain_xml.py, config drives from configdrive.py, the KVM probe
guest's kernel from images/. Every libvirt call runs in the driver's worker threads, never on
the event loop. Files under ``state_dir``:

    console/<name>.log       the serial console (written by QEMU through virtlogd)
    configdrive/<name>.iso   the config drive
    disks/<name>.qcow2       the domain's own disk: an overlay on the cached base image (disks.py)
    boot/<name>              the boot id of the domain's last start (kept while it is stopped)
    accel.json               the result of the KVM probe (run once per host)

A domain is ours when its name starts with the driver's prefix (DOMAIN_PREFIX by default) and
its XML carries the edgecloud metadata element; anything else on the host is never listed or
touched. The boot id is made at every start (random) and kept in the running domain's live
metadata: it survives agent restarts (an adopted domain is recognised as not restarted) and
moves with a live migration; a domain started before that mark existed gets one derived from
its QEMU process (pid and start time), as then. (The pid file is not always readable from
the agent: a node's own libvirtd may keep its run folder in another mount namespace.)

``guest_interfaces`` talks to a disk-booted guest's QEMU guest agent (the channel domain_xml.py
adds) with libvirt_qemu.qemuAgentCommand: ``guest-network-get-interfaces`` for names and MACs,
then each NIC's sysfs ``uevent`` read with ``guest-file-*`` for its PCI address (no process is
started in the guest). libvirt's live XML says whether the guest's agent has opened its port,
so a guest without a running agent costs no wait at all; every command has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edgecloud import files
from edgecloud.drivers.compute import disks, domain_xml
from edgecloud.drivers.compute.base import (
    DOMAIN_PREFIX,
    ComputeCapabilities,
    ComputeDriver,
    DomainInfo,
    DomainSpec,
    GuestInterface,
    HostFacts,
    IncomingPlacement,
    MigrationPeer,
    MigrationStats,
    PowerState,
    VnicSpec,
)
from edgecloud.drivers.compute.configdrive import build_config_drive
from edgecloud.drivers.compute.domain_xml import DomainMarks
from edgecloud.errors import DriverError
from edgecloud.memory_copy import COPY_MODES

libvirt: Any  # the libvirt-python module, or None on a node without it
libvirt_qemu: Any  # its QEMU-specific part (guest agent commands)
try:
    import libvirt as _libvirt
    import libvirt_qemu as _libvirt_qemu

    libvirt, libvirt_qemu = _libvirt, _libvirt_qemu
except ImportError:  # pragma: no cover - depends on the host
    libvirt = libvirt_qemu = None

T = TypeVar("T")
LOG = logging.getLogger(__name__)
ACCELS = ("auto", "kvm", "tcg")
PROBE_SECONDS = 8.0
PROBE_MARK = "Linux version"
DETACH_SECONDS = 30.0
DETACH_RESEND_SECONDS = 3.0
SHUTDOWN_RETRY_SECONDS = 1.0
QEMU_RUN_DIR = Path("/run/libvirt/qemu")
_HOTPLUG_DIRTY = "hot-plugged"  # spec-hash of a persistent definition changed by attach/detach
_GUEST_NIC_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # a Linux interface name, no "/"
_UEVENT_BYTES = 4096


class LibvirtComputeDriver(ComputeDriver):
    """Domains of a libvirt daemon (``qemu:///system`` by default)."""

    name = "libvirt"
    capabilities = ComputeCapabilities(
        hot_plug_vnic=True,
        console_log=True,
        config_drive=True,
        hostdev=True,
        persistent=True,
        guest_agent=True,
        live_migration=True,
    )

    def __init__(
        self,
        state_dir: Path,
        uri: str = "qemu:///system",
        accel: str = "auto",
        *,
        name_prefix: str = DOMAIN_PREFIX,
        allow_unbound_vnics: bool = False,
        declared_slots: bool = True,
    ) -> None:
        if libvirt is None:
            raise DriverError(
                "the libvirt driver needs libvirt-python (scripts/bootstrap-host --venv PATH)"
            )
        if accel not in ACCELS:
            raise DriverError(f"accel {accel!r} is not one of {', '.join(ACCELS)}")
        if not name_prefix.startswith(DOMAIN_PREFIX):
            raise DriverError(f"name prefix {name_prefix!r} must start with {DOMAIN_PREFIX!r}")
        self.state_dir = Path(state_dir)
        self.uri = uri
        self._accel_wanted = accel
        self._prefix = name_prefix
        self._allow_unbound = allow_unbound_vnics
        self._declared_slots = declared_slots  # False: libvirt's default addressing (baseline)
        self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="libvirt")
        self._conn: Any = None
        self._accel: str | None = None  # "kvm" or "tcg" once known
        self._accel_source = ""  # how it was chosen, for HostFacts.details
        self._accel_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        libvirt.registerErrorHandler(_quiet, None)  # errors come back as exceptions

    # -- the contract --------------------------------------------------------------------------

    async def fingerprint(self) -> HostFacts:
        accel = await self._resolve_accel()
        info, lib_version, hv_version, hostname = await self._call(
            "read host facts",
            lambda c: (c.getInfo(), c.getLibVersion(), c.getVersion(), c.getHostname()),
        )
        disk = await self._run(_disk_usage, self.state_dir)
        return HostFacts(
            vcpus=int(info[2]),
            memory_mib=int(info[1]),
            disk_gib=disk.free // 2**30,
            hypervisor="kvm" if accel == "kvm" else "qemu-tcg",
            details={
                "accel": accel,
                "accel_source": self._accel_source,
                "uri": self.uri,
                "libvirt": _version(lib_version),
                "qemu": _version(hv_version),
                "hostname": hostname,
                "cpu_model": str(info[0]),
            },
        )

    async def define(self, spec: DomainSpec) -> None:
        domain_xml.validate_spec(spec)
        if not spec.name.startswith(self._prefix):
            raise DriverError(f"domain name {spec.name!r} does not start with {self._prefix!r}")
        domain_type = "kvm" if await self._resolve_accel() == "kvm" else "qemu"
        if spec.boot.disk_path:  # boot from the domain's own overlay, never the base image
            overlay = self._disk_path(spec.name)
            await disks.ensure_overlay(
                Path(spec.boot.disk_path), spec.boot.disk_format, overlay, spec.disk_gib
            )
            boot = dataclasses.replace(spec.boot, disk_path=str(overlay), disk_format="qcow2")
            spec = dataclasses.replace(spec, boot=boot)
        iso = self._config_drive_path(spec.name)
        xml = domain_xml.build_domain_xml(
            spec,
            console_path=str(self._console_path(spec.name)),
            domain_type=domain_type,
            config_drive=str(iso),
            allow_unbound=self._allow_unbound,
            declared_slots=self._declared_slots,
        )
        wanted = domain_xml.read_metadata(xml)
        assert wanted is not None  # build_domain_xml always writes the marks
        async with self._lock(spec.name):
            current = await self._call(f"look up domain {spec.name}", _inactive_marks, spec.name)
            if current is not None and current.instance_id != spec.instance_id:
                raise DriverError(
                    f"domain {spec.name} already belongs to instance {current.instance_id}"
                )
            unchanged = current is not None and current.spec_hash == wanted.spec_hash
            if unchanged and await self._run(iso.exists):
                await self._run(files.restrict, iso)  # one an older version left 0644
                return
            if current is None and await self._call(f"look up {spec.name}", _exists, spec.name):
                raise DriverError(f"domain {spec.name} exists but was not created by edgecloud")
            await self._run(_make_dirs, self._console_path(spec.name).parent)
            await build_config_drive(spec, iso)
            await self._call(f"define domain {spec.name}", lambda c: c.defineXML(xml))

    async def start(self, name: str) -> None:
        async with self._lock(name):
            dom = await self._owned(name)
            if await self._call(f"read state of {name}", lambda _c: dom.isActive()):
                return
            await self._run(_make_dirs, self._console_path(name).parent)
            await self._call(f"start domain {name}", lambda _c: dom.create())
            await self._call(f"record boot id of {name}", lambda _c: self._boot_id(dom, name, True))

    async def stop(self, name: str, timeout: float = 10.0) -> None:
        async with self._lock(name):
            dom = await self._owned(name)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while await self._call(f"read state of {name}", lambda _c: dom.isActive()):
                if loop.time() >= deadline:
                    await self._call(f"power off domain {name}", lambda _c: _destroy(dom))
                    return
                # Press the power button again and again: a guest still booting misses it.
                await self._call(f"shut down domain {name}", lambda _c: _shutdown(dom))
                pause = min(SHUTDOWN_RETRY_SECONDS, deadline - loop.time())
                await self._wait_inactive(dom, name, pause)

    async def destroy(self, name: str) -> None:
        async with self._lock(name):
            dom = await self._owned(name)
            await self._call(f"power off domain {name}", lambda _c: _destroy(dom))

    async def delete(self, name: str) -> None:
        async with self._lock(name):
            dom = await self._call(f"look up domain {name}", _lookup, name)
            if dom is not None:
                if not await self._call(f"read {name}", lambda _c: _is_owned(dom)):
                    raise DriverError(f"domain {name} was not created by edgecloud; not deleting")
                await self._call(f"power off domain {name}", lambda _c: _destroy(dom))
                await self._call(f"undefine domain {name}", lambda _c: _undefine(dom))
            files = (
                self._console_path(name),
                self._config_drive_path(name),
                self._boot_path(name),
                self._disk_path(name),
            )
            await self._run(_remove_files, files)

    async def list_domains(self) -> list[DomainInfo]:
        return await self._call("list domains", self._list_domains)

    async def console_log(self, name: str, max_bytes: int = 65536) -> str:
        await self._owned(name)
        return await self._run(_tail, self._console_path(name), max_bytes)

    async def guest_interfaces(
        self, name: str, timeout: float = 5.0
    ) -> tuple[GuestInterface, ...] | None:
        dom = await self._owned(name)
        return await self._call(
            f"ask the guest agent of {name}", lambda _c: _guest_interfaces(dom, timeout)
        )

    async def attach_vnic(self, name: str, vnic: VnicSpec) -> None:
        async with self._lock(name):
            dom = await self._owned(name)
            xml = domain_xml.vnic_xml(
                vnic, allow_unbound=self._allow_unbound, declared_slot=self._declared_slots
            )
            await self._call(f"hot-plug a vNIC into {name}", lambda _c: _attach(dom, vnic, xml))

    async def detach_vnic(self, name: str, mac: str) -> None:
        async with self._lock(name):
            dom = await self._owned(name)
            unplug = f"hot-unplug vNIC {mac} from {name}"
            live = await self._call(unplug, lambda _c: _detach(dom, mac))
            if live is not None:
                await self._wait_detached(dom, name, live)
            await self._call(
                f"update the vNICs of {name}", lambda _c: _forget_vnic(dom, mac, live is not None)
            )

    async def prepare_incoming(self, spec: DomainSpec) -> IncomingPlacement:
        """The destination's files for a domain migrating in: its overlay (empty, on the cached
        base image: the source copies its overlay's blocks into it over NBD), its config drive
        and console folder; nothing is defined (the migration defines the domain)."""
        domain_xml.validate_spec(spec)
        overlay = None
        if spec.boot.disk_path:
            overlay = self._disk_path(spec.name)
            await disks.ensure_overlay(
                Path(spec.boot.disk_path), spec.boot.disk_format, overlay, spec.disk_gib
            )
        iso = self._config_drive_path(spec.name)
        await self._run(_make_dirs, self._console_path(spec.name).parent)
        await self._run(_make_dirs, iso.parent)
        await build_config_drive(spec, iso)
        ports = {
            v.mac.lower(): {"bridge": v.binding.bridge, "port_name": v.binding.port_name}
            for v in spec.vnics
            if v.binding is not None and v.binding.kind == "ovs"
        }
        return IncomingPlacement(
            disk_path=str(overlay) if overlay else None,
            config_drive=str(iso),
            console_path=str(self._console_path(spec.name)),
            kernel_path=spec.boot.kernel_path,
            initrd_path=spec.boot.initrd_path,
            ports=ports,
        )

    async def migrate_out(self, name: str, peer: MigrationPeer) -> MigrationStats:
        """Peer-to-peer live migration over TLS (libvirtd to libvirtd on 16514, QEMU to QEMU
        and the disk's NBD copy on the destination's migration ports, all at ``peer.address``,
        all with the nodes' site certificates). The domain's overlay is copied (NON_SHARED_INC:
        only the overlay, the base image is in the destination's cache); the destination keeps
        it persistently. The source definition is undefined here after the completed job's
        statistics were read (rather than VIR_MIGRATE_UNDEFINE_SOURCE, which drops them)."""
        async with self._lock(name):
            dom = await self._owned(name)
            if not await self._call(f"read state of {name}", lambda _c: dom.isActive()):
                raise DriverError(f"domain {name} is not running: cannot migrate it live")
            uri = f"qemu+tls://{_uri_host(peer.address)}/system?pkipath={peer.pki_dir}"
            started = time.monotonic()
            copy = await self._call(
                f"migrate {name} to {peer.host}", lambda _c: _migrate(dom, uri, peer)
            )
            total_ms = (time.monotonic() - started) * 1000
            stats = await self._call(f"read the migration of {name}", lambda _c: _job_stats(dom))
            await self._call(f"undefine migrated {name}", lambda _c: _undefine(dom))
            leftovers = (
                self._console_path(name),
                self._config_drive_path(name),
                self._boot_path(name),
                self._disk_path(name),
            )
            await self._run(_remove_files, leftovers)
        return MigrationStats(
            total_ms=float(stats.get("time_elapsed", total_ms)),
            downtime_ms=float(stats["downtime"]) if "downtime" in stats else None,
            bytes=int(stats.get("data_processed", 0)),
            memory_copy=copy,
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(_close, conn)
        self._executor.shutdown(wait=False)

    # -- acceleration --------------------------------------------------------------------------

    async def _resolve_accel(self) -> str:
        async with self._accel_lock:
            if self._accel is None:
                self._accel = await self._choose_accel()
            return self._accel

    async def _choose_accel(self) -> str:
        if self._accel_wanted != "auto":
            self._accel_source = "configured"
            return self._accel_wanted
        if not self.uri.startswith("qemu") or not await self._run(os.path.exists, "/dev/kvm"):
            self._accel_source = "no /dev/kvm"
            return "tcg"
        cache = self.state_dir / "accel.json"
        key = await self._call("read the hypervisor version", _host_key)
        cached = await self._run(_read_json, cache)
        if cached.get("key") == key and cached.get("accel") in ("kvm", "tcg"):
            self._accel_source = f"probe cached in {cache}"
            return str(cached["accel"])
        accel = "kvm" if await self._kvm_boots() else "tcg"
        self._accel_source = (
            "probe: a KVM guest reached its kernel"
            if accel == "kvm"
            else f"probe: a KVM guest did not reach its kernel in {PROBE_SECONDS:.0f} s"
        )
        await self._run(_write_json, cache, {"key": key, "accel": accel, "probed_at": time.time()})
        return accel

    async def _kvm_boots(self) -> bool:
        """Boot a kernel under KVM and see whether it prints its banner within seconds."""
        from edgecloud.images.building import find_host_kernel

        try:
            kernel = find_host_kernel()
        except DriverError:
            return False
        name = f"{DOMAIN_PREFIX}probe-kvm-{uuid.uuid4().hex[:8]}"
        console = self.state_dir / "console" / f"{name}.log"
        await self._run(_make_dirs, console.parent)
        xml = _probe_xml(name, str(kernel), str(console))
        try:
            # AUTODESTROY: the probe guest dies with our connection, even if we crash.
            flags = libvirt.VIR_DOMAIN_START_AUTODESTROY
            dom = await self._call("start the KVM probe guest", lambda c: c.createXML(xml, flags))
        except DriverError:
            return False
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PROBE_SECONDS
            while loop.time() < deadline:
                if PROBE_MARK in await self._run(_tail, console, 65536):
                    return True
                await asyncio.sleep(0.2)
            return False
        finally:
            await self._call("stop the KVM probe guest", lambda _c: _destroy(dom))
            await self._run(_remove_files, (console,))

    # -- helpers -------------------------------------------------------------------------------

    def _list_domains(self, conn: Any) -> list[DomainInfo]:
        infos = []
        for dom in conn.listAllDomains(0):
            name = dom.name()
            if not name.startswith(self._prefix):
                continue
            try:
                marks = domain_xml.read_metadata(dom.XMLDesc(0))
                if marks is None:
                    continue
                state = _power_state(*dom.state())
                boot_id = self._boot_id(dom, name) if dom.isActive() else self._last_boot_id(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # deleted while we listed
                raise
            macs = tuple(v["mac"] for v in sorted(marks.vnics, key=lambda v: int(v["index"])))
            infos.append(DomainInfo(name, marks.instance_id, state, boot_id, macs))
        return infos

    def _boot_id(self, dom: Any, name: str, new: bool = False) -> str:
        """The running domain's boot id (``new``: it has just been started); remembered so a
        stopped domain still reports it.

        It is kept in the running domain's live metadata (domain_xml.boot_xml), which a live
        migration carries along: the destination reports the boot id the source had."""
        boot_id = (None if new else _live_boot_id(dom)) or self._new_boot_id(dom, name, new)
        if self._last_boot_id(name) != boot_id:
            path = self._boot_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(boot_id)
        return boot_id

    def _new_boot_id(self, dom: Any, name: str, new: bool) -> str:
        """A boot id, marked in the live XML: random for a domain just started; for one
        started before boot ids were marked, made from its QEMU process (pid, start time),
        as then, so adopting it does not look like a restart."""
        if new:
            boot_id = uuid.uuid4().hex[:16]
            _set_live_boot_id(dom, boot_id)
            return boot_id
        parts = [dom.UUIDString(), str(dom.ID())]
        try:
            pid = (QEMU_RUN_DIR / f"{name}.pid").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text()
            parts += [pid, stat.rsplit(")", 1)[1].split()[19]]  # field 22: start time
        except (OSError, IndexError):
            pass  # not a local QEMU (e.g. libvirt's test driver): uuid + id only
        boot_id = hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]
        _set_live_boot_id(dom, boot_id)
        return boot_id

    def _last_boot_id(self, name: str) -> str:
        try:
            return self._boot_path(name).read_text().strip()
        except OSError:
            return ""

    async def _wait_inactive(self, dom: Any, name: str, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            if not await self._call(f"read state of {name}", lambda _c: dom.isActive()):
                return
            await asyncio.sleep(0.1)

    async def _wait_detached(self, dom: Any, name: str, device: str) -> None:
        """Wait until the guest has released a hot-unplugged device (it must cooperate)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DETACH_SECONDS
        resend = loop.time() + DETACH_RESEND_SECONDS
        while await self._call(f"read {name}", lambda _c: _still_attached(dom, device)):
            if loop.time() >= deadline:
                raise DriverError(
                    f"the guest of {name} did not release the vNIC within {DETACH_SECONDS:.0f} s"
                )
            if loop.time() >= resend:
                # A guest still booting misses the unplug request: ask again (as for shutdown).
                resend = loop.time() + DETACH_RESEND_SECONDS
                await self._call(f"hot-unplug a vNIC from {name}", lambda _c: _resend(dom, device))
            await asyncio.sleep(0.2)

    async def _owned(self, name: str) -> Any:
        dom = await self._call(f"look up domain {name}", _lookup, name)
        if dom is None or not name.startswith(self._prefix):
            raise DriverError(f"no domain named {name!r}")
        if not await self._call(f"read {name}", lambda _c: _is_owned(dom)):
            raise DriverError(f"domain {name} was not created by edgecloud")
        return dom

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _console_path(self, name: str) -> Path:
        return self.state_dir / "console" / f"{name}.log"

    def _config_drive_path(self, name: str) -> Path:
        return self.state_dir / "configdrive" / f"{name}.iso"

    def _disk_path(self, name: str) -> Path:
        return self.state_dir / "disks" / f"{name}.qcow2"

    def _boot_path(self, name: str) -> Path:
        return self.state_dir / "boot" / name

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in a worker thread; libvirt errors become DriverError."""
        return await self._run(self._with_connection, what, fn, *args)

    def _with_connection(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            if self._conn is None or not self._conn.isAlive():
                self._conn = libvirt.open(self.uri)
            return fn(self._conn, *args)
        except libvirt.libvirtError as exc:
            raise DriverError(f"could not {what}: {exc.get_error_message()}") from exc
        except OSError as exc:
            raise DriverError(f"could not {what}: {exc}") from exc


# -- blocking helpers (run in the worker threads) --------------------------------------------


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt's default error handler prints to stderr; the exception says it all."""


def _lookup(conn: Any, name: str) -> Any:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _exists(conn: Any, name: str) -> bool:
    return _lookup(conn, name) is not None


def _inactive_marks(conn: Any, name: str) -> DomainMarks | None:
    dom = _lookup(conn, name)
    if dom is None:
        return None
    return domain_xml.read_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _is_owned(dom: Any) -> bool:
    return domain_xml.read_metadata(dom.XMLDesc(0)) is not None


def _power_state(state: int, reason: int) -> PowerState:
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return PowerState.RUNNING
    if state == libvirt.VIR_DOMAIN_SHUTDOWN:  # shutting down: still running
        return PowerState.RUNNING
    if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return PowerState.PAUSED
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return PowerState.CRASHED
    if state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED:
        return PowerState.CRASHED
    return PowerState.STOPPED


MIGRATION_TIMEOUT = 300.0  # seconds before an unfinished live migration is aborted
MIGRATION_FLAGS_NAMES = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_TLS",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_NON_SHARED_INC",
    "VIR_MIGRATE_ABORT_ON_ERROR",
)


def _live_boot_id(dom: Any) -> str | None:
    try:
        text = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, domain_xml.BOOT_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE
        )
    except libvirt.libvirtError:
        return None  # never marked (started before the mark existed): made from the process
    found = ET.fromstring(text).get("id")
    return found or None


def _set_live_boot_id(dom: Any, boot_id: str) -> None:
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        domain_xml.boot_xml(boot_id),
        domain_xml.BOOT_PREFIX,
        domain_xml.BOOT_NS,
        libvirt.VIR_DOMAIN_AFFECT_LIVE,
    )


def _uri_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


TCG_SOUND_DIRTY_TRACKING = 9_000_000  # QEMU 9.0, as libvirt numbers versions


def copy_mode(requested: str, domain_type: str, qemu_version: int) -> str:
    """How to copy a domain's memory (``COPY_MODES``): ``auto`` is pre-copy under KVM and
    under QEMU's TCG from 9.0 on, paused under an older TCG (``domain_type`` "qemu";
    ``qemu_version`` as libvirt's getVersion gives it: major * 1,000,000 + minor * 1,000 +
    micro). QEMU's TCG before 9.0 loses guest writes to pages it already marked dirty once
    the migration has synced its bitmap (fixed upstream by "physmem: Fix migration dirty
    bitmap coherency with TCG memory access"; Debian 12's 7.2 lacks it, bootstrap-host
    installs 10.0 from bookworm-backports): a guest moved pre-copy under load can arrive
    with stale memory (seen here: its virtio-net transmit ring inconsistent, the guest
    spinning in its NAPI poll). Paused, nothing is copied while the guest runs, so nothing
    can be missed."""
    if requested not in COPY_MODES:
        raise DriverError(
            f"unknown memory copy mode {requested!r} (one of {', '.join(COPY_MODES)})"
        )
    if requested != "auto":
        return requested
    unsound = domain_type == "qemu" and qemu_version < TCG_SOUND_DIRTY_TRACKING
    return "paused" if unsound else "pre-copy"


def migration_flags(copy: str, with_disk: bool) -> int:
    """libvirt's flags for a peer-to-peer migration over TLS of a domain copied ``copy``
    (resolved: pre-copy or paused), with its overlay disk copied when ``with_disk``."""
    flags = 0
    for flag in MIGRATION_FLAGS_NAMES:
        flags |= getattr(libvirt, flag)
    if not with_disk:
        flags &= ~libvirt.VIR_MIGRATE_NON_SHARED_INC
    if copy == "paused":
        flags &= ~libvirt.VIR_MIGRATE_LIVE  # libvirt pauses the guest, then copies it
    return flags


def _migrate(dom: Any, uri: str, peer: MigrationPeer) -> str:
    """Run the migration job (blocking) with the downtime limit set once the job runs;
    returns how the memory was copied."""
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
    version = int(dom.connect().getVersion())
    copy = copy_mode(peer.memory_copy, ET.fromstring(xml).get("type", ""), version)
    dest_xml = domain_xml.retarget(xml, peer.placement.as_json())
    params: dict[str, Any] = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: domain_xml.without_boot_mark(dest_xml),
        libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{_uri_host(peer.address)}",
    }
    if peer.placement.disk_path:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = ["vda"]
    flags = migration_flags(copy, bool(peer.placement.disk_path))
    done = threading.Event()
    watcher = threading.Thread(
        target=_limit_downtime, args=(dom, peer.max_downtime_ms, done), name="migration"
    )
    watcher.start()
    try:
        dom.migrateToURI3(uri, params, flags)
    finally:
        done.set()
        watcher.join()
    return copy


def _limit_downtime(dom: Any, max_downtime_ms: int, done: Any) -> None:
    """Set the downtime limit as soon as the job accepts it; abort a job that runs too long."""
    deadline = time.monotonic() + MIGRATION_TIMEOUT
    limited = False
    while not done.wait(0.05):
        try:
            if not limited and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                dom.migrateSetMaxDowntime(max_downtime_ms, 0)
                limited = True
            if time.monotonic() > deadline:
                LOG.warning(
                    "aborting the migration of %s after %.0f s", dom.name(), MIGRATION_TIMEOUT
                )
                dom.abortJob()
                return
        except libvirt.libvirtError as exc:
            LOG.debug("migration of %s: %s", dom.name(), exc.get_error_message())


def _job_stats(dom: Any) -> dict[str, Any]:
    try:
        return dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError as exc:
        LOG.info("no completed job statistics for %s: %s", dom.name(), exc.get_error_message())
        return {}


def _destroy(dom: Any) -> None:
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (
            libvirt.VIR_ERR_OPERATION_INVALID,
            libvirt.VIR_ERR_NO_DOMAIN,
        ):
            raise  # "not running": someone stopped it first, fine


def _shutdown(dom: Any) -> None:
    try:
        dom.shutdown()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
            raise


def _undefine(dom: Any) -> None:
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    )
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return
        dom.undefine()  # a hypervisor without these flags (libvirt's test driver)


def _affect(dom: Any) -> int:
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    return live | libvirt.VIR_DOMAIN_AFFECT_CONFIG


def _marks(dom: Any, flags: int) -> DomainMarks:
    marks = domain_xml.read_metadata(dom.XMLDesc(flags))
    if marks is None:
        raise DriverError(f"domain {dom.name()} lost its edgecloud metadata")
    return marks


def _set_marks(dom: Any, marks: DomainMarks, flags: int) -> None:
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        domain_xml.marks_xml(marks),
        domain_xml.METADATA_PREFIX,
        domain_xml.METADATA_NS,
        flags,
    )


def _attach(dom: Any, vnic: VnicSpec, device_xml: str) -> None:
    """Plug at the declared slot, live and in the persistent definition; record it."""
    name = dom.name()
    active = dom.isActive()
    xml = dom.XMLDesc(0)
    marks = _marks(dom, 0)
    declared = {v["mac"]: v for v in marks.vnics}
    if vnic.mac.lower() in declared:
        if declared[vnic.mac.lower()]["pci_slot"] == vnic.pci_slot:
            return  # already plugged
        raise DriverError(f"domain {name} already has a vNIC with MAC {vnic.mac}")
    fixed_slot = domain_xml.guest_pci_slot(ET.fromstring(device_xml)) is not None
    if fixed_slot and vnic.pci_slot in domain_xml.used_pci_slots(xml):
        raise DriverError(f"PCI slot {vnic.pci_slot:#04x} of domain {name} is already taken")
    domain_xml.check_vnic_slots([vnic])
    dom.attachDeviceFlags(device_xml, _affect(dom))
    entry = domain_xml.vnic_declaration(vnic)
    for flags, digest in _metadata_targets(dom, active):
        old = _marks(dom, flags)
        new = DomainMarks(old.instance_id, digest or old.spec_hash, (*old.vnics, entry))
        _set_marks(dom, new, _affect_only(flags))


def _detach(dom: Any, mac: str) -> str | None:
    """Unplug the vNIC with ``mac``; return its live device XML when the guest must release it."""
    name = dom.name()
    mac = mac.lower()
    marks = _marks(dom, 0)
    entry = next((v for v in marks.vnics if v["mac"] == mac), None)
    if entry is None:
        raise DriverError(f"domain {name} has no vNIC with MAC {mac}")
    slot = int(entry["pci_slot"])
    live_device = None
    if dom.isActive():
        live_device = domain_xml.find_vnic_device(dom.XMLDesc(0), mac, slot)
        if live_device is not None:
            dom.detachDeviceFlags(live_device, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    config_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    config_device = domain_xml.find_vnic_device(config_xml, mac, slot)
    if config_device is not None:
        dom.detachDeviceFlags(config_device, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return live_device


def _resend(dom: Any, device_xml: str) -> None:
    try:
        dom.detachDeviceFlags(device_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    except libvirt.libvirtError as exc:
        LOG.info("repeated hot-unplug request for %s: %s", dom.name(), exc.get_error_message())


def _still_attached(dom: Any, device_xml: str) -> bool:
    device = ET.fromstring(device_xml)
    mac = device.find("mac")
    slot = domain_xml.guest_pci_slot(device)
    found = domain_xml.find_vnic_device(
        dom.XMLDesc(0), mac.get("address", "") if mac is not None else "", slot
    )
    return found is not None


def _forget_vnic(dom: Any, mac: str, active: bool) -> None:
    for flags, digest in _metadata_targets(dom, active and dom.isActive()):
        old = _marks(dom, flags)
        vnics = tuple(v for v in old.vnics if v["mac"] != mac.lower())
        new = DomainMarks(old.instance_id, digest or old.spec_hash, vnics)
        _set_marks(dom, new, _affect_only(flags))


def _metadata_targets(dom: Any, active: bool) -> list[tuple[int, str | None]]:
    """(XMLDesc flags, new spec-hash or None) of each definition to update after a hot plug.

    The persistent definition no longer matches any spec once a vNIC was plugged or unplugged:
    its spec-hash is spoiled so the next define() rewrites it.
    """
    targets: list[tuple[int, str | None]] = [(libvirt.VIR_DOMAIN_XML_INACTIVE, _HOTPLUG_DIRTY)]
    if active:
        targets.insert(0, (0, None))
    return targets


def _affect_only(xml_flags: int) -> int:
    if xml_flags == libvirt.VIR_DOMAIN_XML_INACTIVE:
        return int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return int(libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _guest_interfaces(dom: Any, timeout: float) -> tuple[GuestInterface, ...] | None:
    """The guest's NICs through its agent, or None while no agent answers (blocking)."""
    if not dom.isActive() or not _agent_connected(dom.XMLDesc(0)):
        return None
    deadline = time.monotonic() + timeout
    try:
        found = []
        for iface in _agent(dom, deadline, "guest-network-get-interfaces") or []:
            name, mac = str(iface.get("name", "")), str(iface.get("hardware-address", ""))
            if not mac or mac == "00:00:00:00:00:00" or not _GUEST_NIC_NAME.fullmatch(name):
                continue  # loopback, or a name that is no Linux interface name
            found.append(GuestInterface(name, mac.lower(), _guest_pci(dom, deadline, name)))
    except _OutOfTime:
        return None
    except libvirt.libvirtError as exc:
        if _agent_gone(exc):
            return None
        raise
    return tuple(sorted(found, key=lambda i: (i.pci is None, i.pci or "", i.name)))


class _OutOfTime(Exception):
    """The guest agent took longer than the caller's timeout over several commands."""


def _agent_connected(xml: str) -> bool:
    """Whether the guest has opened its guest agent port (libvirt tracks it in the live XML;
    a hypervisor that does not say is asked anyway)."""
    for target in ET.fromstring(xml).iterfind("devices/channel/target"):
        if target.get("name") == domain_xml.GUEST_AGENT_CHANNEL:
            return target.get("state") != "disconnected"
    return False  # no channel: a kernel-booted test VNF, or a domain defined before it had one


def _agent(dom: Any, deadline: float, command: str, **arguments: Any) -> Any:
    """One guest agent command, waiting at most until ``deadline`` (monotonic)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _OutOfTime
    seconds = max(1, round(left))
    text = json.dumps({"execute": command, "arguments": arguments})
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, text, seconds, 0)).get("return")


def _agent_gone(exc: Any) -> bool:
    """An error that means no agent answers (as opposed to a command the agent refused); a
    hypervisor without guest agent support has none either."""
    gone = {
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
        libvirt.VIR_ERR_OPERATION_INVALID,
        libvirt.VIR_ERR_NO_SUPPORT,
    }
    gone |= {getattr(libvirt, n, -1) for n in ("VIR_ERR_AGENT_UNSYNCED", "VIR_ERR_NO_DOMAIN")}
    gone |= {getattr(libvirt, "VIR_ERR_AGENT_COMMAND_TIMEOUT", -1)}
    return bool(exc.get_error_code() in gone)


def _guest_pci(dom: Any, deadline: float, nic: str) -> str | None:
    """The PCI address of the guest's ``nic`` from sysfs: its device's uevent, or for a
    virtio NIC (whose device is the virtio device) the parent's."""
    for path in (f"/sys/class/net/{nic}/device/uevent", f"/sys/class/net/{nic}/device/../uevent"):
        uevent = _guest_file(dom, deadline, path)
        if uevent is None:
            return None  # no device: a bridge, a VLAN, a tunnel inside the guest
        for line in uevent.splitlines():
            if line.startswith("PCI_SLOT_NAME="):
                return line.partition("=")[2].strip().lower()
    return None


def _guest_file(dom: Any, deadline: float, path: str) -> str | None:
    """A small file of the guest (None if it cannot be opened)."""
    try:
        handle = _agent(dom, deadline, "guest-file-open", path=path, mode="r")
    except libvirt.libvirtError as exc:
        if _agent_gone(exc):
            raise
        return None
    try:
        read = _agent(dom, deadline, "guest-file-read", handle=handle, count=_UEVENT_BYTES)
        return base64.b64decode(read.get("buf-b64", "")).decode(errors="replace")
    finally:
        _agent(dom, deadline, "guest-file-close", handle=handle)


def _tail(path: Path, max_bytes: int) -> str:
    if max_bytes <= 0:
        return ""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            data = f.read(max_bytes)
    except FileNotFoundError:
        return ""
    return data.decode(errors="ignore")


def _host_key(conn: Any) -> str:
    return f"{os.uname().release}|{conn.getVersion()}|{conn.getLibVersion()}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _close(conn: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


def _make_dirs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _remove_files(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _disk_usage(path: Path) -> Any:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path)


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _probe_xml(name: str, kernel: str, console: str) -> str:
    domain = ET.Element("domain", type="kvm")
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "128"
    ET.SubElement(domain, "vcpu").text = "1"
    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = kernel
    ET.SubElement(os_el, "cmdline").text = "console=ttyS0 panic=-1"
    # libvirt 9.0 passes -no-acpi for a domain without <acpi/>, an option QEMU 9.0 removed
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    devices = ET.SubElement(domain, "devices")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=console, append="off")
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="none")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")
