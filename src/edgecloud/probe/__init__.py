"""edgecloud.probe: does a service-chain change lose packets? A UDP traffic probe.

A paced sender stamps each datagram with a run id and a sequence number; the receiver
counts loss, reordering, duplicates and the longest silence between arrivals.

    packets  the wire format and ProbeStats, the pure accounting (no I/O, no clock)
    running  send / receive on asyncio UDP endpoints; probe_in_namespaces runs both ends
             as worker subprocesses under ``ip netns exec``
    worker   ``python -m edgecloud.probe.worker send|receive`` (one JSON line out)

Typical use, concurrently with the change being measured (see running.py)::

    result = await probe_in_namespaces("ns-a", "ns-b", "10.0.0.2", rate_pps=2000, duration_s=3)
    print(result.summary())
"""

from edgecloud.probe.packets import (
    PACKET_SIZE,
    ProbePacket,
    ProbeStats,
    StatsReport,
    pack,
    unpack,
)
from edgecloud.probe.running import (
    DEFAULT_PORT,
    ProbeResult,
    probe_in_namespaces,
    receive,
    send,
)

__all__ = [
    "DEFAULT_PORT",
    "PACKET_SIZE",
    "ProbePacket",
    "ProbeResult",
    "ProbeStats",
    "StatsReport",
    "pack",
    "probe_in_namespaces",
    "receive",
    "send",
    "unpack",
]
