"""`edgecloud up --nodes 2 --detach` for e2e tests, run as a user would (the `edgecloud`
command as a subprocess, with its own --config file), ; the ``site`` fixture
(tests/e2e/conftest.py) takes it down whatever happened."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from edgecloud.allinone.nodes import Layout
from edgecloud.client.config import load_config
from tests.integration.cli_support import Cli


class MultiNodeSite:
    """`edgecloud up --nodes 2 --detach` in a state folder of the test's own."""

    def __init__(self, tmp_path: Path) -> None:
        self.cli = Cli(tmp_path / "config.json")  # this checkout's command (`installed` changes it)
        self.state = tmp_path / "site"

    def up(self, *extra: str) -> None:
        """``extra``: more `up` options (a repeated one overrides the default here)."""
        self.cli.run(
            "--config", str(self.cli.config), "up", "--nodes", "2", "--detach",
            "--state-dir", str(self.state), "--api-port", "0", "--gateway-port", "0",
            "--heartbeat-interval", "2", "--resync-interval", "2", *extra,
        )  # fmt: skip

    def installed(self, python: Path) -> None:
        """From now on run (and take down) the site with the `edgecloud` of another installed
        release: the interpreter of its environment."""
        self.cli = Cli(self.cli.config, python)

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli.run("down", "--state-dir", str(self.state))

    def api_config(self) -> tuple[str, dict[str, str], str]:
        """The API's URL, the admin's auth header and the CA file, from the client config."""
        config = load_config(self.cli.config)
        return config.url, {"Authorization": f"Bearer {config.token}"}, config.ca_cert

    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.state / "site.json").read_text()))

    def layout(self) -> Layout:
        layout = Layout.load(self.state)
        assert layout is not None and layout.fabric is not None
        return layout

    def qemu_pids(self) -> set[int]:
        """The QEMU processes of every node, from their pid files."""
        return {
            int(p.read_text().strip())
            for node in self.layout().nodes
            if node.hypervisor_root is not None
            for p in (node.hypervisor_root / "run").glob("qemu/ec-*.pid")
        }

    def releases(self) -> set[str]:
        """Every live controller's and every host's release, as `edgecloud version` shows."""
        site = self.cli.json("version")["site"]
        return {c["release"] for c in site["controllers"] if c["up"]} | {
            h["release"] for h in site["hosts"]
        }

    def daemon_pids(self) -> list[int]:
        """libvirtd, virtlogd and QEMU of every node, from their pid files."""
        pids = []
        for node in self.layout().nodes:
            assert node.hypervisor_root is not None
            run = node.hypervisor_root / "run"
            for pid_file in [
                run / "libvirtd.pid",
                run / "virtlogd.pid",
                *run.glob("qemu/ec-*.pid"),
            ]:
                pids.append(int(pid_file.read_text().strip()))
        return pids
