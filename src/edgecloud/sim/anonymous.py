"""Anonymous peers for the storm: connections that hold the gateway and the API open.

``AnonymousPeers`` (used by sim/scenarios.py's storm with ``--anonymous N``) runs
``python -m edgecloud.sim.anonymous SPEC.json``, its own process at a lower CPU priority (as
sim/worker.py's), so the attack neither steals the measuring loop's time nor is starved by
it. That process keeps N connections open, half against the agent gateway, half against the
REST API, each bound to one of several 127.0.0.x source addresses, and re-opens each one as
soon as the controller closes it (what an attacker does):

- gateway: TCP and TLS without a client certificate, then two bytes of a frame's 4-byte
  length prefix (protocol/framing.py), then nothing (the gateway's pre-auth limits,
  gateway/preauth.py, are what should end it);
- API: TLS, then a request line and a header started but never finished, one more byte every
  ``drip`` seconds (slowloris: controller/http_deadlines.py should end it).

Every half second the process writes a JSON status line to stdout: connections open now (by
target), opened, closed by the controller, failed attempts (refused, reset or timed out
before TLS ended), CPU seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import ssl
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecloud import openfiles

STATUS_PERIOD = 0.5
NICE = 10  # as the simulator's workers: the controller under test gets the CPU first
CONNECT_TIMEOUT = 30.0
REOPEN_PAUSE = 0.2  # after a close, so a refused peer does not spin a core
MAX_OPENING = 64  # TLS handshakes this process has in flight at once
FIRST_SOURCE = 200  # 127.0.0.200 and up (the simulated agents use 127.1.1.1 and up)
TARGETS = ("gateway", "api")


@dataclass
class Counts:
    open_gateway: int = 0
    open_api: int = 0
    opened: int = 0
    closed_gateway: int = 0  # by the controller (EOF or reset) after TLS ended
    closed_api: int = 0
    failed: int = 0  # attempts that never got through TLS


def sources(count: int) -> list[str]:
    """The attackers' source addresses (127.0.0.200, ...), apart from the agents' ones."""
    if not 1 <= count <= 255 - FIRST_SOURCE:
        raise ValueError(f"anonymous sources must be 1..{255 - FIRST_SOURCE}")
    return [f"127.0.0.{FIRST_SOURCE + i}" for i in range(count)]


# the attacking process --------------------------------------------------------------------
def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # an attacker does not care who answers
    return context


async def _until_closed(reader: asyncio.StreamReader, drip: float, poke: Any) -> None:
    """Read until the peer ends the connection; every ``drip`` seconds of silence, ``poke``."""
    while True:
        try:
            data = await asyncio.wait_for(reader.read(4096), drip)
        except TimeoutError:
            poke()
            continue
        if not data:
            return


async def _hold(
    target: str,
    address: tuple[str, int],
    source: str,
    drip: float,
    counts: Counts,
    opening: asyncio.Semaphore,
) -> None:
    """One attacker connection, re-opened whenever it ends, forever."""
    context = _tls()
    while True:
        try:
            async with opening:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*address, ssl=context, local_addr=(source, 0)),
                    CONNECT_TIMEOUT,
                )
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError
            counts.failed += 1
            await asyncio.sleep(REOPEN_PAUSE)
            continue
        counts.opened += 1
        setattr(counts, f"open_{target}", getattr(counts, f"open_{target}") + 1)
        try:
            if target == "gateway":
                writer.write(b"\x00\x00")  # half of a frame's length prefix
                poke = _noop
            else:
                writer.write(b"GET /v1/hosts HTTP/1.1\r\nHost: edgecloud\r\nX-Slow: ")
                poke = _one_byte(writer)
            await _until_closed(reader, drip, poke)
        except (OSError, TimeoutError):
            pass
        finally:
            setattr(counts, f"open_{target}", getattr(counts, f"open_{target}") - 1)
            setattr(counts, f"closed_{target}", getattr(counts, f"closed_{target}") + 1)
            writer.transport.abort()
        await asyncio.sleep(REOPEN_PAUSE)


def _noop() -> None:
    return None


def _one_byte(writer: asyncio.StreamWriter) -> Any:
    def poke() -> None:
        if not writer.is_closing():
            writer.write(b"a")

    return poke


async def attack(spec: dict[str, Any], counts: Counts) -> None:
    """Hold ``spec["connections"]`` connections (re-opening each when closed) until cancelled."""
    opening = asyncio.Semaphore(MAX_OPENING)
    addresses = {t: (spec[t][0], int(spec[t][1])) for t in TARGETS}
    srcs: list[str] = spec["sources"]
    drip = float(spec.get("drip", 3.0))
    tasks = [
        asyncio.create_task(
            _hold(
                TARGETS[i % 2],
                addresses[TARGETS[i % 2]],
                srcs[(i // 2) % len(srcs)],
                drip,
                counts,
                opening,
            )
        )
        for i in range(int(spec["connections"]))
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _report(counts: Counts) -> None:
    while True:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        status = {"time": time.time(), **asdict(counts), "cpu": usage.ru_utime + usage.ru_stime}
        sys.stdout.write(json.dumps(status) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(STATUS_PERIOD)


async def _attack_and_report(spec: dict[str, Any]) -> None:
    counts = Counts()
    await asyncio.gather(attack(spec, counts), _report(counts))


def main() -> None:
    os.nice(NICE)
    openfiles.raise_limit()  # thousands of sockets
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    spec = json.loads(Path(sys.argv[1]).read_text())
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(_attack_and_report(spec))


# the simulator's side ---------------------------------------------------------------------
class AnonymousPeers:
    """The attacking process, seen from the simulator: start, latest status, stop."""

    def __init__(
        self,
        state_dir: Path,
        connections: int,
        gateway: tuple[str, int],
        api: tuple[str, int],
        source_count: int,
        drip: float = 3.0,
    ) -> None:
        self.state_dir, self.connections = state_dir, connections
        self.spec = {
            "connections": connections,
            "gateway": list(gateway),
            "api": list(api),
            "sources": sources(source_count),
            "drip": drip,
        }
        self.status: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return int(self.status.get("open_gateway", 0)) + int(self.status.get("open_api", 0))

    async def start(self) -> None:
        spec_file = self.state_dir / "anonymous.json"
        spec_file.write_text(json.dumps(self.spec))
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edgecloud.sim.anonymous",
            str(spec_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=open(self.state_dir / "anonymous.log", "ab"),  # noqa: SIM115
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.status = json.loads(line)

    async def wait_opened(self, timeout: float) -> bool:
        """Wait until every connection was opened once (False: not within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int(self.status.get("opened", 0)) >= self.connections:
                return True
            await asyncio.sleep(STATUS_PERIOD)
        return False

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 30)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def window(rows: list[dict[str, Any]], connections: int) -> dict[str, Any]:
    """The attack over a run's window, from the status lines sampled in it (oldest first)."""
    if not rows:
        return {"connections": connections}
    opens = [r.get("open_gateway", 0) + r.get("open_api", 0) for r in rows]
    first, last = rows[0], rows[-1]
    return {
        "connections": connections,
        "open_mean": sum(opens) / len(opens),
        "open_min": min(opens),
        "open_gateway_mean": sum(r.get("open_gateway", 0) for r in rows) / len(rows),
        "open_api_mean": sum(r.get("open_api", 0) for r in rows) / len(rows),
        "closed_by_controller": sum(
            last.get(k, 0) - first.get(k, 0) for k in ("closed_gateway", "closed_api")
        ),
        "closed_gateway": last.get("closed_gateway", 0) - first.get("closed_gateway", 0),
        "closed_api": last.get("closed_api", 0) - first.get("closed_api", 0),
        "failed_attempts": last.get("failed", 0) - first.get("failed", 0),
        "attacker_cpu_s": last.get("cpu", 0) - first.get("cpu", 0),
    }


if __name__ == "__main__":
    main()
