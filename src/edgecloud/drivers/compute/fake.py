"""The fake compute driver: a pretend hypervisor kept in memory, for tests and the simulator.

Implements drivers/compute/base.py and passes tests/drivers/compute_conformance.py like the
libvirt driver; drivers/registry.py builds it for ``--driver fake`` and the simulator (sim/)
runs thousands of them. Given a ``state_dir`` it rewrites ``fake-domains.json`` there after
every change, so a restarted agent finds its domains as it would find real VMs; without one it
never touches the disk. Specs are checked as a hypervisor would; a started domain prints what
the test guest prints: one ``EDGECLOUD-VNIC`` line per vNIC in declared order, then
``EDGECLOUD-READY``. A running domain booted from a disk has a guest agent that answers
``guest_interfaces`` (named ``ens<slot>`` as systemd names them), one booted from a kernel has
none, as with libvirt. Test hooks: ``fail_next``, ``crash``, ``silence_next_boot`` and
``set_guest_agent``, ``slow_migrations``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from edgecloud.drivers.compute.base import (
    DOMAIN_PREFIX,
    VNIC_MODELS,
    BootSource,
    ComputeCapabilities,
    ComputeDriver,
    DomainInfo,
    DomainSpec,
    GuestInterface,
    HostFacts,
    IncomingPlacement,
    IpSpec,
    MigrationPeer,
    MigrationStats,
    PowerState,
    VifBinding,
    VnicSpec,
)
from edgecloud.errors import DriverError

STATE_FILE = "fake-domains.json"
CONSOLE_LINES = 200  # the console keeps its last lines only, like a rotated log
OPERATIONS = frozenset(
    ComputeDriver.__abstractmethods__
    | {"attach_vnic", "detach_vnic", "guest_interfaces", "prepare_incoming", "migrate_out"}
)
HOSTDEV_MODELS = ("sriov-vf", "pci-passthrough")  # the fake has no host devices
_MAC = re.compile(r"[0-9a-f][02468ace](:[0-9a-f]{2}){5}")  # unicast only


@dataclasses.dataclass
class _Domain:
    spec: DomainSpec  # the definition, used at the next start
    state: PowerState = PowerState.STOPPED
    boot_id: str = ""  # empty until the first start
    live: tuple[VnicSpec, ...] = ()  # the vNICs the running guest has
    console: list[str] = dataclasses.field(default_factory=list)
    agent: bool | None = None  # whether its guest agent answers; None: only if disk-booted

    def info(self) -> DomainInfo:
        vnics = self.spec.vnics if self.state is PowerState.STOPPED else self.live
        spec = self.spec
        return DomainInfo(spec.name, spec.instance_id, self.state, self.boot_id, _macs(vnics))

    def print(self, *lines: str) -> None:
        self.console.extend(lines)
        del self.console[:-CONSOLE_LINES]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Domain:
        spec = dict(raw["spec"], boot=BootSource(**raw["spec"]["boot"]))
        spec["vnics"] = tuple(_vnic_from_json(v) for v in spec["vnics"])
        if isinstance(spec.get("user_data"), str):  # saved as base64 (see _save)
            spec["user_data"] = base64.b64decode(spec["user_data"])
        live = tuple(_vnic_from_json(v) for v in raw["live"])
        state = PowerState(raw["state"])
        return cls(
            DomainSpec(**spec), state, raw["boot_id"], live, raw["console"], raw.get("agent")
        )


class FakeComputeDriver(ComputeDriver):
    """Domains in a dict, optionally persisted under ``state_dir``."""

    name = "fake"
    capabilities = ComputeCapabilities(
        hot_plug_vnic=True,
        console_log=True,
        config_drive=True,
        persistent=True,
        guest_agent=True,
        live_migration=True,
    )
    # Domains prepared for an incoming migration, by name: the "network" between fake
    # hypervisors of one process (a closed driver no longer answers, as a dead daemon).
    _incoming: ClassVar[dict[str, tuple[FakeComputeDriver, DomainSpec]]] = {}

    def __init__(
        self,
        state_dir: Path | None = None,
        vcpus: int = 64,
        memory_mib: int = 262144,
        disk_gib: int = 2000,
    ) -> None:
        self._facts = HostFacts(vcpus, memory_mib, disk_gib, "fake")
        self._domains: dict[str, _Domain] = {}
        self._failures: dict[str, tuple[str, int]] = {}
        self._silent: set[str] = set()  # domains whose next boot prints no vNIC report
        self._migration_seconds = 0.0
        self.migrations_asked: list[MigrationPeer] = []  # test hook: every migrate_out's peer
        self._path = None if state_dir is None else Path(state_dir) / STATE_FILE
        if self._path is not None and self._path.exists():
            self._load(self._path)

    def fail_next(self, operation: str, message: str, times: int = 1) -> None:
        """Test hook: the next ``times`` calls of ``operation`` (a method name) raise DriverError."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r} (one of {sorted(OPERATIONS)})")
        self._failures[operation] = (message, times)

    def crash(self, name: str) -> None:
        """Test hook: a running domain turns CRASHED, as at a guest kernel panic."""
        dom = self._get(name)
        if dom.state is not PowerState.RUNNING:
            raise DriverError(f"domain {name} is {dom.state.value}, not running")
        dom.state = PowerState.CRASHED
        dom.print("Kernel panic - not syncing: crash injected by the fake driver")
        self._save()

    def silence_next_boot(self, name: str) -> None:
        """Test hook: the domain's next boot prints no vNIC report (a guest still booting,
        or one that never reports)."""
        self._get(name)
        self._silent.add(name)

    def set_guest_agent(self, name: str, answers: bool | None) -> None:
        """Test hook: whether the domain's guest agent answers (None: only if disk-booted)."""
        self._get(name).agent = answers
        self._save()

    async def fingerprint(self) -> HostFacts:
        self._check("fingerprint")
        return self._facts

    async def define(self, spec: DomainSpec) -> None:
        self._check("define")
        _validate(spec)
        dom = self._domains.get(spec.name)
        if dom is not None and dom.spec.instance_id != spec.instance_id:
            owner = dom.spec.instance_id
            raise DriverError(f"domain {spec.name} already belongs to instance {owner}")
        if dom is None:
            self._domains[spec.name] = _Domain(spec)
        elif dom.spec != spec:
            dom.spec = spec  # a running domain keeps its live vNICs until the next start
        else:
            return
        self._save()

    async def start(self, name: str) -> None:
        self._check("start")
        dom = self._get(name)
        if dom.state is PowerState.RUNNING:
            return
        dom.state, dom.boot_id, dom.live = PowerState.RUNNING, uuid.uuid4().hex, dom.spec.vnics
        dom.console.clear()  # a new boot starts a new console file, as libvirt's append=off
        dom.print(f"[    0.000000] fake guest {name} booting, boot_id={dom.boot_id}")
        if name in self._silent:
            self._silent.discard(name)
        else:
            dom.print(*_guest_report(dom.live))
        self._save()

    async def stop(self, name: str, timeout: float = 10.0) -> None:
        self._check("stop")
        self._power_off(name, "reboot: Power down")

    async def destroy(self, name: str) -> None:
        self._check("destroy")
        self._power_off(name)

    async def delete(self, name: str) -> None:
        self._check("delete")
        if FakeComputeDriver._incoming.get(name, (None,))[0] is self:
            del FakeComputeDriver._incoming[name]  # what was prepared for a migration in
        if self._domains.pop(name, None) is not None:
            self._save()

    async def list_domains(self) -> list[DomainInfo]:
        self._check("list_domains")
        return [dom.info() for dom in self._domains.values()]

    async def console_log(self, name: str, max_bytes: int = 65536) -> str:
        self._check("console_log")
        data = "".join(f"{line}\n" for line in self._get(name).console).encode()
        return data[-max_bytes:].decode(errors="ignore") if max_bytes > 0 else ""

    async def guest_interfaces(
        self, name: str, timeout: float = 5.0
    ) -> tuple[GuestInterface, ...] | None:
        self._check("guest_interfaces")
        dom = self._get(name)
        answers = dom.agent if dom.agent is not None else _boots_from_disk(dom.spec)
        if dom.state is not PowerState.RUNNING or not answers:
            return None
        by_slot = sorted(dom.live, key=lambda v: v.pci_slot)
        return tuple(
            GuestInterface(f"ens{v.pci_slot}", v.mac.lower(), f"0000:00:{v.pci_slot:02x}.0")
            for v in by_slot
        )

    async def attach_vnic(self, name: str, vnic: VnicSpec) -> None:
        self._check("attach_vnic")
        dom = self._get(name)
        _validate_vnics(name, (*dom.spec.vnics, vnic))
        _validate_vnics(name, (*dom.live, vnic))
        dom.spec = dataclasses.replace(dom.spec, vnics=(*dom.spec.vnics, vnic))
        if dom.state is not PowerState.STOPPED:
            dom.live = (*dom.live, vnic)
            dom.print(*_guest_report(dom.live))
        self._save()

    async def detach_vnic(self, name: str, mac: str) -> None:
        self._check("detach_vnic")
        dom = self._get(name)
        running = dom.state is not PowerState.STOPPED
        if mac.lower() not in _macs(dom.live if running else dom.spec.vnics):
            raise DriverError(f"domain {name} has no vNIC with MAC {mac}")
        dom.spec = dataclasses.replace(dom.spec, vnics=_without(dom.spec.vnics, mac))
        dom.live = _without(dom.live, mac)
        if running:
            dom.print(*_guest_report(dom.live))
        self._save()

    async def prepare_incoming(self, spec: DomainSpec) -> IncomingPlacement:
        self._check("prepare_incoming")
        _validate(spec)
        FakeComputeDriver._incoming[spec.name] = (self, spec)
        ports = {
            v.mac.lower(): {"bridge": v.binding.bridge, "port_name": v.binding.port_name}
            for v in spec.vnics
            if v.binding is not None
        }
        return IncomingPlacement(disk_path=spec.boot.disk_path, ports=ports)

    def slow_migrations(self, seconds: float) -> None:
        """Test hook: outgoing migrations take this long before the guest switches over (the
        destination must still be there then), as a real one copying memory."""
        self._migration_seconds = seconds

    async def migrate_out(self, name: str, peer: MigrationPeer) -> MigrationStats:
        self._check("migrate_out")
        self.migrations_asked.append(peer)
        started = time.perf_counter()
        dom = self._get(name)
        if dom.state is not PowerState.RUNNING:
            raise DriverError(
                f"domain {name} is {dom.state.value}, not running: cannot migrate live"
            )
        if self._migration_seconds:
            await asyncio.sleep(self._migration_seconds)
        target = FakeComputeDriver._incoming.get(name)
        if target is None or target[0] is self:
            raise DriverError(
                f"the hypervisor of {peer.host} at {peer.address} does not expect domain {name}"
            )
        driver, spec = target
        # the same boot; its console there holds only what the guest prints after it arrived
        # (a real QEMU's console log is a file of each host)
        driver._domains[name] = _Domain(
            spec, PowerState.RUNNING, dom.boot_id, spec.vnics, [], dom.agent
        )
        driver._save()
        del FakeComputeDriver._incoming[name]
        del self._domains[name]
        self._save()
        total = (time.perf_counter() - started) * 1000
        copy = "pre-copy" if peer.memory_copy == "auto" else peer.memory_copy
        return MigrationStats(
            total_ms=total, downtime_ms=0.0, bytes=spec.memory_mib * 2**20, memory_copy=copy
        )

    async def close(self) -> None:
        for name, (driver, _spec) in list(FakeComputeDriver._incoming.items()):
            if driver is self:
                del FakeComputeDriver._incoming[name]

    def _check(self, operation: str) -> None:
        failure = self._failures.pop(operation, None)
        if failure is not None:
            message, times = failure
            if times > 1:
                self._failures[operation] = (message, times - 1)
            raise DriverError(message)

    def _get(self, name: str) -> _Domain:
        dom = self._domains.get(name)
        if dom is None:
            raise DriverError(f"no domain named {name!r}")
        return dom

    def _power_off(self, name: str, last_words: str | None = None) -> None:
        dom = self._get(name)
        if dom.state is PowerState.STOPPED:
            return
        if last_words is not None and dom.state is PowerState.RUNNING:
            dom.print(last_words)
        dom.state, dom.live = PowerState.STOPPED, ()
        self._save()

    def _load(self, path: Path) -> None:
        try:
            domains = [_Domain.from_json(d) for d in json.loads(path.read_text())["domains"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DriverError(f"cannot read fake domains from {path}: {exc}") from exc
        self._domains = {dom.spec.name: dom for dom in domains}

    def _save(self) -> None:
        if self._path is not None:
            domains = [dataclasses.asdict(d) for d in self._domains.values()]
            text = json.dumps({"version": 1, "domains": domains}, default=_bytes_as_base64)
            _write_atomically(self._path, text)


def _validate(spec: DomainSpec) -> None:
    if not spec.name.startswith(DOMAIN_PREFIX):
        raise DriverError(f"domain name {spec.name!r} does not start with {DOMAIN_PREFIX!r}")
    if spec.vcpus < 1 or spec.memory_mib < 16:
        raise DriverError(f"domain {spec.name} needs at least 1 vCPU and 16 MiB of memory")
    _validate_vnics(spec.name, spec.vnics)


def _validate_vnics(name: str, vnics: tuple[VnicSpec, ...]) -> None:
    for v in vnics:
        if v.model not in VNIC_MODELS or v.model in HOSTDEV_MODELS:
            raise DriverError(f"domain {name}: the fake driver has no vNIC model {v.model!r}")
        if not _MAC.fullmatch(v.mac.lower()):
            raise DriverError(f"domain {name}: {v.mac!r} is not a unicast MAC address")
        if not 1 <= v.pci_slot <= 0x1F:
            raise DriverError(f"domain {name}: PCI slot {v.pci_slot} is not in 1..31")
    checks: dict[str, list[object]] = {
        "vNIC index": [v.index for v in vnics],
        "PCI slot": [v.pci_slot for v in vnics],
        "MAC": [v.mac.lower() for v in vnics],
    }
    for what, values in checks.items():
        if len(set(values)) < len(values):
            dup = next(x for x in values if values.count(x) > 1)  # error path only
            raise DriverError(f"domain {name}: {what} {dup} is given to two vNICs")


def _boots_from_disk(spec: DomainSpec) -> bool:
    return bool(spec.boot.disk_path) and not spec.boot.kernel_path


def _guest_report(vnics: tuple[VnicSpec, ...]) -> list[str]:
    """What a guest prints: its NICs in PCI slot order (as a kernel names them), then ready."""
    by_slot = sorted(vnics, key=lambda v: v.pci_slot)
    lines = [
        f"EDGECLOUD-VNIC index={k} name=eth{k} mac={v.mac.lower()} pci=0000:00:{v.pci_slot:02x}.0"
        for k, v in enumerate(by_slot)
    ]
    return [*lines, "EDGECLOUD-READY"]


def _macs(vnics: tuple[VnicSpec, ...]) -> tuple[str, ...]:
    return tuple(v.mac.lower() for v in vnics)


def _without(vnics: tuple[VnicSpec, ...], mac: str) -> tuple[VnicSpec, ...]:
    return tuple(v for v in vnics if v.mac.lower() != mac.lower())


def _vnic_from_json(raw: dict[str, Any]) -> VnicSpec:
    binding = VifBinding(**raw["binding"]) if raw["binding"] else None
    fixed_ips = tuple(
        IpSpec(
            **dict(
                ip,
                dns_nameservers=tuple(ip["dns_nameservers"]),
                host_routes=tuple(tuple(r) for r in ip["host_routes"]),
            )
        )
        for ip in raw.get("fixed_ips", ())
    )
    return VnicSpec(**dict(raw, binding=binding, fixed_ips=fixed_ips))


def _bytes_as_base64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot save a {type(value).__name__} in the fake state")


def _write_atomically(path: Path, text: str) -> None:
    """Write a temporary file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise DriverError(f"cannot save fake state to {path}: {exc}") from exc
