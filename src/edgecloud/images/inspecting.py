"""What an uploaded file really is, before the image store accepts it.

``inspect_image(path, declared)`` returns the image's facts (format, virtual size) or raises
InvalidInput with one sentence saying why the file is refused. Disk images are checked with
``qemu-img info`` (QEMU's own format probe, as Nova and Glance do), run with CPU-time and
address-space limits since the file is untrusted; kernels and ramdisks by their magic bytes.

Refused, because each is a way to reach outside the image or the host:
- a file whose probed format is not the declared one (a qcow2 declared as raw would be handed
  to QEMU as raw bytes, and raw declared as qcow2 is no image at all);
- a qcow2 with a backing file or an external data file (they name paths on the host);
- a raw file with no partition table, ISO 9660 or filesystem signature (not a disk image);
- a kernel that is not a Linux bzImage, a ramdisk that is neither a cpio archive nor a
  compressed one.

Neighbours: images/blobs.py keeps the bytes, services/images.py calls this before recording an
image. Blocking (subprocess, file reads): callers run it in a worker thread.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud.errors import InvalidInput

DISK_FORMATS = ("qcow2", "raw")
BOOT_FORMATS = ("kernel", "ramdisk")
FORMATS = DISK_FORMATS + BOOT_FORMATS
QEMU_IMG_CPU_SECONDS = 30  # as Nova's qemu-img limits
QEMU_IMG_ADDRESS_SPACE = 1 << 30
QEMU_IMG_TIMEOUT = 60.0
BZIMAGE_MAGIC = (0x202, b"HdrS")
RAMDISK_MAGICS = (
    b"070701",  # cpio newc
    b"070702",  # cpio crc
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\x02\x21\x4c\x18",  # lz4 legacy
    b"BZh",  # bzip2
    b"\x89LZO",  # lzo
)
RAW_SIGNATURES = (
    (510, b"\x55\xaa"),  # MBR, or GPT's protective MBR
    (0x8001, b"CD001"),  # ISO 9660
    (0x438, b"\x53\xef"),  # ext2/3/4 superblock magic
    (0, b"\xebX\x90"),  # FAT32 boot sector jump
)


@dataclass(frozen=True)
class ImageFacts:
    """What the store records of a checked file."""

    format: str
    size: int  # bytes in the file
    virtual_size: int | None  # bytes the guest sees (disks only)


def inspect_image(path: Path, declared: str, name: str = "the file") -> ImageFacts:
    """The facts of ``path`` if it is a valid image of format ``declared``; else InvalidInput."""
    if declared not in FORMATS:
        raise InvalidInput(
            f"image format {declared!r} is not one of {', '.join(FORMATS)}", field="disk_format"
        )
    size = path.stat().st_size
    if size == 0:
        raise InvalidInput(f"{name} is empty", field="file")
    if declared == "kernel":
        if _read_at(path, *BZIMAGE_MAGIC):
            return ImageFacts("kernel", size, None)
        raise InvalidInput(f"{name} is not a Linux kernel (no bzImage header)", field="file")
    if declared == "ramdisk":
        head = _head(path, 8)
        if any(head.startswith(magic) for magic in RAMDISK_MAGICS):
            return ImageFacts("ramdisk", size, None)
        raise InvalidInput(
            f"{name} is not a ramdisk (neither a cpio archive nor gzip/xz/zstd/lz4/bzip2/lzo)",
            field="file",
        )
    info = qemu_img_info(path)
    probed = str(info.get("format", ""))
    if probed != declared:
        hint = f"upload it with --format {probed}" if probed in DISK_FORMATS else "convert it"
        raise InvalidInput(
            f"{name} is a {probed or 'unknown'} image, not {declared}: {hint}", field="disk_format"
        )
    if probed == "qcow2":
        _check_qcow2(info, name)
    elif not any(_read_at(path, offset, magic) for offset, magic in RAW_SIGNATURES):
        raise InvalidInput(
            f"{name} is not a disk image: no partition table, ISO 9660 or filesystem signature",
            field="file",
        )
    virtual = int(info.get("virtual-size", 0))
    if virtual <= 0:
        raise InvalidInput(f"{name} has no virtual size", field="file")
    return ImageFacts(probed, size, virtual)


def qemu_img_info(path: Path) -> dict[str, Any]:
    """``qemu-img info`` as JSON, without opening any backing file, under resource limits."""
    tool = shutil.which("qemu-img")
    if tool is None:
        raise InvalidInput(
            "the controller cannot check disk images: qemu-img is not installed "
            "(run scripts/bootstrap-host)"
        )
    argv = [tool, "info", "--output=json", "-U", str(path)]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=QEMU_IMG_TIMEOUT,
            preexec_fn=_limit_qemu_img,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidInput("the file could not be checked in time (qemu-img info)") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise InvalidInput(
            f"the file is not a disk image qemu-img can read: {reason[-1] if reason else '?'}",
            field="file",
        )
    data = json.loads(done.stdout)
    if not isinstance(data, dict):
        raise InvalidInput("qemu-img info gave no answer for the file", field="file")
    return data


def _check_qcow2(info: dict[str, Any], name: str) -> None:
    backing = info.get("backing-filename") or info.get("full-backing-filename")
    if backing:
        raise InvalidInput(
            f"{name} is a qcow2 image with a backing file ({backing}) outside the image store: "
            "flatten it first (qemu-img convert -O qcow2 IN OUT)",
            field="file",
        )
    specific = info.get("format-specific")
    data = specific.get("data", {}) if isinstance(specific, dict) else {}
    if isinstance(data, dict) and data.get("data-file"):
        raise InvalidInput(
            f"{name} is a qcow2 image with an external data file ({data['data-file']}): "
            "convert it to a self-contained qcow2 first",
            field="file",
        )


def _limit_qemu_img() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (QEMU_IMG_CPU_SECONDS, QEMU_IMG_CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (QEMU_IMG_ADDRESS_SPACE, QEMU_IMG_ADDRESS_SPACE))


def _head(path: Path, count: int) -> bytes:
    with path.open("rb") as f:
        return f.read(count)


def _read_at(path: Path, offset: int, magic: bytes) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(len(magic)) == magic
