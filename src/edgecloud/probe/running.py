"""Running a probe: a paced UDP sender, a receiver, and both across two network namespaces.

Role: the I/O layer of the traffic probe, on asyncio datagram endpoints. ``send`` and
``receive`` run in the current process (and network namespace); ``probe_in_namespaces``
starts them as ``python -m edgecloud.probe.worker`` subprocesses under ``ip netns exec`` and
combines their JSON lines into a ``ProbeResult``. Neighbours: packets.py (wire format and
accounting), worker.py (the subprocess entry point).

Measuring a change while it happens: ``probe_in_namespaces`` is a coroutine, so run the
change concurrently with it. Pass ``started=asyncio.Event()`` to learn when the first packet
leaves, e.g. to start a chain change one second into the probe::

    started = asyncio.Event()

    async def change() -> None:
        await started.wait()
        await asyncio.sleep(1.0)
        await apply_chain_change()

    result, _ = await asyncio.gather(
        probe_in_namespaces("ns-a", "ns-b", "10.0.0.2", 2000, 3.0, started=started), change()
    )

Every time in the result is ``time.monotonic()`` seconds, one clock for all namespaces of a
host, so it compares directly with the caller's own ``time.monotonic()`` readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from edgecloud.errors import DriverError, InvalidInput, NotFound, ProtocolError
from edgecloud.probe.packets import (
    MAX_RUN_ID,
    PACKET_SIZE,
    ProbeStats,
    StatsReport,
    pack,
    unpack,
)

DEFAULT_PORT = 47800
MAX_RATE_PPS = 1_000_000
RCVBUF_BYTES = 8 * 1024 * 1024
STARTUP_TIMEOUT_S = 20.0  # a Python interpreter starting on a busy two-core host
LINGER_S = 0.2
Address = tuple[str, int]
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux (x86-64 and arm64: 35)
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


# --- sending -------------------------------------------------------------------------------


async def send(
    target: Address,
    rate_pps: int,
    duration_s: float,
    run_id: int,
    bind: Address | None = None,
    *,
    on_start: Callable[[float], None] | None = None,
) -> int:
    """Send ``round(rate_pps * duration_s)`` probe packets to ``target``; the number sent.

    Paced on the monotonic clock: packet ``n`` is due at ``start + n / rate_pps``; a late
    wake-up sends every packet already due in one burst, so the average rate stays exact even
    though asyncio sleeps are only good to about a millisecond. ``on_start(t)`` is called with
    the monotonic time just before the first packet.
    """
    total = _packet_count(rate_pps, duration_s, run_id)
    loop = asyncio.get_running_loop()
    # Send errors (ENOBUFS, ICMP unreachable) are not raised: they show up as loss.
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=target, local_addr=bind
    )
    try:
        return await _paced(transport, total, rate_pps, run_id, on_start)
    finally:
        transport.close()


def _packet_count(rate_pps: int, duration_s: float, run_id: int) -> int:
    if not 0 < rate_pps <= MAX_RATE_PPS:
        raise InvalidInput(f"rate must be 1..{MAX_RATE_PPS} pps, not {rate_pps}", "rate_pps")
    if not duration_s > 0:
        raise InvalidInput(f"duration must be positive, not {duration_s}", "duration_s")
    if not 0 <= run_id <= MAX_RUN_ID:
        raise InvalidInput(f"run id must be 0..{MAX_RUN_ID}, not {run_id}", "run_id")
    return max(round(rate_pps * duration_s), 1)


async def _paced(
    transport: asyncio.DatagramTransport,
    total: int,
    rate_pps: int,
    run_id: int,
    on_start: Callable[[float], None] | None,
) -> int:
    start = time.monotonic()
    if on_start is not None:
        on_start(start)
    seq = 0
    while seq < total:
        due = min(total, int((time.monotonic() - start) * rate_pps) + 1)
        for n in range(seq, due):
            transport.sendto(pack(run_id, n, time.monotonic_ns()))
        seq = due
        if seq < total:
            await asyncio.sleep(max(start + seq / rate_pps - time.monotonic(), 0.0))
    return total


# --- receiving -----------------------------------------------------------------------------


class _Receiver:
    """Reads the socket whenever it is readable and feeds this run's packets to the stats,
    each stamped with the kernel's arrival time (SO_TIMESTAMPNS) rather than the time this
    process got round to reading it: a receiver that is scheduled late (a busy two-core host)
    would otherwise stretch a gap that the wire never had. Anything else counts as ignored."""

    def __init__(self, sock: socket.socket, run_id: int, stats: ProbeStats) -> None:
        self.sock = sock
        self.run_id = run_id
        self.stats = stats
        self.ignored = 0
        self.last_arrival = time.monotonic()
        self._offset_ns = _realtime_offset_ns()

    def on_readable(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(PACKET_SIZE + 64, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.ignored += 1  # e.g. an ICMP error queued on the socket
                continue
            self._datagram(data, self._arrival(ancdata))

    def _arrival(self, ancdata: list[tuple[int, int, bytes]]) -> float:
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanos = _TIMESPEC.unpack_from(value)
                return (seconds * 1_000_000_000 + nanos - self._offset_ns) / 1e9
        return time.monotonic()  # no stamp from the kernel: the reading time

    def _datagram(self, data: bytes, now: float) -> None:
        try:
            packet = unpack(data)
        except ProtocolError:
            self.ignored += 1
            return
        if packet.run_id != self.run_id:
            self.ignored += 1
            return
        self.last_arrival = time.monotonic()
        self.stats.record(packet.seq, now, packet.sent_ns / 1e9)


def _realtime_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC (the kernel stamps arrivals in real time), from the
    tightest of a few readings."""
    best = (2**63, 0)
    for _ in range(5):
        before = time.monotonic_ns()
        real = time.time_ns()
        after = time.monotonic_ns()
        best = min(best, (after - before, real - (before + after) // 2))
    return best[1]


async def receive(
    bind: Address,
    run_id: int,
    until: float,
    stats: ProbeStats,
    *,
    stop: asyncio.Event | None = None,
    linger_s: float = LINGER_S,
    on_ready: Callable[[Address], None] | None = None,
) -> int:
    """Feed run ``run_id``'s packets arriving on ``bind`` to ``stats``; the number ignored.

    Runs until the monotonic deadline ``until``, or, once ``stop`` is set, until no packet
    has arrived for ``linger_s`` (so packets still in flight are counted). ``on_ready`` gets
    the bound address (port 0 picks a free port) once the socket is listening. Arrival times
    are the kernel's (see _Receiver), on the monotonic clock.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.bind(bind)
        _grow_receive_buffer(sock)
        protocol = _Receiver(sock, run_id, stats)
        loop.add_reader(sock.fileno(), protocol.on_readable)
        try:
            if on_ready is not None:
                on_ready(sock.getsockname()[:2])
            await _until_stopped(stop, until)
            await _until_quiet(protocol, linger_s, until)
        finally:
            loop.remove_reader(sock.fileno())
        protocol.on_readable()  # what arrived since the last wake-up
    finally:
        sock.close()
    return protocol.ignored


def _grow_receive_buffer(sock: Any) -> None:
    """A deep socket buffer so a busy event loop does not drop bursts; best effort."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF_BYTES)
            return


async def _until_stopped(stop: asyncio.Event | None, until: float) -> None:
    remaining = until - time.monotonic()
    if stop is None:
        await asyncio.sleep(max(remaining, 0.0))
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(remaining, 0.0))


async def _until_quiet(protocol: _Receiver, linger_s: float, until: float) -> None:
    while (now := time.monotonic()) < until:
        quiet = now - protocol.last_arrival
        if quiet >= linger_s:
            return
        await asyncio.sleep(min(linger_s - quiet, until - now))


# --- both ends, in two namespaces -----------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """A finished probe: the receiver's stats (with ``sent``) and the sender's timing."""

    stats: StatsReport
    rate_pps: int
    duration_s: float
    send_started_s: float
    send_elapsed_s: float
    ignored: int

    @property
    def achieved_pps(self) -> float:
        """Packets sent over the time the sender took (its last burst included)."""
        return self.stats.sent / self.send_elapsed_s if self.send_elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.stats.as_dict(),
            "rate_pps": self.rate_pps,
            "duration_s": self.duration_s,
            "achieved_pps": round(self.achieved_pps, 1),
            "send_started_s": self.send_started_s,
            "send_elapsed_s": self.send_elapsed_s,
            "ignored": self.ignored,
        }

    def summary(self) -> str:
        return f"{self.stats.summary()}; {self.achieved_pps:.0f} pps achieved"


async def probe_in_namespaces(
    src_ns: str | None,
    dst_ns: str | None,
    dst_addr: str,
    rate_pps: int,
    duration_s: float,
    port: int = DEFAULT_PORT,
    *,
    run_id: int | None = None,
    started: asyncio.Event | None = None,
    timeout_s: float | None = None,
) -> ProbeResult:
    """Probe from ``src_ns`` to ``dst_addr:port`` in ``dst_ns`` (None: this namespace).

    The receiver starts first and reports ready; then the sender runs for ``duration_s``;
    then the receiver is told to stop and lingers until the wire is quiet. ``started`` is set
    as the first packet leaves. The whole run is bounded by ``timeout_s`` (default: the
    duration plus one minute); on a timeout, an error or cancellation both workers are
    killed. Raises NotFound for a missing namespace, DriverError when a worker fails.
    """
    _packet_count(rate_pps, duration_s, run_id or 0)
    if not 0 <= port <= 65535:
        raise InvalidInput(f"port must be 0..65535, not {port}", field="port")
    run = secrets.randbits(32) if run_id is None else run_id
    plan = _Plan(src_ns, dst_ns, dst_addr, rate_pps, duration_s, port, run)
    limit = duration_s + 60.0 if timeout_s is None else timeout_s
    try:
        async with asyncio.timeout(limit):
            return await _probe(plan, started)
    except TimeoutError as exc:
        raise DriverError(f"probe did not finish within {limit:.0f} s") from exc


@dataclass(frozen=True)
class _Plan:
    """One probe run's parameters, and the worker command lines they make."""

    src_ns: str | None
    dst_ns: str | None
    dst_addr: str
    rate_pps: int
    duration_s: float
    port: int
    run_id: int

    def receive_args(self) -> list[str]:
        deadline = str(self.duration_s + 40.0)
        return ["receive", "--bind", f"{self.dst_addr}:{self.port}", "--run-id", str(self.run_id),
                "--timeout", deadline, "--stop-on-stdin"]  # fmt: skip

    def send_args(self, port: int) -> list[str]:
        return ["send", "--target", f"{self.dst_addr}:{port}", "--run-id", str(self.run_id),
                "--rate", str(self.rate_pps), "--duration", str(self.duration_s)]  # fmt: skip


async def _probe(plan: _Plan, started: asyncio.Event | None) -> ProbeResult:
    """Receiver up, sender run, receiver stopped with the count sent; both results combined."""
    async with _worker(plan.dst_ns, plan.receive_args(), stdin=True) as receiver:
        port = _ready_port(await _read_line(receiver, "receiver", STARTUP_TIMEOUT_S))
        async with _worker(plan.src_ns, plan.send_args(port), stdin=False) as sender:
            await _read_line(sender, "sender", STARTUP_TIMEOUT_S)
            if started is not None:
                started.set()
            sent = await _finish(sender, "sender", None)
        stop = f"stop {int(_number(sent, 'sent'))}\n".encode()
        received = await _finish(receiver, "receiver", stop)
    return _combine(sent, received, plan)


def _worker_argv(ns: str | None, args: list[str]) -> list[str]:
    python = [sys.executable, "-m", "edgecloud.probe.worker", *args]
    return python if ns is None else ["ip", "netns", "exec", ns, *python]


@contextlib.asynccontextmanager
async def _worker(
    ns: str | None, args: list[str], *, stdin: bool
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A worker subprocess, killed and reaped on the way out unless it already exited."""
    proc = await asyncio.create_subprocess_exec(
        *_worker_argv(ns, args),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.communicate())


async def _read_line(proc: asyncio.subprocess.Process, role: str, timeout_s: float) -> str:
    """The worker's next stdout line; DriverError (with its stderr) if it exits instead."""
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    except TimeoutError as exc:
        raise DriverError(f"probe {role} said nothing within {timeout_s:.0f} s") from exc
    if not line:
        await _raise_failure(proc, role)
    return line.decode().strip()


async def _finish(proc: asyncio.subprocess.Process, role: str, stdin: bytes | None) -> Any:
    """Send ``stdin`` (then EOF), wait for the exit, and decode the last stdout line."""
    out, err = await proc.communicate(stdin)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        _raise_from(role, proc.returncode, err.decode())
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise DriverError(f"probe {role} printed {lines[-1]!r}, not JSON") from exc


async def _raise_failure(proc: asyncio.subprocess.Process, role: str) -> None:
    assert proc.stderr is not None
    err = await proc.stderr.read()
    rc = await proc.wait()
    _raise_from(role, rc, err.decode())


def _raise_from(role: str, rc: int | None, stderr: str) -> None:
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    if "Cannot open network namespace" in stderr:
        raise NotFound(f"probe {role}: {detail}")
    raise DriverError(f"probe {role} failed: {detail}")


def _ready_port(line: str) -> int:
    """The port in the receiver's ``ready <port>`` line."""
    word, _, port = line.partition(" ")
    if word != "ready" or not port.isdigit():
        raise DriverError(f"probe receiver said {line!r}, not 'ready <port>'")
    return int(port)


def _combine(sent: Any, received: Any, plan: _Plan) -> ProbeResult:
    try:
        stats = StatsReport.from_dict(received["stats"])
    except (KeyError, TypeError, InvalidInput) as exc:
        raise DriverError(f"probe receiver reported unexpected stats: {exc}") from exc
    return ProbeResult(
        stats=stats,
        rate_pps=plan.rate_pps,
        duration_s=plan.duration_s,
        send_started_s=_number(sent, "started_s"),
        send_elapsed_s=_number(sent, "elapsed_s"),
        ignored=int(_number(received, "ignored")),
    )


def _number(result: Any, name: str) -> float:
    """A numeric field of a worker's JSON result; DriverError when absent or not a number."""
    value = result.get(name) if isinstance(result, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DriverError(f"probe worker result lacks a number {name!r}: {result!r}")
    return float(value)
