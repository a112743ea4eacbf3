"""Central as the sites scenario runs it: ``edgecloud central up`` as its own process.

Its own process so its CPU and resident memory are measured on their own (fleet.py
``ProcessMeter``), with its open descriptors (one per site connection). What central thinks of
its sites is read from its store, read-only (``store_counts``: one SQLite query, nothing asked
of central's event loop), so measuring does not load what is measured; the API load
(sim/central_load.py) is what asks central's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from edgecloud.errors import EdgecloudError
from edgecloud.sim.fleet import READY_TIMEOUT, ProcessMeter, stop_process
from edgecloud.sim.site_identities import DB_FILE, GROUP

INFO_FILE = "central.json"  # central/run.py: written when ready
COUNTS = """
SELECT count(*), coalesce(sum(state = 'online'), 0),
       coalesce(sum(applied_version = desired_version), 0),
       coalesce(max(desired_version), 0), coalesce(min(desired_version), 0)
FROM sites WHERE "group" = ?
"""


class CentralProcess:
    def __init__(self, state_dir: Path, site_port: int, heartbeat: float, protection: bool) -> None:
        self.state_dir, self.site_port = state_dir, site_port
        self.heartbeat, self.protection = heartbeat, protection
        self.proc: asyncio.subprocess.Process | None = None
        self.meter: ProcessMeter | None = None
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        info_file = self.state_dir / INFO_FILE
        info_file.unlink(missing_ok=True)
        args = [
            *("central", "--central-dir", str(self.state_dir), "up", "--api-port", "0"),
            *("--site-port", str(self.site_port)),
            *("--heartbeat-interval", str(self.heartbeat)),
        ]
        if not self.protection:
            args.append("--no-protection")
        log = open(self.state_dir / "central.log", "ab")  # noqa: SIM115 - child's stderr
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgecloud", *args, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while not info_file.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                await self.stop(kill=True)
                raise EdgecloudError(f"central did not start; see {self.state_dir}/central.log")
            await asyncio.sleep(0.1)
        self.info = json.loads(info_file.read_text())
        self.meter = ProcessMeter(self.proc.pid)

    @property
    def token(self) -> str:
        return (self.state_dir / "admin-token").read_text().strip()

    def sample(self) -> dict[str, Any]:
        """CPU (% of one core since the last sample), RSS (MiB), open descriptors."""
        if self.meter is None:
            return {}
        out = self.meter.sample()
        with contextlib.suppress(psutil.Error):
            out["fds"] = self.meter.ps.num_fds()
        return out

    async def stop(self, kill: bool = False) -> None:
        await stop_process(self.proc, kill)


def store_counts(state_dir: Path) -> dict[str, int]:
    """The simulated sites as central's store has them: how many, online, in sync (applied
    the desired version), and the newest and oldest desired version."""
    uri = f"file:{state_dir / DB_FILE}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        row = db.execute(COUNTS, (GROUP,)).fetchone()
    keys = ("sites", "online", "in_sync", "desired_max", "desired_min")
    return dict(zip(keys, (int(v) for v in row), strict=True))
