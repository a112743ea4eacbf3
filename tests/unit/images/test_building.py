"""Tests of the VNF image builder (images/building.py) without booting anything.

Module resolution runs on a made-up modules directory (dependencies, built-ins, compressed
modules); the initramfs is unpacked again to check its layout. Booting the image is the job of
tests/e2e/test_libvirt_boot.py.
"""

from __future__ import annotations

import gzip
import lzma
import stat
from pathlib import Path

import pytest

from edgecloud.errors import DriverError
from edgecloud.images import building
from edgecloud.images.building import parse_alive
from edgecloud.images.guest_init import ALIVE_EVERY, INIT_SCRIPT


def _modules_dir(root: Path) -> Path:
    mods = root / "lib" / "6.1.0-test"
    (mods / "kernel" / "net").mkdir(parents=True)
    (mods / "modules.dep").write_text(
        "kernel/net/virtio_net.ko.xz: kernel/net/net_failover.ko kernel/net/failover.ko\n"
        "kernel/net/net_failover.ko: kernel/net/failover.ko\n"
        "kernel/net/failover.ko:\n"
        "kernel/net/8139cp.ko: kernel/net/mii.ko\n"
        "kernel/net/mii.ko:\n"
    )
    (mods / "modules.builtin").write_text("kernel/net/ipv6/ipv6.ko\n")
    (mods / "kernel/net/virtio_net.ko.xz").write_bytes(lzma.compress(b"\x7fELF virtio_net"))
    for name in ("net_failover", "failover", "8139cp", "mii"):
        (mods / f"kernel/net/{name}.ko").write_bytes(b"\x7fELF " + name.encode())
    return mods


def test_modules_come_after_their_dependencies(tmp_path: Path) -> None:
    mods = _modules_dir(tmp_path)
    paths = building.resolve_modules(mods, ("virtio_net", "8139cp", "ipv6", "failover"))
    names = [p.name for p in paths]
    assert names == ["failover.ko", "net_failover.ko", "virtio_net.ko.xz", "mii.ko", "8139cp.ko"]
    with pytest.raises(DriverError, match="nosuch"):
        building.resolve_modules(mods, ("nosuch",))


def test_compressed_modules_are_decompressed(tmp_path: Path) -> None:
    mods = _modules_dir(tmp_path)
    assert building._module_bytes(mods / "kernel/net/virtio_net.ko.xz") == b"\x7fELF virtio_net"


def _unpack(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, content) of a newc cpio archive."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        header = data[pos : pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = data[pos : pos + namesize - 1].decode()
        pos = (pos + namesize + 3) & ~3
        content = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, content)


def test_initramfs_layout(tmp_path: Path) -> None:
    mods = _modules_dir(tmp_path)
    paths = building.resolve_modules(mods, ("virtio_net",))
    entries = _unpack(gzip.decompress(building._initramfs(paths)))
    init_mode, init = entries["init"]
    assert stat.S_ISREG(init_mode) and init_mode & 0o111 and init.startswith(b"#!/bin/sh")
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    assert entries["lib/modules/virtio_net.ko"][1] == b"\x7fELF virtio_net"
    order = entries["etc/modules.order"][1].decode().split()
    assert order == ["failover", "net_failover", "virtio_net"]


@pytest.mark.skipif(
    not building.BUSYBOX.exists() or not list(Path("/boot").glob("vmlinuz-*")),
    reason="needs the host's kernel and busybox-static (scripts/bootstrap-host)",
)
def test_build_is_cached_by_its_inputs(tmp_path: Path) -> None:
    first = building.build_bump_in_the_wire(tmp_path)
    assert first.kernel.exists() and first.initrd.exists() and "console=ttyS0" in first.cmdline
    mtime = first.initrd.stat().st_mtime_ns
    assert building.build_bump_in_the_wire(tmp_path) == first
    assert first.initrd.stat().st_mtime_ns == mtime


def test_parse_console_reads_the_guest_report() -> None:
    log = (
        "[    1.0] noise\n"
        "EDGECLOUD-VNIC index=0 name=eth2 mac=02:ec:00:00:00:02 pci=0000:00:03.0 tag=in\n"
        "EDGECLOUD-VNIC index=1 name=eth0 mac=02:ec:00:00:00:01 pci=0000:00:04.0 tag=-\n"
        "EDGECLOUD-READY count=2\n"
    )
    vnics = building.parse_console(log)
    assert [(v.index, v.name, v.mac, v.pci, v.tag) for v in vnics] == [
        (0, "eth2", "02:ec:00:00:00:02", "0000:00:03.0", "in"),
        (1, "eth0", "02:ec:00:00:00:01", "0000:00:04.0", None),
    ]


def test_alive_lines_give_the_boot_and_the_vnics_in_guest_order() -> None:
    console = (
        "EDGECLOUD-READY count=2\n"
        "EDGECLOUD-ALIVE boot=0b1c-22 nics=0000:00:03.0/52:54:00:00:00:01,0000:00:04.0/52:54:00:00:00:02,\n"
        "noise\nEDGECLOUD-ALIVE boot=0b1c-22 nics=\n"
    )
    first, second = parse_alive(console)
    assert first.boot == "0b1c-22"
    assert first.vnics == (
        ("0000:00:03.0", "52:54:00:00:00:01"),
        ("0000:00:04.0", "52:54:00:00:00:02"),
    )
    assert second.vnics == ()


def test_the_init_script_prints_a_heartbeat() -> None:
    assert "__ALIVE_EVERY__" not in INIT_SCRIPT
    assert f"-ge {ALIVE_EVERY} ]" in INIT_SCRIPT and "EDGECLOUD-ALIVE boot=$boot" in INIT_SCRIPT
