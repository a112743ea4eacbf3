"""Build a real cloud-init guest: a Debian 12 qcow2 disk image made from Debian's packages alone.

``build_cloud_guest(out_dir)`` returns the path of a qcow2 image that boots from its own disk
(grub on an msdos label, one ext4 partition), runs cloud-init (ConfigDrive and NoCloud
datasources only, so it never waits for a metadata server) and qemu-guest-agent (started by
udev as soon as the ``org.qemu.guest_agent.0`` virtio-serial port appears). It is what the
e2e tests and demos boot as a "vendor-style VNF", next to the project's busybox VNF
(building.py). The libvirt compute driver (drivers/compute/libvirt.py) boots it; nothing here
talks to libvirt.

Recipe (HOST-NOTES.md "A real cloud-init guest"): a sparse raw file, ``parted`` msdos label,
``losetup`` + ``partx`` (there is no udev on the build host, so partition nodes come from
partx), mkfs.ext4, ``debootstrap --variant=minbase``, then ``apt-get install`` inside a chroot
(debootstrap's own ``--include=cloud-init`` leaves python3-cryptography unconfigured), grub
installed to the loop device, free blocks zeroed, ``qemu-img convert -c -O qcow2`` (zero
clusters left out, the rest zlib-compressed: 198 MiB instead of 528 MiB, for 20 s more build;
QEMU decompresses what the guest reads, and a VNF's overlay writes uncompressed). Downloaded packages stay outside the image (debootstrap's cache directory,
and apt's archive directory bind-mounted from the build directory). The chroot
gets its own small /dev (a tmpfs with the few nodes a build needs, the loop device and a
/dev/disk/by-uuid link so update-grub writes ``root=UUID=...``), never the host's.

Small on purpose: minbase, no recommends, no documentation, manual pages or translations
(dpkg path-excludes), apt lists dropped, apt's daily timers off (they would compete with the
guest's work under TCG). linux-image-cloud-amd64 is the default kernel: it boots faster under
TCG than the generic one (fewer drivers to probe) but has virtio NICs only (no e1000 or
rtl8139 driver); ``kernel="linux-image-amd64"`` builds an image for those models too.

Measured on this project's 2-core TCG machine (Debian 12 host, deb.debian.org): a build takes
118-123 s (packages downloaded each time) and gives a 199 MiB qcow2 (2 GiB virtual, 430 MiB
used); a guest with 1 vCPU and 1 GiB, on an overlay, answers through its guest agent 43-44 s
after start and finishes cloud-init 89-90 s after start (kernel 12 s; cloud-init's four
Python stages about 60 s; tests/e2e/test_cloud_guest.py reports both figures).

Builds are cached in ``out_dir`` under a name keyed by a hash of the recipe, so a second call
returns at once; concurrent builders serialise on a lock file; a failed build leaves no image,
no mount and no loop device behind. Needs root, debootstrap, parted, partx, mkfs.ext4,
qemu-img and a Debian mirror (scripts/bootstrap-host installs the tools). Blocking: call it
from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgecloud import files
from edgecloud.errors import DriverError

BUILDER_VERSION = "1"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KERNEL = "linux-image-cloud-amd64"
DISK_MIB = 2048  # the image's virtual size; cloud-init's growpart takes a bigger overlay
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "initramfs-tools", "grub-pc", "cloud-init",
    "qemu-guest-agent", "ifupdown", "isc-dhcp-client", "iproute2", "openssh-server", "sudo",
    "cloud-guest-utils", "e2fsprogs",
)  # fmt: skip
NODOC = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
"""
CLOUD_CFG = """\
# edgecloud guest: read the config drive (or a NoCloud seed) and nothing else.
datasource_list: [ ConfigDrive, NoCloud, None ]
# no locales package here (C.UTF-8 is built in): cc_locale's update-locale would fail
locale: false
# Under TCG, generating RSA/DSA/ECDSA host keys took 20 s of the boot; ed25519 takes well
# under a second. Printing keys to the console and grub-dpkg took 5 s more.
ssh_genkeytypes: [ ed25519 ]
ssh:
  emit_keys_to_console: false
grub_dpkg:
  enabled: false
"""
# qemu-guest-agent's unit has the default dependencies, so it waited for sysinit.target, i.e.
# for cloud-init's network stage (86 s under TCG): start it as soon as its port appears.
GUEST_AGENT_EARLY = """\
[Unit]
DefaultDependencies=no
After=systemd-remount-fs.service
Before=shutdown.target
Conflicts=shutdown.target
"""
GRUB_DEFAULTS = """\
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL=console
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
"""
NO_DAEMONS = "#!/bin/sh\n# edgecloud image build: start no services in the chroot\nexit 101\n"
DEV_NODES = {  # name: (major, minor) of the character devices a chroot build needs
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}

BUILD_TOOLS = ("debootstrap", "parted", "partx", "losetup", "mkfs.ext4", "blkid", "qemu-img")
UNITS_OFF = ("multi-user.target.wants/e2scrub_reap.service",)  # 22 s of TCG at every boot
TIMERS_OFF = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
              "e2scrub_all.timer", "fstrim.timer")  # fmt: skip
LEFTOVERS = ("etc/ssh/ssh_host_*", "var/lib/apt/lists/*", "var/log/*.log",
             "var/cache/debconf/*-old", "root/.bash_history")  # fmt: skip
Progress = Callable[[str], None]


def recipe(kernel: str = DEFAULT_KERNEL) -> dict[str, object]:
    """Everything that decides the image's content (its cache key is a hash of this)."""
    return {
        "builder": BUILDER_VERSION,
        "suite": SUITE,
        "kernel": kernel,
        "base": "minbase+gpgv",
        "timers_off": list(TIMERS_OFF),
        "free_space": "zeroed",
        "qcow2": "compressed",
        "packages": list(PACKAGES),
        "disk_mib": DISK_MIB,
        "nodoc": NODOC,
        "cloud_cfg": CLOUD_CFG,
        "grub": GRUB_DEFAULTS,
        "guest_agent_early": GUEST_AGENT_EARLY,
        "units_off": list(UNITS_OFF),
    }


def image_path(out_dir: Path, kernel: str = DEFAULT_KERNEL) -> Path:
    """Where ``build_cloud_guest`` puts (or finds) the image for this recipe."""
    digest = hashlib.sha256(json.dumps(recipe(kernel), sort_keys=True).encode()).hexdigest()
    return out_dir / f"debian-cloud-{digest[:16]}.qcow2"


def build_cloud_guest(
    out_dir: Path,
    *,
    kernel: str = DEFAULT_KERNEL,
    mirror: str = DEFAULT_MIRROR,
    progress: Progress | None = None,
) -> Path:
    """Build (or reuse from ``out_dir``) the Debian cloud-init guest image; its qcow2 path."""
    say = progress or (lambda _line: None)
    target = image_path(out_dir, kernel)
    if target.exists():
        return target
    if os.geteuid() != 0:
        raise DriverError("building the debian-cloud image needs root (loop devices, chroot)")
    _check_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    with files.locked(out_dir / ".debian-cloud.lock"):
        if target.exists():  # another builder finished while we waited
            return target
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
            work = Path(tmp)
            raw = work / "disk.raw"
            _build_raw(raw, work, kernel, mirror, say)
            say("converting to a compressed qcow2")
            staged = work / target.name
            _run(["qemu-img", "convert", "-q", "-c", "-O", "qcow2", str(raw), str(staged)])
            staged.replace(target)
        size = target.stat().st_size / 2**20
        say(f"done in {time.monotonic() - started:.0f} s: {target} ({size:.0f} MiB)")
    return target


def _build_raw(raw: Path, work: Path, kernel: str, mirror: str, say: Progress) -> None:
    root, debs = work / "root", work / "debs"
    (debs / "partial").mkdir(parents=True)
    say(f"partitioning a {DISK_MIB} MiB disk")
    with raw.open("wb") as f:
        f.truncate(DISK_MIB * 2**20)
    label = ["mklabel", "msdos", "mkpart", "primary", "ext4", "1MiB", "100%", "set", "1", "boot"]
    _run(["parted", "-s", str(raw), *label, "on"])
    with contextlib.ExitStack() as undo:
        loop = _run(["losetup", "-f", "--show", str(raw)]).strip()
        undo.callback(_quietly, ["losetup", "-d", loop])
        _run(["partx", "-u", loop])  # -u, not -a: a stale partition of a reused device is fixed
        undo.callback(_retried, ["partx", "-d", loop])
        part = f"{loop}p1"
        _wait_for_node(part)
        _run(["mkfs.ext4", "-q", "-L", "root", "-E", "lazy_itable_init=0", part])
        fs_uuid = _run(["blkid", "-s", "UUID", "-o", "value", part]).strip()
        root.mkdir()
        _mount(undo, part, root)
        say(f"debootstrap {SUITE} (minbase) from {mirror}")
        _nodoc(root)
        base = ["--variant=minbase", "--include=gpgv", f"--cache-dir={debs}"]
        _run(["debootstrap", *base, SUITE, str(root), mirror])
        _chroot_mounts(undo, root, loop, part, fs_uuid)
        _mount(undo, str(debs), root / "var/cache/apt/archives", "--bind")
        _configure(root, fs_uuid)
        say(f"installing {kernel}, grub, cloud-init, qemu-guest-agent ({len(PACKAGES) + 1})")
        _chroot(root, "apt-get", "update", "-q")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
        _chroot(root, *install, kernel, *PACKAGES)
        say("installing grub on the disk")
        _chroot(root, "grub-install", "--target=i386-pc", "--modules=part_msdos ext2", loop)
        _chroot(root, "update-grub")
        _check_grub(root, fs_uuid)
        _finish(root)
        say("zeroing free space")
        _zero_free_space(root)


def _nodoc(root: Path) -> None:
    """dpkg drops docs from the start (debootstrap's packages already honour it)."""
    cfg = root / "etc/dpkg/dpkg.cfg.d"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "01-edgecloud-nodoc").write_text(NODOC)


def _chroot_mounts(
    undo: contextlib.ExitStack, root: Path, loop: str, part: str, fs_uuid: str
) -> None:
    """/proc, /sys and a private /dev with the loop device in the chroot."""
    for fs, where in (("proc", "proc"), ("sysfs", "sys")):
        _mount(undo, fs, root / where, "-t", fs)
    dev = root / "dev"
    _mount(undo, "tmpfs", dev, "-t", "tmpfs", "-o", "mode=0755,size=1m")
    for name, (major, minor) in DEV_NODES.items():
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)  # not masked by umask: apt's _apt user writes /dev/null
    for node in (loop, part):
        rdev = os.stat(node).st_rdev
        os.mknod(dev / Path(node).name, 0o660 | stat.S_IFBLK, rdev)
    by_uuid = dev / "disk/by-uuid"
    by_uuid.mkdir(parents=True)
    (by_uuid / fs_uuid).symlink_to(f"../../{Path(part).name}")
    (dev / "pts").mkdir()
    _mount(undo, "devpts", dev / "pts", "-t", "devpts", "-o", "newinstance,ptmxmode=0666")
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "fd").symlink_to("/proc/self/fd")
    run = root / "run"
    run.mkdir(exist_ok=True)
    _mount(undo, "tmpfs", run, "-t", "tmpfs", "-o", "mode=0755,size=16m")


def _configure(root: Path, fs_uuid: str) -> None:
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    (root / "etc/apt/sources.list").write_text(
        f"deb {DEFAULT_MIRROR} {SUITE} main\n"
        f"deb {DEFAULT_MIRROR} {SUITE}-updates main\n"
        f"deb http://deb.debian.org/debian-security {SUITE}-security main\n"
    )
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(NO_DAEMONS)
    policy.chmod(0o755)
    grub = root / "etc/default/grub"
    grub.parent.mkdir(parents=True, exist_ok=True)
    grub.write_text(GRUB_DEFAULTS)
    cloud = root / "etc/cloud/cloud.cfg.d"
    cloud.mkdir(parents=True, exist_ok=True)
    (cloud / "90-edgecloud-datasources.cfg").write_text(CLOUD_CFG)
    network = root / "etc/network/interfaces"
    network.parent.mkdir(parents=True, exist_ok=True)
    network.write_text("source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n")
    (root / "etc/hostname").write_text("localhost\n")  # cloud-init sets the real one


def _check_grub(root: Path, fs_uuid: str) -> None:
    cfg = (root / "boot/grub/grub.cfg").read_text()
    if f"root=UUID={fs_uuid}" not in cfg:
        raise DriverError("update-grub did not write root=UUID=... (the image would not boot)")


def _finish(root: Path) -> None:
    """What a fresh instance must make for itself, and what a build leaves that it need not."""
    _chroot(root, "apt-get", "clean")
    (root / "usr/sbin/policy-rc.d").unlink()
    (root / "etc/machine-id").write_text("")  # each boot of a new disk gets its own
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    units = root / "etc/systemd/system"
    for unit in (*UNITS_OFF, *(f"timers.target.wants/{timer}" for timer in TIMERS_OFF)):
        (units / unit).unlink(missing_ok=True)
    early = units / "qemu-guest-agent.service.d"
    early.mkdir(parents=True, exist_ok=True)
    (early / "10-edgecloud-early.conf").write_text(GUEST_AGENT_EARLY)
    for pattern in LEFTOVERS:
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()


def _zero_free_space(root: Path) -> None:
    """Fill the filesystem with zeros, then free them: deleted files' blocks become zero
    clusters, which qemu-img convert leaves out of the qcow2 (fstrim on a loop device does
    not reliably punch holes in its file)."""
    filler = root / ".zero-fill"
    chunk = bytes(4 * 2**20)
    try:
        with filler.open("wb") as f:
            while True:
                f.write(chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise DriverError(f"could not zero the free space of the image: {exc}") from exc
    finally:
        filler.unlink(missing_ok=True)
    os.sync()


def _mount(undo: contextlib.ExitStack, source: str, where: Path, *options: str) -> None:
    _run(["mount", *options, source, str(where)])
    undo.callback(_unmount, where)


def _chroot(root: Path, *argv: str) -> str:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    return _run(["chroot", str(root), *argv], env=env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise DriverError(f"{argv[0]} is not installed (run scripts/bootstrap-host)") from None
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-5:]
        raise DriverError(f"{' '.join(argv[:3])} failed: {' | '.join(tail)}") from None
    return done.stdout


def _quietly(argv: list[str]) -> None:
    subprocess.run(argv, check=False, capture_output=True)


def _unmount(where: Path) -> None:
    """Unmount now (so the partition can be removed next); lazily if something still holds it."""
    if not _retried(["umount", str(where)]):
        _quietly(["umount", "-l", str(where)])


def _retried(argv: list[str], seconds: float = 5.0) -> bool:
    """Run a clean-up command until it succeeds (a device is busy for a moment after use)."""
    deadline = time.monotonic() + seconds
    while subprocess.run(argv, check=False, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _wait_for_node(path: str, seconds: float = 5.0) -> None:
    """partx tells the kernel; devtmpfs makes the node a moment later."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise DriverError(f"{path} did not appear after partx -a")
        time.sleep(0.05)


def _check_tools() -> None:
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        raise DriverError(
            f"building the debian-cloud image needs {', '.join(missing)} "
            "(run scripts/bootstrap-host)"
        )


if __name__ == "__main__":  # pragma: no cover - manual use: python -m ...cloud_guest DIR
    import sys

    print(build_cloud_guest(Path(sys.argv[1]), progress=lambda line: print(line, flush=True)))
