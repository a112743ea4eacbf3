"""`edgecloud probe`: send a paced UDP stream between two network namespaces and count it.

Runs locally, like cli/daemons.py: no controller, no client. It calls
edgecloud.probe.probe_in_namespaces (which starts both ends under `ip netns exec`) and prints
what the receiver saw: sent, received, lost, reordered, duplicated, the longest silence and
the rate achieved. Run it while changing a chain (`edgecloud chain insert ... --wait` in
another terminal) to see what the change cost the traffic. The exit code is 0 whenever the
probe ran, whatever it counted; a probe that cannot run (a missing namespace, a worker that
failed) is one sentence and exit 1 through cli/main.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from edgecloud.cli.output import emit, json_option
from edgecloud.errors import DriverError
from edgecloud.probe import DEFAULT_PORT, ProbeResult, probe_in_namespaces
from edgecloud.probe.running import MAX_RATE_PPS


def result_table(result: ProbeResult) -> dict[str, Any]:
    """The numbers a person reads, in the order they matter."""
    stats = result.stats
    return {
        "sent": stats.sent,
        "received": stats.received,
        "lost": f"{stats.lost} ({stats.loss_pct:.2f}%)",
        "reordered": stats.reordered,
        "duplicated": stats.duplicated,
        "longest gap (ms)": f"{stats.longest_gap_ms:.1f}",
        "achieved rate (pps)": f"{result.achieved_pps:.0f} of {result.rate_pps}",
    }


@click.command("probe")
@click.option("--from-ns", "src_ns", metavar="NS", help="Sender's namespace [default: this one].")
@click.option("--to-ns", "dst_ns", metavar="NS", help="Receiver's namespace [default: this one].")
@click.option("--to", "dst_addr", required=True, metavar="ADDR", help="Receiver's IP address.")
@click.option(
    "--rate",
    type=click.IntRange(1, MAX_RATE_PPS),
    default=1000,
    show_default=True,
    metavar="PPS",
    help="Packets per second.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, 3600, min_open=True),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to send.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="UDP port.",
)
@json_option
def probe(
    src_ns: str | None,
    dst_ns: str | None,
    dst_addr: str,
    rate: int,
    duration: float,
    port: int,
    as_json: bool,
) -> None:
    """Count the loss, reordering and longest gap of a UDP stream from one namespace to another."""
    try:
        result = asyncio.run(probe_in_namespaces(src_ns, dst_ns, dst_addr, rate, duration, port))
    except OSError as exc:  # `ip` or the interpreter could not be started
        raise DriverError(f"cannot start the probe ({exc.strerror or exc})") from exc
    emit(result.as_dict() if as_json else result_table(result), as_json)


def register(cli: click.Group) -> None:
    cli.add_command(probe)
