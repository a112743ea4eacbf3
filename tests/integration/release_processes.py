"""Releases of edgecloud as processes, for tests that run more than one release side by side
(tests/integration/test_release_compatibility.py, test_orchestrated_upgrade.py): a release's
interpreter, the test's ``edgecloud`` processes each logging to its own file (all stopped at the
end), and the controller's REST API as the CLI's client calls it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edgecloud import __version__
from edgecloud.protocol.messages import PROTOCOL_VERSION
from tests import releases


@dataclass(frozen=True)
class Release:
    name: str  # its version string
    python: Path  # an interpreter that runs its ``-m edgecloud``
    protocol: int  # the newest agent protocol it speaks

    @property
    def says_release(self) -> bool:
        """Releases since 0.2.0 say their release and protocol at hello and store them."""
        return self.name != releases.FIRST_RELEASE.name


CURRENT = Release(__version__, Path(sys.executable), PROTOCOL_VERSION)


class Processes:
    """The test's processes, each logging to its own file; all stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        # the site's code only: no checkout on the path, no inherited PYTHONPATH
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env["PYTHONSAFEPATH"] = "1"

    def start(self, name: str, release: Release, *args: str) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(release.python), "-m", "edgecloud", *args],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.running.clear()

    def run(self, release: Release, *args: str) -> str:
        """A one-off ``edgecloud`` command of ``release``; its output."""
        result = subprocess.run(
            [str(release.python), "-m", "edgecloud", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"edgecloud {' '.join(args)}: {result.stderr}"
        return result.stdout

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {path.name} (last {lines} lines)\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted(self.root.glob("*.log"))
        )

    def poll(self, check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Poll ``check`` until truthy; at the deadline, or when a process died, fail with the
        logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            dead = [n for n, p in self.running.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{dead} exited" if dead else f"timed out after {timeout} s"
                raise AssertionError(f"waiting for {what}: {why}\n{self.logs()}")
            time.sleep(0.1)


class Api:
    """The controller's REST API, as the CLI's client would call it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.client = self._client()

    def _client(self) -> httpx.Client:
        info = json.loads((self.state / "controller.json").read_text())
        token = (self.state / "admin-token").read_text().strip()
        return httpx.Client(
            base_url=info["api_url"],
            verify=ssl.create_default_context(cafile=info["ca_cert"]),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def trust_again(self) -> bool:
        """After a CA rotation: a new client, given the CA file controller.json names now (as
        the CLI's config does); whether it verifies the API."""
        self.client.close()
        self.client = self._client()
        try:
            return self.client.get("/v1/health").status_code == 200
        except httpx.ConnectError:
            return False

    def call(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self.call("GET", path, 200)

    def host(self, name: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/hosts/{name}"))

    def vnf(self, name: str) -> dict[str, Any] | None:
        response = self.client.get(f"/v1/vnfs/{name}")
        return dict(response.json()) if response.status_code == 200 else None

    def host_alarms(self, name: str) -> list[str]:
        return [a["alarm_id"] for a in self.get("/v1/alarms") if a["entity"] == f"host={name}"]
