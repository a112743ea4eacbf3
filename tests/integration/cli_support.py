"""Driving the `edgecloud` command as an operator would, from tests: run it, read its JSON,
poll for a condition, check a pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Cli:
    """The `edgecloud` command of this checkout, or of another installed release (``python``:
    the interpreter of its environment; then nothing of this checkout is on its path)."""

    def __init__(self, config: Path, python: Path | None = None) -> None:
        self.config = config
        self.python = str(python) if python is not None else sys.executable
        self.env = {**os.environ, "EDGECLOUD_CONFIG": str(config)}
        if python is not None:
            self.env.pop("PYTHONPATH", None)
            self.env["PYTHONSAFEPATH"] = "1"

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.python, "-m", "edgecloud", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"edgecloud {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def poll(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def site_down(cli: Cli, state: Path) -> None:
    """A test site's finalizer: ``edgecloud down``, then no process left behind even if down
    failed (a frozen one is thawed first, so that it can stop)."""
    info = state / "site.json"
    pids = json.loads(info.read_text())["pids"] if info.exists() else {}
    for pid in pids.values():
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    cli.run("down", "--state-dir", str(state), check=False)
    for pid in pids.values():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
