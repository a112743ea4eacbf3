"""``python -m edgecloud.probe.worker send|receive``: one end of a probe, in this namespace.

Role: the process that ``probe_in_namespaces`` (running.py) starts under ``ip netns exec``;
also usable by hand. Line protocol on stdout:

    receive  prints ``ready <port>`` once listening, then one JSON line
             ``{"role": "receive", "ignored": n, "stats": {...StatsReport...}}``
    send     prints ``started`` as the first packet leaves, then one JSON line
             ``{"role": "send", "sent": n, "started_s": t, "elapsed_s": s}``

With ``--stop-on-stdin`` the receiver stops on a ``stop <sent>`` line (which also tells it
how many were sent) or at end of input, then lingers until the wire is quiet; it always
stops at ``--timeout`` and on SIGINT/SIGTERM. Errors: one sentence on stderr, exit 2 for bad
arguments, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from edgecloud.errors import EdgecloudError, InvalidInput
from edgecloud.probe.packets import ProbeStats
from edgecloud.probe.running import LINGER_S, Address, receive, send


def parse_address(text: str) -> Address:
    """``host:port`` or ``[v6 host]:port`` as a (host, port) tuple."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInput(f"address must be host:port, not {text!r}", field="address")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edgecloud.probe.worker")
    roles = parser.add_subparsers(dest="role", required=True)
    sender = roles.add_parser("send", help="send paced probe packets")
    sender.add_argument("--target", type=parse_address, required=True)
    sender.add_argument("--rate", type=int, required=True, help="packets per second")
    sender.add_argument("--duration", type=float, required=True, help="seconds")
    sender.add_argument("--run-id", type=int, required=True)
    sender.add_argument("--bind", type=parse_address, default=None)
    receiver = roles.add_parser("receive", help="count probe packets")
    receiver.add_argument("--bind", type=parse_address, required=True)
    receiver.add_argument("--run-id", type=int, required=True)
    receiver.add_argument("--timeout", type=float, required=True, help="seconds, at most")
    receiver.add_argument("--expect", type=int, default=0, help="packets sent, if known")
    receiver.add_argument("--linger", type=float, default=LINGER_S, help="quiet seconds")
    receiver.add_argument("--stop-on-stdin", action="store_true")
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


async def run_send(args: argparse.Namespace) -> dict[str, Any]:
    started: list[float] = []

    def on_start(at: float) -> None:
        started.append(at)
        _say("started")

    sent = await send(
        args.target, args.rate, args.duration, args.run_id, args.bind, on_start=on_start
    )
    elapsed = time.monotonic() - started[0]
    return {"role": "send", "sent": sent, "started_s": started[0], "elapsed_s": elapsed}


async def run_receive(args: argparse.Namespace) -> dict[str, Any]:
    stats = ProbeStats(sent=args.expect)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    watcher = asyncio.create_task(_watch_stdin(stats, stop)) if args.stop_on_stdin else None
    try:
        ignored = await receive(
            args.bind,
            args.run_id,
            time.monotonic() + args.timeout,
            stats,
            stop=stop,
            linger_s=args.linger,
            on_ready=lambda addr: _say(f"ready {addr[1]}"),
        )
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return {"role": "receive", "ignored": ignored, "stats": stats.as_dict()}


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def _watch_stdin(stats: ProbeStats, stop: asyncio.Event) -> None:
    """Set ``stop`` on a ``stop [<sent>]`` line or at end of input."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while line := await reader.readline():
            word, _, count = line.decode().strip().partition(" ")
            if word == "stop":
                stats.sent = int(count) if count.isdigit() else stats.sent
                break
    finally:
        transport.close()
        stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one end and print its JSON line; the exit status."""
    args = _parser().parse_args(argv)
    role = run_send if args.role == "send" else run_receive
    try:
        result = asyncio.run(role(args))
    except InvalidInput as exc:
        print(f"probe {args.role}: {exc}", file=sys.stderr)
        return 2
    except (EdgecloudError, OSError) as exc:
        print(f"probe {args.role}: {exc}", file=sys.stderr)
        return 1
    _say(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
