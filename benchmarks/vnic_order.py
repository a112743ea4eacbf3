"""Benchmark: vNIC order as the guest sees it, edgecloud's addressing vs libvirt's default.

Part A boots the same VNF shapes (2, 4 and 8 vNICs of mixed models) twice in one run, with
real QEMU (TCG) guests on a per-run Open vSwitch bridge: once with edgecloud's declared PCI
slots, once with libvirt's default addressing (interfaces listed in declared order, no
addresses). For each it counts how many vNICs the guest saw at their declared position, at
first boot, after detaching and re-attaching the second vNIC, and after a reboot.

Part B runs the whole stack (controller + agent with the libvirt driver, `edgecloud up`) and
times `vnf create` -> domain running (control plane) -> guest-verified binding (guest boot).

    sudo .venv/bin/python benchmarks/vnic_order.py [--repeat 3] [--out docs/benchmarks.md]

Writes a Markdown section to the --out file (replacing its own earlier section) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sites import bridge as run_bridge
from sites import real_site, write_section

from edgecloud.agent import guest_reports
from edgecloud.client import Client
from edgecloud.drivers.compute.base import BootSource, DomainSpec, VnicSpec
from edgecloud.drivers.compute.libvirt import LibvirtComputeDriver
from edgecloud.drivers.network.base import NetworkSpec
from edgecloud.drivers.network.ovs import OvsNetworkDriver
from edgecloud.images.building import build_bump_in_the_wire
from edgecloud.services.vnic_addressing import assign_slots, slot_for_position

SHAPES = {
    2: ["e1000", "virtio"],
    4: ["rtl8139", "virtio", "e1000", "virtio"],
    8: ["e1000", "virtio", "rtl8139", "e1000", "virtio", "e1000", "rtl8139", "virtio"],
}
MODES = {"edgecloud": True, "libvirt-default": False}
BOOT_TIMEOUT = 180.0
SECTION = "## vNIC order in the guest (issue 3)"


async def poll(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


# Part A ---------------------------------------------------------------------------------------
class OrderRun:
    def __init__(self, workdir: Path, bridge: str, token: str) -> None:
        self.workdir, self.bridge, self.token = workdir, bridge, token
        self.network = OvsNetworkDriver(workdir / "ovs", bridge=bridge)
        self.nets = [NetworkSpec(f"n{i}", f"net-{i}", "vlan", 3000 + i) for i in range(8)]

    async def run(self, image: Any) -> dict[str, dict[int, dict[str, int]]]:
        await self.network.setup()
        for net in self.nets:
            await self.network.ensure_network(net)
        results: dict[str, dict[int, dict[str, int]]] = {}
        for mode, declared in MODES.items():
            driver = LibvirtComputeDriver(self.workdir / mode, accel="tcg", declared_slots=declared)
            try:
                results[mode] = await self._mode(driver, mode, image)
            finally:
                for d in await driver.list_domains():
                    await driver.delete(d.name)
                await driver.close()
        return results

    async def _mode(
        self, driver: LibvirtComputeDriver, mode: str, image: Any
    ) -> dict[int, dict[str, int]]:
        specs = {n: await self._spec(mode, n, models, image) for n, models in SHAPES.items()}
        for spec in specs.values():
            await driver.define(spec)
            await driver.start(spec.name)
        out: dict[int, dict[str, int]] = {n: {} for n in specs}
        for n, spec in specs.items():
            out[n]["boot"] = await self._count(driver, spec, spec.vnics)
        for n, spec in specs.items():
            specs[n] = await self._reattach(driver, spec, mode)
            out[n]["re-attach"] = await self._count(driver, specs[n], specs[n].vnics)
        for n, spec in specs.items():
            specs[n] = await self._rebuild(driver, spec)
        for n, spec in specs.items():
            out[n]["rebuild"] = await self._count(driver, spec, spec.vnics)
        print(f"  {mode}: {out}", flush=True)
        return out

    async def _reattach(
        self, driver: LibvirtComputeDriver, spec: DomainSpec, mode: str
    ) -> DomainSpec:
        """Hot-unplug the 2nd vNIC, hot-add a new last vNIC, plug the 2nd back at its position."""
        middle, n = spec.vnics[1], len(spec.vnics)
        await driver.detach_vnic(spec.name, middle.mac)
        await self._count(driver, spec, spec.vnics[:1] + spec.vnics[2:])
        slot = slot_for_position(
            [(v.index, v.pci_slot) for v in spec.vnics if v is not middle], n, None, "nic"
        )
        mac = f"52:54:00:{int(self.token[:2], 16):02x}:{n:02x}:{n + (16 if mode == 'edgecloud' else 0):02x}"
        binding = await self.network.bind(spec.instance_id, n, mac, self.nets[n % len(self.nets)])
        extra = VnicSpec(
            n, self.nets[n % len(self.nets)].name, "virtio", mac, slot, "extra", binding
        )
        await driver.attach_vnic(spec.name, extra)
        rest = [(v.index, v.pci_slot) for v in (*spec.vnics, extra) if v is not middle]
        back = dataclasses.replace(middle, pci_slot=slot_for_position(rest, 1, None, "nic"))
        await driver.attach_vnic(spec.name, back)  # the slot edgecloud's API would give it
        vnics = tuple(back if v is middle else v for v in spec.vnics)
        return dataclasses.replace(spec, vnics=(*vnics, extra))

    async def _rebuild(self, driver: LibvirtComputeDriver, spec: DomainSpec) -> DomainSpec:
        """Hard reboot with the XML regenerated from a port list in another order (here newest
        port first, as a port list sorted by creation time descending), as a rebuild does."""
        await driver.delete(spec.name)
        rebuilt = dataclasses.replace(
            spec, vnics=tuple(sorted(spec.vnics, key=lambda v: v.mac[::-1]))
        )
        await driver.define(rebuilt)
        await driver.start(rebuilt.name)
        return rebuilt

    async def _spec(self, mode: str, n: int, models: list[str], image: Any) -> DomainSpec:
        instance_id = f"{secrets.token_hex(4)}-0000-4000-8000-{secrets.token_hex(6)}"
        slots = assign_slots([None] * n)
        vnics = []
        for i, (model, slot) in enumerate(zip(models, slots, strict=True)):
            mac = f"52:54:00:{int(self.token[:2], 16):02x}:{n:02x}:{i + (16 if mode == 'edgecloud' else 0):02x}"
            binding = await self.network.bind(instance_id, i, mac, self.nets[i])
            vnics.append(VnicSpec(i, self.nets[i].name, model, mac, slot, f"r{i}", binding))
        return DomainSpec(
            name=f"ec-bench{self.token}-{mode[:3]}{n}",
            instance_id=instance_id,
            vcpus=1,
            memory_mib=256,
            boot=BootSource(
                kernel_path=str(image.kernel), initrd_path=str(image.initrd), cmdline=image.cmdline
            ),
            vnics=tuple(vnics),
        )

    async def _count(
        self, driver: LibvirtComputeDriver, spec: DomainSpec, vnics: tuple[VnicSpec, ...]
    ) -> int:
        """vNICs the guest sees at their declared position (k-th in PCI order = k-th declared)."""
        want = [v.mac for v in sorted(vnics, key=lambda v: v.index)]

        async def report() -> list[dict[str, object]] | None:
            seen = guest_reports.parse(await driver.console_log(spec.name, 1 << 20))
            return seen if seen is not None and {str(r["mac"]) for r in seen} == set(want) else None

        seen = await poll(report, BOOT_TIMEOUT, f"{spec.name} to report {len(want)} vNICs")
        by_position = [str(r["mac"]) for r in sorted(seen, key=lambda r: int(str(r["index"])))]
        return sum(a == b for a, b in zip(by_position, want, strict=True))


# Part B ---------------------------------------------------------------------------------------
def timed_site(
    workdir: Path, bridge: str, image: Any, repeat: int
) -> dict[int, list[tuple[float, float]]]:
    extra = ("--resync-interval", "0.2", "--heartbeat-interval", "2")
    with real_site(workdir, bridge, *extra) as (client, _info):
        for i in range(8):
            client.create_network(f"t{i}")
        client.create_flavor("small", 1, 256)
        client.upload_image("bitw-ramdisk", image.initrd, "ramdisk")
        client.upload_image(
            "bitw", image.kernel, "kernel", ramdisk="bitw-ramdisk", cmdline=image.cmdline
        )
        return {
            n: [_time_one(client, f"t{n}-{r}", models) for r in range(repeat)]
            for n, models in SHAPES.items()
        }


def _time_one(client: Client, name: str, models: list[str]) -> tuple[float, float]:
    nics = [{"network": f"t{i}", "model": m} for i, m in enumerate(models)]
    t0 = time.monotonic()
    client.create_vnf(name, "bitw", "small", nics)
    t_running = t_verified = 0.0
    while time.monotonic() - t0 < BOOT_TIMEOUT:
        vnf = client.get_vnf(name)
        now = time.monotonic()
        if not t_running and vnf["status"] == "running":
            t_running = now
        if vnf["binding_verified"]:
            t_verified = now
            break
        time.sleep(0.05)
    client.delete_vnf(name)
    client.wait_for_vnf_gone(name, 120)
    if not t_verified:
        raise TimeoutError(f"{name} was not verified within {BOOT_TIMEOUT} s")
    print(
        f"  {name}: control plane {t_running - t0:.2f} s, guest boot {t_verified - t_running:.2f} s",
        flush=True,
    )
    return t_running - t0, t_verified - t_running


# report ---------------------------------------------------------------------------------------
def markdown(
    order: dict[str, dict[int, dict[str, int]]],
    timing: dict[int, list[tuple[float, float]]],
    command: str,
) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}, QEMU TCG guests (256 MiB, 1 vCPU).  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "vNICs the guest saw at their declared position (guest PCI order), same shapes in one run:",
        "",
        "| vNICs (models) | scenario | edgecloud slots | libvirt default addressing |",
        "|---|---|---|---|",
    ]
    for n, models in SHAPES.items():
        for scenario in ("boot", "re-attach", "rebuild"):
            ours, base = order["edgecloud"][n][scenario], order["libvirt-default"][n][scenario]
            total = n if scenario == "boot" else n + 1
            lines.append(
                f"| {n} ({', '.join(models)}) | {scenario} | {ours}/{total} | {base}/{total} |"
            )
    lines += [
        "",
        "`boot`: the domain XML lists the interfaces in declared order. `re-attach`, guest running:",
        "the 2nd vNIC is hot-unplugged, a new vNIC is hot-added as the last one, and the 2nd is",
        "plugged back at its position. `rebuild`: the domain is undefined and defined again with",
        "its interfaces listed in another order (newest port first, as a port list from a network",
        "service may return them) and booted. Time from `vnf create` to guest-verified binding",
        "(whole stack, polled every 50 ms; median of the repeats, min-max in brackets):",
        "",
        "| vNICs | control plane (create -> domain running) | guest boot (running -> verified) | total |",
        "|---|---|---|---|",
    ]
    for n, runs in timing.items():
        cp, boot = [r[0] for r in runs], [r[1] for r in runs]
        total = [a + b for a, b in runs]
        lines.append(f"| {n} | {_stat(cp)} | {_stat(boot)} | {_stat(total)} |")
    return "\n".join(lines) + "\n"


def _stat(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up (finally) when stopped
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    token = secrets.token_hex(3)
    with (
        tempfile.TemporaryDirectory(prefix="ec-bench-") as tmp,
        run_bridge(f"ecb{token}") as bridge,
    ):
        workdir = Path(tmp)
        image = build_bump_in_the_wire(workdir / "images")
        print("part A: vNIC order, edgecloud slots vs libvirt default addressing", flush=True)
        order = asyncio.run(OrderRun(workdir, bridge, token).run(image))
        print("part B: vnf create -> verified binding, whole stack", flush=True)
        timing = timed_site(workdir, bridge, image, args.repeat)
    section = markdown(
        order, timing, f"sudo .venv/bin/python benchmarks/vnic_order.py --repeat {args.repeat}"
    )
    write_section(args.out, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
