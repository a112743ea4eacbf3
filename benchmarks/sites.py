"""Benchmark helpers: a real all-in-one site (libvirt + OVS) on a per-run bridge, and the
Markdown section writer for docs/benchmarks.md. Used by the scripts in this folder."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from edgecloud.allinone import replicated_db
from edgecloud.client import Client, ClientConfig
from edgecloud.drivers.network.ovs import delete_devices_now, taps_on

EC = [sys.executable, "-m", "edgecloud"]


@contextlib.contextmanager
def real_site(
    workdir: Path, bridge: str, *extra: str
) -> Iterator[tuple[Client, dict[str, object]]]:
    """`edgecloud up --driver libvirt` on ``bridge``; yields an admin Client and site.json;
    `down --purge` afterwards (VNFs deleted), also on failure."""
    state = workdir / "site"
    env = {**os.environ, "EDGECLOUD_CONFIG": str(workdir / "config.json")}
    up = [*EC, "up", "--driver", "libvirt", "--detach", "--state-dir", str(state), "--api-port", "0",
          "--gateway-port", "0", "--bridge", bridge, *extra]  # fmt: skip
    subprocess.run(up, env=env, check=True, capture_output=True, timeout=180)
    try:
        info = json.loads((state / "site.json").read_text())
        token = (state / "controller" / "admin-token").read_text().strip()
        with Client(
            ClientConfig(url=info["api_url"], token=token, ca_cert=info["ca_cert"])
        ) as client:
            yield client, info
    finally:
        subprocess.run(
            [*EC, "down", "--purge", "--state-dir", str(state)],
            env=env,
            capture_output=True,
            timeout=600,
        )


@contextlib.contextmanager
def multinode_site(
    workdir: Path, nodes: int = 2, *extra: str
) -> Iterator[tuple[Client, dict[str, object], list[dict[str, str]]]]:
    """`edgecloud up --nodes N` (each node its own libvirtd and bridge, trunked to a site
    switch); yields an admin Client (every controller's API with ``--redundant``), site.json
    and the nodes' layout ({host, bridge, ...}); `down --purge` afterwards, also on failure,
    and a redundant site's database removed."""
    state = workdir / "site"
    env = {**os.environ, "EDGECLOUD_CONFIG": str(workdir / "config.json")}
    up = [*EC, "up", "--nodes", str(nodes), "--detach", "--state-dir", str(state),
          "--api-port", "0", "--gateway-port", "0", *extra]  # fmt: skip
    subprocess.run(up, env=env, check=True, capture_output=True, timeout=300)
    try:
        info = json.loads((state / "site.json").read_text())
        layout = json.loads((state / "nodes" / "layout.json").read_text())
        token = (state / "controller" / "admin-token").read_text().strip()
        urls = tuple(info.get("api_urls", ()))  # a redundant site: every controller's API
        config = ClientConfig(url=info["api_url"], token=token, ca_cert=info["ca_cert"], urls=urls)
        with Client(config) as client:
            yield client, info, list(layout["nodes"])
    finally:
        subprocess.run(
            [*EC, "down", "--purge", "--state-dir", str(state)],
            env=env,
            capture_output=True,
            timeout=600,
        )
        replicated_db.teardown(state)  # a redundant site's database (nothing without one)


@contextlib.contextmanager
def bridge(name: str) -> Iterator[str]:
    subprocess.run(
        [
            "ovs-vsctl",
            "--may-exist",
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ],
        check=True,
    )
    try:
        yield name
    finally:
        taps = taps_on(name)
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", name], check=False)
        delete_devices_now(taps)


def write_section(path: Path, heading: str, section: str) -> None:
    """Put ``section`` (starting with ``heading``) into the file, replacing an older one."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEach section says the command that produced it.\n\n"
    )
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
