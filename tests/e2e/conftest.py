"""Session fixtures of the e2e tests: the debian-cloud guest image, built once per CI run.

``cloud_guest_image`` is the qcow2 that images/cloud_guest.py builds from Debian's packages
(about 4 minutes the first time), cached in ``EDGECLOUD_IMAGE_CACHE`` or
~/.cache/edgecloud/images by a hash of its recipe, so later runs find it at once. Tests boot
throwaway qcow2 overlays on it and never write to it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud.allinone.nodes import teardown
from edgecloud.images.cloud_guest import build_cloud_guest
from tests.e2e.libvirt_support import libvirt_skip_reason
from tests.e2e.multinode_support import MultiNodeSite


@pytest.fixture(scope="session")
def cloud_guest_image() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building the debian-cloud guest image needs root")
    cache = os.environ.get("EDGECLOUD_IMAGE_CACHE") or str(
        Path.home() / ".cache" / "edgecloud" / "images"
    )
    started = time.monotonic()
    image = build_cloud_guest(Path(cache), progress=lambda line: print(f"cloud guest: {line}"))
    print(f"cloud guest image {image} ready in {time.monotonic() - started:.1f} s")
    return image


@pytest.fixture
def site(tmp_path: Path) -> Iterator[MultiNodeSite]:
    """`edgecloud up --nodes 2` in the test's folder (the test calls ``up``), taken down
    afterwards whatever happened: the supervisor first, then anything it left."""
    reason = libvirt_skip_reason()
    if reason:
        pytest.skip(reason)
    running = MultiNodeSite(tmp_path)
    try:
        yield running
    finally:  # whatever happened: the supervisor first, then anything it left
        running.cli.run("down", "--state-dir", str(running.state), check=False)
        info = running.state / "site.json"
        pids = json.loads(info.read_text())["pids"] if info.exists() else {}
        teardown(running.state, pids)


@pytest.fixture
def failure_namespaces() -> Iterator[list[str]]:
    """A customer and a network namespace for a probe through a chain (host-failure tests),
    deleted afterwards."""
    names = [f"ecf{secrets.token_hex(3)}-{side}" for side in ("c", "n")]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
