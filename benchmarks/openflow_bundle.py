"""Benchmark: one chain steering bundle over the agent's OpenFlow connection vs ovs-ofctl.

On a per-run bridge with two internal ports, commits N bundles of the 3 lines a path switch
sends (one delete_strict, two adds with new cookies) each way, alternating: over one
persistent OpenFlow 1.4 connection (drivers/network/openflow.py, as the OVS driver does) and
with one ``ovs-ofctl --bundle add-flows`` process per bundle (the fallback). Prints the
median, min and max of each; writes nothing.

    .venv/bin/python benchmarks/openflow_bundle.py [--count 20]   (as root)
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import time

from sites import bridge

from edgecloud.drivers.network.openflow import BundleConnection, socket_path
from edgecloud.drivers.network.ovs import STEERING_COOKIE_BASE


def lines(br: str, i: int) -> list[str]:
    return [
        f"delete_strict priority=300,in_port={br}a",
        f"add cookie={STEERING_COOKIE_BASE | i:#x},priority=300,in_port={br}a,actions=output:{br}b",
        f"add cookie={STEERING_COOKIE_BASE | i << 8:#x},priority=300,in_port={br}b,"
        f"actions=output:{br}a",
    ]


async def measure(br: str, count: int) -> tuple[list[float], list[float]]:
    connection = BundleConnection(socket_path(br), 10.0)
    over_openflow: list[float] = []
    with_ofctl: list[float] = []
    try:
        await connection.commit(lines(br, 0))  # connect first: a node keeps it open
        for i in range(1, count + 1):
            started = time.perf_counter()
            await connection.commit(lines(br, i))
            over_openflow.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", br, "-",
                stdin=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await proc.communicate(("\n".join(lines(br, count + i)) + "\n").encode())
            with_ofctl.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return over_openflow, with_ofctl


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.1f} ms (min {min(ms):.1f}, max {max(ms):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    with bridge(f"ecf{secrets.token_hex(3)}") as br:
        subprocess.run(
            ["ovs-vsctl", "set", "bridge", br, "fail_mode=secure",
             "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15",
             "--", "add-port", br, f"{br}a", "--", "set", "interface", f"{br}a", "type=internal",
             "--", "add-port", br, f"{br}b", "--", "set", "interface", f"{br}b", "type=internal"],
            check=True,
        )  # fmt: skip
        over_openflow, with_ofctl = asyncio.run(measure(br, args.count))
    print(f"{args.count} bundles of 3 flow changes each way")
    print(f"  OpenFlow connection:   {summary(over_openflow)}")
    print(f"  ovs-ofctl --bundle:    {summary(with_ofctl)}")


if __name__ == "__main__":
    main()
