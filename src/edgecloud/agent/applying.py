"""Make the node match its desired state, idempotently, and observe what runs.

The desired snapshot (from the controller, read once on receipt by agent/connection.py: a
``DesiredState`` of protocol/desired.py, used here by attribute) is kept in STATE/desired.json
in wire form (what any release reads), so the node keeps running its VNFs (and restarts
crashed ones) even while the controller is unreachable, and so that a restarted agent knows
which domains are its own: it adopts running domains (define and start are no-ops for them)
and never restarts them. Instances are handled one queue entry each
(sequential per instance, parallel across instances); a failing instance becomes an error in
the observed report, not a stuck node.

Before a domain is defined its image's blobs are in the node's cache (image_cache.py) and its
host PCI devices on the node's allowlist. What each guest says of its vNICs is
guest_observing.py's job; ``observe`` puts it into the report the controller records.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.agent.guest_observing import GuestReports
from edgecloud.agent.image_cache import ImageCache
from edgecloud.chains import planning
from edgecloud.drivers.compute.base import (
    BootSource,
    ComputeDriver,
    DomainInfo,
    DomainSpec,
    IncomingPlacement,
    IpSpec,
    MigrationPeer,
    PowerState,
    VnicSpec,
)
from edgecloud.drivers.network.base import (
    DhcpReservation,
    DhcpSubnet,
    NetworkDriver,
    NetworkSpec,
)
from edgecloud.errors import DriverError, ProtocolError
from edgecloud.memory_copy import DEFAULT_MAX_DOWNTIME_MS
from edgecloud.pci import PciDevice
from edgecloud.protocol import desired
from edgecloud.protocol.desired import DesiredState
from edgecloud.protocol.schemas import GuestVnic, InstanceReport, MigrationReport, ObservedPart
from edgecloud.reconcile.queueing import KeyedQueue

log = logging.getLogger(__name__)
NETWORK_RECHECK = 30.0


class Applier:
    def __init__(
        self,
        compute: ComputeDriver,
        network: NetworkDriver,
        state_dir: Path,
        images: ImageCache,
        pci_devices: tuple[PciDevice, ...] = (),
        durable: bool = True,
    ) -> None:
        """``durable``: fsync desired.json at each save (False only for the simulator's
        fake nodes, thousands to a machine)."""
        self.compute, self.network, self.images = compute, network, images
        self.durable = durable
        self.pci_allowed = {(d.address, d.kind) for d in pci_devices}
        self.path = state_dir / "desired.json"
        saved = files.read_tolerant(self.path, _saved_state, "the saved desired state") or {}
        self.spec: DesiredState = saved.get("spec", desired.EMPTY)
        self.applied_version: int = saved.get("applied_version", 0)
        self.reboots: dict[str, int] = saved.get("reboots", {})
        self.errors: dict[str, str] = {}
        self.guests = GuestReports(compute)  # what each guest says of its vNICs
        self._domains: dict[str, DomainInfo] = {}
        self._queue: KeyedQueue[str] = KeyedQueue(
            self._reconcile_instance, concurrency=8, name="instances"
        )
        self.last_steer: dict[str, Any] = {}  # version, wall time and size of the last bundle
        self._steer_lock = asyncio.Lock()
        self._steered_version = 0  # the highest version steered, in any form
        self._table_version = 0  # the highest version of a whole table steered
        self._table: dict[str, Any] | None = None  # the chain flows last committed (wire form)
        self._ensured: tuple[dict[str, NetworkSpec], dict[str, Any]] | None = None
        self._ensured_at = 0.0
        # instances prepared for an incoming migration: id -> {"domain", "placement"}
        self.prepared: dict[str, dict[str, Any]] = {}
        self.fenced: set[str] = set()  # stopped by agent/fencing.py until the next snapshot

    # desired state -------------------------------------------------------------------------
    def instances(self) -> dict[str, desired.Instance]:
        return self.spec.by_id()

    async def apply(self, spec: DesiredState) -> list[str]:
        """Apply a whole snapshot; returns the errors (empty: the version is applied).

        Chain steering goes first: a path change is one bundle committed before anything
        else (its new ports exist already: make before break), and again after the instances
        in case a hop's port appeared meanwhile."""
        for instance_id, old in self.instances().items():  # a migration in that ended,
            if old.incoming:  # also before a restart
                self.prepared.setdefault(instance_id, {"domain": old.domain, "placement": {}})
        self.spec = spec
        self.fenced.clear()  # the controller's word replaces the fence
        self._save()
        errors = await self.steer(spec.version, spec.steering)
        errors += await self.resync()
        if not errors:
            self.applied_version = spec.version
            self._save()
        return errors

    async def retry(self) -> int | None:
        """The periodic resync: the version it completed when the snapshot ``apply`` could not
        finish (that version was nacked, or the agent stopped half way) is now applied in full,
        for the caller to ack (which clears the host's apply-failed alarm); else None."""
        errors = await self.resync()
        version = self.spec.version
        if errors or version <= self.applied_version:
            return None
        self.applied_version = version
        self._save()
        return version

    async def resync(self) -> list[str]:
        """Compare the node with the desired state and fix every difference."""
        try:
            await self._ensure_networks()
        except DriverError as exc:
            log.warning("networks: %s", exc)
            return [f"networks: {exc}"]
        self._domains = {d.name: d for d in await self.compute.list_domains()}
        wanted = self.instances()
        for instance_id in wanted:
            self._queue.enqueue(instance_id)
        await self._queue.join()
        await self._remove_unwanted({i.domain for i in wanted.values()})
        await self._forget_prepared(wanted)
        await self.images.evict(_image_digests(wanted.values()))
        errors = await self.steer(self.spec.version, self.spec.steering, fresh=True)
        return errors + [
            f"{wanted[i].name}: {e}" for i, e in sorted(self.errors.items()) if i in wanted
        ]

    async def steer(
        self, version: int, flows: Mapping[str, Any] | None, fresh: bool = False
    ) -> list[str]:
        """Make the vSwitch's chain flows ``flows`` (a snapshot's steering at ``version``,
        wire form; None: the snapshot has none) in one bundle of only what changed.

        Runs under its own small lock, not the apply lock, so a path switch never waits for a
        resync of every VNF in progress; a version older than one already steered is skipped."""
        if flows is None or not self.network.capabilities.openflow_bundles:
            return []
        received = time.time()
        async with self._steer_lock:
            if version < self._steered_version:
                return []
            try:
                changed = await self.network.apply_steering(flows, fresh=fresh)
            except DriverError as exc:
                log.warning("chain flows: %s", exc)
                return [f"chain flows: {exc}"]
            self._steered_version = self._table_version = version
            self._table = dict(flows)
        self._committed(version, received, changed)
        return []

    async def steer_chain(
        self, version: int, before: dict[str, Any], after: dict[str, Any]
    ) -> bool:
        """One chain's flows ``before`` -> ``after`` at ``version`` (a ``steer_chain``
        message, protocol/steering.py), over the table last committed: its ``before`` keys
        out, ``after`` in (chains share no match key), one bundle of what differs. Skipped
        (False: the snapshot follows and carries it) when a whole table of that version or a
        later one was steered, when none was yet (a restarted agent), or when the table does
        not hold ``before`` exactly (the change was computed from another state of the
        chain's flows here). Deltas of different chains go in any order."""
        if not self.network.capabilities.openflow_bundles:
            return False
        received = time.time()
        async with self._steer_lock:
            table = self._table
            if table is None or version <= self._table_version:
                return False
            held = planning.from_wire({k: v for k, v in table.items() if k in before})
            if held != planning.from_wire(before):
                log.info("chain flows of version %d: not from this node's table; its snapshot "
                         "follows", version)  # fmt: skip
                return False
            flows = {k: v for k, v in table.items() if k not in before} | after
            try:
                changed = await self.network.apply_steering(flows, fresh=False)
            except DriverError as exc:
                log.warning("chain flows: %s", exc)  # the snapshot's steer meets it again
                return False
            self._table = flows
            self._steered_version = max(self._steered_version, version)
        self._committed(version, received, changed)
        return True

    def _committed(self, version: int, received: float, changed: int) -> None:
        if changed:
            self.last_steer = {
                "version": version,
                "at": time.time(),  # the bundle committed
                "received": received,  # the flows reached the steering step
                "flows": changed,
            }
            log.info("chain flows: %d changed in one bundle", changed)

    async def _ensure_networks(self) -> None:
        """Bridge and networks as desired; re-checked on change and every NETWORK_RECHECK s
        (a restarted vSwitch loses what it had)."""
        wanted = {n.name: _network(n) for n in self.spec.networks}
        dhcp = {n.name: _dhcp(n) for n in self.spec.networks}
        now = time.monotonic()
        if (wanted, dhcp) == self._ensured and now - self._ensured_at < NETWORK_RECHECK:
            return
        await self.network.setup()
        for name in (await self.network.networks()).keys() - wanted.keys():
            await self.network.delete_network(name)  # stale: not desired (or another site's)
        for spec in wanted.values():
            await self.network.ensure_network(spec)
            if self.network.capabilities.dhcp:  # also starts a dnsmasq again that died
                await self.network.ensure_dhcp(spec, dhcp[spec.name])
        self._ensured, self._ensured_at = (wanted, dhcp), now

    async def _reconcile_instance(self, instance_id: str) -> None:
        spec = self.instances().get(instance_id)
        if spec is None:
            return
        try:
            await self._converge(spec, self._domains.get(spec.domain))
            self.errors.pop(instance_id, None)
        except (DriverError, OSError) as exc:
            log.warning("instance %s: %s", spec.name, exc)
            self.errors[instance_id] = str(exc)

    async def fence(self, instance_ids: tuple[str, ...]) -> None:
        """Destroy these instances' domains and start none of them again until the next
        snapshot (agent/fencing.py); the controller sends one at the next hello. One without
        a domain (never defined, or lost with its hypervisor's state) has nothing to stop."""
        self.fenced.update(instance_ids)
        wanted = self.instances()
        present = {d.name for d in await self.compute.list_domains()}
        doomed = [
            spec
            for spec in (wanted.get(i) for i in instance_ids)
            if spec is not None and spec.domain in present
        ]
        for spec in doomed:
            log.warning("fencing %s: cut off from the controllers", spec.name)
        # all at once: one destroy takes about 2 s under TCG here, and every copy must be
        # stopped before the controllers may recover it (docs/architecture.md, the timing)
        results = await asyncio.gather(
            *(self.compute.destroy(spec.domain) for spec in doomed), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        self.applied_version = 0
        self._save()

    async def _converge(self, spec: desired.Instance, current: DomainInfo | None) -> None:
        if spec.id in self.fenced:
            if current is not None and current.state == PowerState.RUNNING:
                await self.compute.destroy(spec.domain)
            return
        if spec.migration is not None:
            await self._converge_migrating(spec, current)
            return
        boot = await self._boot_source(spec.image)
        self._check_pci_devices(spec)
        vnics = await self._bind_vnics(spec)
        name, want_running = spec.domain, spec.desired_state == "running"
        running = current is not None and current.state == PowerState.RUNNING
        if running and want_running and spec.reboots > self.reboots.get(spec.id, spec.reboots):
            log.info("rebooting %s as asked", spec.name)
            await self.compute.destroy(name)
            running = False
        if running and want_running and current is not None:
            await self._hot_plug(spec, current, vnics)  # live + persistent, before define
        await self.compute.define(_domain_spec(spec, vnics, boot))
        if want_running and not running:
            log.info("starting %s", spec.name)
            await self.compute.start(name)
            for vnic in vnics:
                if vnic.binding is not None:
                    await self.network.port_plugged(vnic.binding)
        elif running and not want_running:
            log.info("stopping %s", spec.name)
            await self.compute.stop(name)
        if self.reboots.get(spec.id) != spec.reboots:
            self.reboots[spec.id] = spec.reboots
            self._save()

    # migration ------------------------------------------------------------------------------
    async def _converge_migrating(self, spec: desired.Instance, current: DomainInfo | None) -> None:
        """A migrating instance's domain belongs to the migration: never defined, started,
        stopped or destroyed here. The destination prepares what the domain will need (image,
        overlay, config drive, vSwitch ports) and reports it; once the domain has arrived it
        only puts its ports' labels back."""
        if not spec.incoming:
            return  # outgoing: the source keeps it running until the move (migrate_out)
        if current is not None:
            if current.state == PowerState.RUNNING:
                for vnic in await self._bind_vnics(spec):
                    if vnic.binding is not None:
                        await self.network.port_plugged(vnic.binding)
            return
        boot = await self._boot_source(spec.image)
        self._check_pci_devices(spec)
        vnics = await self._bind_vnics(spec)
        for vnic in vnics:
            if vnic.binding is not None:
                await self.network.hold_port(vnic.binding)  # until the guest arrives
        placement = await self.compute.prepare_incoming(_domain_spec(spec, vnics, boot))
        self.prepared[spec.id] = {"domain": spec.domain, "placement": placement.as_json()}

    async def _forget_prepared(self, wanted: dict[str, desired.Instance]) -> None:
        """Drop what was prepared for a migration that ended: adopted when the instance stays
        here, removed (files and ports) when the migration failed elsewhere."""
        for instance_id, prepared in list(self.prepared.items()):
            spec = wanted.get(instance_id)
            if spec is not None and spec.migration is not None:
                continue
            del self.prepared[instance_id]
            if spec is not None and prepared["domain"] in self._domains:  # it arrived: adopted
                for vnic in await self._bind_vnics(spec):
                    if vnic.binding is not None:
                        await self.network.port_plugged(vnic.binding)
            if spec is None and prepared["domain"] not in self._domains:
                log.info("removing what was prepared for %s (migration ended)", instance_id)
                await self.compute.delete(prepared["domain"])
                await self.network.release_instance(instance_id)

    async def migrate_out(self, args: dict[str, Any], pki_dir: Path) -> dict[str, Any]:
        """Move an outgoing instance to its destination (live, or ``cold``: power off and
        remove here, the destination starts it); returns what was measured."""
        spec = self.instances().get(str(args.get("instance_id")))
        migration = spec.migration if spec is not None else None
        if spec is None or migration is None or migration.role != "outgoing":
            raise DriverError("this node is not migrating that VNF out")
        if migration.id != args.get("migration_id"):
            raise DriverError("that migration is not the one this node was told of")
        started = time.monotonic()
        if args.get("cold"):
            await self.compute.stop(spec.domain)
            await self.compute.delete(spec.domain)
            stats: dict[str, Any] = {"total_ms": (time.monotonic() - started) * 1000}
        else:
            destination = migration.destination
            if destination is None or destination.address is None:
                raise DriverError("the snapshot names no destination address for that migration")
            peer = MigrationPeer(
                host=destination.host,
                address=destination.address,
                pki_dir=str(pki_dir),
                placement=IncomingPlacement.from_json(args.get("placement") or {}),
                max_downtime_ms=int(args.get("max_downtime_ms", DEFAULT_MAX_DOWNTIME_MS)),
                memory_copy=str(args.get("memory_copy", "auto")),
            )
            stats = (await self.compute.migrate_out(spec.domain, peer)).as_json()
        await self.network.release_instance(spec.id)
        self.guests.forget(spec.id)
        return stats

    def _check_pci_devices(self, spec: desired.Instance) -> None:
        """A guest gets only host devices on this node's allowlist (whatever it is told)."""
        for v in spec.vnics:
            address = v.hostdev_address
            if address and (address, v.model) not in self.pci_allowed:
                raise DriverError(
                    f"PCI device {address} ({v.model}) is not on this node's allowlist "
                    "(edgecloud agent --pci-device ADDRESS=KIND)"
                )

    async def _boot_source(self, image: desired.Image) -> BootSource:
        """The image's blobs in the node's cache (fetched first if needed), as a boot source."""
        if not image.sha256 or image.size is None:
            raise DriverError(
                f"image {image.name!r} was registered by a host path before the image store: "
                "upload it again (edgecloud image upload) and recreate the VNF"
            )
        path = str(await self.images.ensure(image.sha256, image.size))
        if image.format != "kernel":
            return BootSource(disk_path=path, disk_format=image.format)
        ramdisk = image.ramdisk
        initrd = None
        if ramdisk is not None:
            if not ramdisk.sha256 or ramdisk.size is None:
                raise DriverError(f"the ramdisk of image {image.name!r} is not in the image store")
            initrd = str(await self.images.ensure(ramdisk.sha256, ramdisk.size))
        return BootSource(kernel_path=path, initrd_path=initrd, cmdline=image.cmdline or "")

    async def _bind_vnics(self, spec: desired.Instance) -> tuple[VnicSpec, ...]:
        networks = {n.name: _network(n) for n in self.spec.networks}
        vnics = []
        for v in spec.vnics:
            network = networks.get(v.network)
            if network is None:
                raise DriverError(f"vNIC {v.index}: network {v.network!r} is not in the snapshot")
            binding = await self.network.bind(spec.id, v.index, v.mac, network)
            vnics.append(
                VnicSpec(
                    index=v.index,
                    network=v.network,
                    model=v.model,
                    mac=v.mac,
                    pci_slot=v.pci_slot,
                    tag=v.tag,
                    binding=binding,
                    hostdev_address=v.hostdev_address,
                    fixed_ips=_ip_specs(v.fixed_ips),
                )
            )
        return tuple(vnics)

    async def _hot_plug(
        self, spec: desired.Instance, current: DomainInfo, vnics: tuple[VnicSpec, ...]
    ) -> None:
        """Make a running domain's vNICs the declared ones, without touching the others."""
        live = {mac.lower() for mac in current.vnic_macs}
        wanted = {v.mac.lower(): v for v in vnics}
        if live == wanted.keys():
            return
        if not self.compute.capabilities.hot_plug_vnic:
            log.info(
                "restarting %s: its vNICs changed and %s cannot hot-plug",
                spec.name,
                self.compute.name,
            )
            await self.compute.destroy(current.name)
            await self.compute.start(current.name)
            return
        for mac in sorted(live - wanted.keys()):
            log.info("detaching vNIC %s from %s", mac, spec.name)
            await self.compute.detach_vnic(current.name, mac)
        declared = {v.index for v in spec.vnics}
        for port in await self.network.list_ports():
            if port.instance_id == spec.id and port.vnic_index not in declared:
                await self.network.release_vnic(spec.id, port.vnic_index)
        for mac, vnic in wanted.items():
            if mac not in live:
                log.info("attaching vNIC %s to %s at slot %#04x", mac, spec.name, vnic.pci_slot)
                await self.compute.attach_vnic(current.name, vnic)
                if vnic.binding is not None:
                    await self.network.port_plugged(vnic.binding)
        self.guests.forget(spec.id)

    async def _remove_unwanted(self, wanted_domains: set[str]) -> None:
        for name, domain in self._domains.items():
            if name not in wanted_domains:
                log.info("deleting domain %s (no longer desired)", name)
                await self.compute.delete(name)
                await self.network.release_instance(domain.instance_id)
                self.reboots.pop(domain.instance_id, None)
                self.guests.forget(domain.instance_id)

    # observation -----------------------------------------------------------------------------
    async def observe(self) -> ObservedPart:
        """The full observed state of the node's instances (what the controller records)."""
        domains = {d.name: d for d in await self.compute.list_domains()}
        report: dict[str, InstanceReport] = {}
        instances = self.instances()
        ours = {i: domains.get(spec.domain) for i, spec in instances.items()}
        guests = await asyncio.gather(*(self.guests.report(i, d) for i, d in ours.items()))
        for (instance_id, domain), (guest_vnics, check) in zip(ours.items(), guests, strict=True):
            migration = instances[instance_id].migration
            incoming = None
            if migration is not None and migration.role == "incoming":
                prepared = self.prepared.get(instance_id)
                incoming = MigrationReport(
                    id=migration.id,
                    prepared=prepared is not None,
                    placement=prepared["placement"] if prepared else None,
                )
            report[instance_id] = InstanceReport(
                power=domain.state.value if domain else "absent",
                boot_id=domain.boot_id if domain else None,
                error=self.errors.get(instance_id),
                guest_vnics=None
                if guest_vnics is None
                else [GuestVnic.model_validate(g) for g in guest_vnics],
                guest_check=check,
                migration=incoming,
            )
        for domain in domains.values():
            if domain.instance_id not in report:
                report[domain.instance_id] = InstanceReport(
                    power=domain.state.value, boot_id=domain.boot_id
                )
        return ObservedPart(instances=report)

    async def console(self, instance_id: str, max_bytes: int) -> str:
        spec = self.instances().get(instance_id)
        if spec is None:
            raise DriverError("this node does not run that VNF")
        return await self.compute.console_log(spec.domain, max_bytes)

    def _save(self) -> None:
        state = {
            "spec": desired.to_wire(self.spec),  # wire form: what any release reads
            "applied_version": self.applied_version,
            "reboots": self.reboots,
        }
        files.write_atomic(self.path, json.dumps(state), durable=self.durable)

    async def close(self) -> None:
        await self._queue.close()


def _saved_state(raw: bytes) -> dict[str, Any]:
    """desired.json as _save wrote it, its spec read (protocol/desired.py); ValueError when
    it is not (the caller starts afresh)."""
    saved = json.loads(raw)
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("applied_version"), int)
        and isinstance(saved.get("reboots", {}), dict)
    ):
        raise ValueError("not a saved desired state")
    try:
        return saved | {"spec": desired.read(saved.get("spec"))}
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


def _network(n: desired.Network) -> NetworkSpec:
    return NetworkSpec(n.name, n.id, n.kind, n.segmentation_id)


def _routes(routes: Iterable[desired.Route]) -> tuple[tuple[str, str], ...]:
    return tuple((r.destination, r.nexthop) for r in routes)


def _dhcp(n: desired.Network) -> tuple[DhcpSubnet, ...]:
    """The DHCP subnets of a snapshot network (services/desired.py ``dhcp_subnets``)."""
    return tuple(
        DhcpSubnet(
            subnet_id=d.subnet_id,
            cidr=d.cidr,
            server_address=d.server_address,
            gateway=d.gateway_ip,
            dns_nameservers=d.dns_nameservers,
            host_routes=_routes(d.host_routes),
            reservations=tuple(
                DhcpReservation(r.mac.lower(), r.ip_address) for r in d.reservations
            ),
        )
        for d in n.dhcp
        if d.server_address
    )


def _domain_spec(
    spec: desired.Instance, vnics: tuple[VnicSpec, ...], boot: BootSource
) -> DomainSpec:
    return DomainSpec(
        name=spec.domain,
        instance_id=spec.id,
        vcpus=spec.vcpus,
        memory_mib=spec.memory_mib,
        boot=boot,
        vnics=vnics,
        disk_gib=spec.disk_gib,
        metadata=dict(spec.metadata),
        hostname=spec.hostname,
        public_keys=dict(spec.public_keys),
        user_data=base64.b64decode(spec.user_data) if spec.user_data else None,
    )


def _ip_specs(fixed_ips: Iterable[desired.FixedIp]) -> tuple[IpSpec, ...]:
    return tuple(
        IpSpec(
            address=ip.ip_address,
            cidr=ip.cidr,
            gateway=ip.gateway_ip,
            dns_nameservers=ip.dns_nameservers,
            host_routes=_routes(ip.host_routes),
            network_id=ip.network_id,
            subnet_id=ip.subnet_id,
        )
        for ip in fixed_ips
    )


def _image_digests(instances: Iterable[desired.Instance]) -> set[str]:
    """The blobs the desired instances boot from (what the node's cache must keep)."""
    digests = set()
    for instance in instances:
        image = instance.image
        digests.add(image.sha256)
        digests.add(image.ramdisk.sha256 if image.ramdisk is not None else None)
    return {d for d in digests if d}
