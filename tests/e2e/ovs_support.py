"""Shared helpers of the OVS e2e tests (test_ovs_network.py, test_ovs_conformance.py).

The skip check (root, ovs-vsctl reaching ovsdb), a non-blocking command runner, and finalizer
clean-up that never raises. Names made here carry a per-run prefix ``ect<hex>``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess

import pytest

from edgecloud.drivers.network.ovs import delete_devices_now, taps_on


def ovs_skip_reason() -> str | None:
    """Why OVS e2e tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (creates OVS bridges, veths and network namespaces)"
    if shutil.which("ovs-vsctl") is None or shutil.which("ip") is None:
        return "needs ovs-vsctl and ip (run scripts/bootstrap-host)"
    probe = subprocess.run(
        ["ovs-vsctl", "--timeout=5", "show"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"ovs-vsctl cannot reach ovsdb ({probe.stderr.strip()}): run scripts/bootstrap-host"
    return None


def skip_without_ovs() -> None:
    """pytest.skip with the reason, when OVS e2e tests cannot run."""
    if reason := ovs_skip_reason():
        pytest.skip(reason)


def new_run_id() -> str:
    """10 random hex digits; ``ect<run id>`` names a bridge and stems the run's other names."""
    return secrets.token_hex(5)


async def sh(*argv: str, check: bool = True, stdin: str | None = None) -> tuple[int, str, str]:
    """Run a command without blocking the loop; (returncode, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    rc = proc.returncode if proc.returncode is not None else -1
    if check and rc != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({rc}): {err.decode().strip()}")
    return rc, out.decode(), err.decode()


def remove(*argv: str) -> None:
    """Run a clean-up command from a finalizer; failures (already gone) are ignored."""
    subprocess.run(argv, capture_output=True, check=False, timeout=30)


def delete_bridge(name: str) -> None:
    """Remove a test bridge and the vNIC taps the OVS driver made on it."""
    taps = taps_on(name)
    remove("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name)
    delete_devices_now(taps)
