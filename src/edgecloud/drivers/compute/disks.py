"""A disk per VNF: a qcow2 overlay on the node's read-only cached base image.

Every VNF booted from a disk image writes only to its own overlay (``qemu-img create -b``),
grown to the flavor's disk size when that is larger than the image; the base stays unchanged
however many VNFs use it (the image cache keeps it read-only, QEMU opens backing files
read-only). The overlay is made once and kept across redefinitions and restarts (it is the
VNF's disk); the driver deletes it with the domain.

Neighbours: libvirt.py calls ``ensure_overlay`` at define time and removes the file at delete;
agent/image_cache.py provides the base. Blocking calls run in a subprocess or a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from edgecloud.errors import DriverError

GIB = 2**30


async def ensure_overlay(base: Path, base_format: str, overlay: Path, disk_gib: int) -> bool:
    """Create ``overlay`` on ``base`` unless it exists; True when it was created now."""
    if await asyncio.to_thread(overlay.exists):
        return False
    info = json.loads(await _qemu_img("info", "--output=json", "-U", "-f", base_format, str(base)))
    size = max(int(info["virtual-size"]), disk_gib * GIB)
    await asyncio.to_thread(overlay.parent.mkdir, parents=True, exist_ok=True)
    tmp = overlay.with_name(f".{overlay.name}.tmp")
    await _qemu_img(
        "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), str(tmp), str(size)
    )
    await asyncio.to_thread(os.chmod, tmp, 0o600)
    await asyncio.to_thread(tmp.replace, overlay)
    return True


async def _qemu_img(*args: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise DriverError("qemu-img is not installed (run scripts/bootstrap-host)") from exc
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"qemu-img {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()
