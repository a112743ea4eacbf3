"""Build tiny direct-kernel-boot VNF images from the host's Debian kernel and busybox-static.

``build_bump_in_the_wire(out_dir)`` returns the kernel, initramfs and kernel command line of a
test VNF that reports its vNICs on the serial console and bridges its two data vNICs (the
guest program is in guest_init.py; ``parse_console`` reads what it prints). The initramfs is
written in Python (cpio newc + gzip); kernel modules are resolved from ``modules.dep`` and
decompressed when the kernel ships them compressed. Builds are cached in ``out_dir`` by a hash
of every input, so a second call returns at once. Needs /boot/vmlinuz-* and /bin/busybox
(scripts/bootstrap-host installs both). Blocking: call it from a worker thread in async code.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgecloud.errors import DriverError
from edgecloud.images.guest_init import INIT_SCRIPT

BUILDER_VERSION = "1"
BUSYBOX = Path("/bin/busybox")
# Modules the guest loads, dependencies first (resolve_modules adds the missing ones):
# the virtio stack (HOST-NOTES order), other NIC models, the bridge, the config-drive cdrom
# (PIIX IDE + SCSI cdrom + ISO 9660) and the ACPI power button (graceful shutdown).
GUEST_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net",
    "e1000", "8139cp", "8139too",
    "bridge",
    "cdrom", "sr_mod", "ata_piix", "ata_generic", "isofs",
    "button", "evdev",
)  # fmt: skip
CMDLINE = "console=ttyS0 quiet edgecloud.vnf=bump-in-the-wire"
VNIC_LINE = re.compile(r"^EDGECLOUD-VNIC (?P<fields>.*)$", re.MULTILINE)


@dataclass(frozen=True)
class ImageFiles:
    """A direct-kernel-boot image: what BootSource's kernel/initrd/cmdline take."""

    kernel: Path
    initrd: Path
    cmdline: str


@dataclass(frozen=True)
class GuestVnic:
    """One ``EDGECLOUD-VNIC`` line of the guest's console."""

    index: int
    name: str
    mac: str
    pci: str
    tag: str | None


def build_blank_disk(out_dir: Path, size_mib: int = 64) -> Path:
    """An empty qcow2 disk of ``size_mib`` (a few hundred KiB on disk): the image the simulator
    and the fake-driver tests upload, since their guests never read it. Cached in ``out_dir``."""
    target = out_dir / f"blank-{size_mib}m.qcow2"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{target.name}.{os.getpid()}"
    try:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), f"{size_mib}M"],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DriverError(f"could not make a blank disk with qemu-img: {exc}") from exc
    tmp.replace(target)
    return target


def find_host_kernel(boot_dir: Path = Path("/boot")) -> Path:
    """The newest Debian kernel in ``boot_dir`` that has its modules installed."""
    candidates = [
        k for k in boot_dir.glob("vmlinuz-*") if (_modules_dir_for(k) / "modules.dep").exists()
    ]
    if not candidates:
        raise DriverError(
            f"no kernel with modules found in {boot_dir} (is linux-image-amd64 installed?)"
        )
    return max(candidates, key=lambda k: _version_key(k.name.removeprefix("vmlinuz-")))


def build_bump_in_the_wire(out_dir: Path, kernel: Path | None = None) -> ImageFiles:
    """Build (or reuse from ``out_dir``) the bump-in-the-wire test VNF image."""
    kernel = kernel or find_host_kernel()
    modules_dir = _modules_dir_for(kernel)
    modules = resolve_modules(modules_dir, GUEST_MODULES)
    digest = _inputs_digest(kernel, modules)
    target = out_dir / f"bitw-{digest}"
    files = ImageFiles(target / "vmlinuz", target / "initrd.img", CMDLINE)
    if files.kernel.exists() and files.initrd.exists():
        return files
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        staging = Path(tmp) / "image"
        staging.mkdir()
        shutil.copyfile(kernel, staging / "vmlinuz")
        (staging / "initrd.img").write_bytes(_initramfs(modules))
        try:
            staging.rename(target)
        except OSError:
            if not files.initrd.exists():  # not a concurrent builder that won the race
                raise
    return files


def resolve_modules(modules_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """Module files for ``names`` and their dependencies, in load order.

    Built-in modules are skipped; a name the kernel has neither as module nor built in is an
    error.
    """
    deps = _read_modules_dep(modules_dir)
    builtin = _read_builtin(modules_dir)
    by_name = {_module_name(rel): rel for rel in deps}
    order: list[str] = []

    def visit(rel: str) -> None:
        if rel in order:
            return
        for dep in reversed(deps[rel]):  # modules.dep lists the deepest dependency last
            visit(dep)
        order.append(rel)

    for name in names:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key not in builtin:
            raise DriverError(f"kernel module {name} not found in {modules_dir}")
    return [modules_dir / rel for rel in order]


def parse_console(text: str) -> list[GuestVnic]:
    """The vNICs a bump-in-the-wire guest reported, in its (PCI) order."""
    vnics = []
    for match in VNIC_LINE.finditer(text):
        fields = dict(f.split("=", 1) for f in match["fields"].split() if "=" in f)
        tag = fields.get("tag", "-")
        vnics.append(
            GuestVnic(
                index=int(fields["index"]),
                name=fields["name"],
                mac=fields["mac"],
                pci=fields["pci"],
                tag=None if tag == "-" else tag,
            )
        )
    return vnics


ALIVE_LINE = re.compile(r"EDGECLOUD-ALIVE boot=(?P<boot>[0-9a-f-]+) nics=(?P<nics>\S*)")


@dataclass(frozen=True)
class GuestAlive:
    """A heartbeat of a bump-in-the-wire guest: its kernel's boot id and its vNICs, in its
    own order, as (PCI address, MAC)."""

    boot: str
    vnics: tuple[tuple[str, str], ...]


def parse_alive(text: str) -> list[GuestAlive]:
    """Every heartbeat line of the console text, oldest first."""
    found = []
    for match in ALIVE_LINE.finditer(text):
        pairs = [item.split("/", 1) for item in match["nics"].split(",") if "/" in item]
        found.append(GuestAlive(match["boot"], tuple((pci, mac) for pci, mac in pairs)))
    return found


def _modules_dir_for(kernel: Path) -> Path:
    return Path("/lib/modules") / kernel.name.removeprefix("vmlinuz-")


def _version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", release)]


def _module_name(rel: str) -> str:
    base = rel.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _read_modules_dep(modules_dir: Path) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        if target:
            deps[target] = rest.split()
    return deps


def _read_builtin(modules_dir: Path) -> set[str]:
    path = modules_dir / "modules.builtin"
    if not path.exists():
        return set()
    return {_module_name(line) for line in path.read_text().splitlines() if line}


def _inputs_digest(kernel: Path, modules: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(BUILDER_VERSION.encode())
    h.update(INIT_SCRIPT.encode())
    h.update(CMDLINE.encode())
    for path in (kernel, BUSYBOX, *modules):
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _module_bytes(path: Path) -> bytes:
    """A module file's contents, decompressed (busybox insmod wants a plain .ko)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        try:
            return subprocess.run(
                ["zstd", "-dc", str(path)], check=True, capture_output=True
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise DriverError(f"could not decompress {path} (is zstd installed?): {exc}") from exc
    return data


def _initramfs(modules: list[Path]) -> bytes:
    archive = _Cpio()
    for d in ("bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "run", "sys", "tmp"):
        archive.add(d, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    archive.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    archive.add("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode())
    names = [_module_name(p.name) for p in modules]
    for path, name in zip(modules, names, strict=True):
        archive.add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, _module_bytes(path))
    order = "".join(f"{n}\n" for n in names).encode()
    archive.add("etc/modules.order", stat.S_IFREG | 0o644, order)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


class _Cpio:
    """A minimal writer of the cpio "newc" format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._ino += 1
        self._out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self._out.write(name.encode() + b"\0")
        self._pad()
        self._out.write(data)
        self._pad()

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self._out.getvalue()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))
