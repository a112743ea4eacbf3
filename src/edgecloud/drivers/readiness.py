"""Is this host prepared for a driver? What is missing, in a few words each, for the CLI.

``edgecloud up`` (cli/site.py) asks before it starts anything, so a host that cannot run real
VMs gets one sentence pointing at scripts/bootstrap-host at once instead of a site whose agent
fails later. The checks are those scripts/bootstrap-host's own verify step makes: libvirt-python
importable, libvirtd answering at the URI, Open vSwitch's database answering. The fake drivers
need nothing. registry.py knows which drivers exist; this module only what they need.
"""

from __future__ import annotations

import shutil
import subprocess

LIBVIRT_URI = "qemu:///system"
OVS_TIMEOUT = 5  # seconds for `ovs-vsctl show`


def host_problems(compute: str, network: str, uri: str | None = None) -> list[str]:
    """What keeps this host from running ``compute`` + ``network`` (empty: nothing)."""
    problems = []
    if compute == "libvirt":
        problems += _libvirt_problems(uri or LIBVIRT_URI)
    if network == "ovs":
        problems += _ovs_problems()
    return problems


def node_daemon_problems() -> list[str]:
    """What keeps this host from running its own libvirtd per node (`edgecloud up --nodes N`,
    allinone/hypervisors.py): libvirt-python and the daemons' programs; no daemon needs to run."""
    problems = []
    try:
        import libvirt  # noqa: F401
    except ImportError:
        problems.append("libvirt-python is not installed in this Python environment")
    problems += [f"{p} is not installed" for p in ("libvirtd", "virtlogd") if not shutil.which(p)]
    return problems + _ovs_problems()


def _libvirt_problems(uri: str) -> list[str]:
    try:
        import libvirt
    except ImportError:
        return ["libvirt-python is not installed in this Python environment"]
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError:
        return [f"libvirtd is not reachable at {uri}"]
    return []


def _ovs_problems() -> list[str]:
    if shutil.which("ovs-vsctl") is None:
        return ["Open vSwitch is not installed"]
    try:
        subprocess.run(
            ["ovs-vsctl", f"--timeout={OVS_TIMEOUT}", "show"],
            check=True,
            capture_output=True,
            timeout=OVS_TIMEOUT + 2,
        )
    except (OSError, subprocess.SubprocessError):
        return ["Open vSwitch is not running"]
    return []
