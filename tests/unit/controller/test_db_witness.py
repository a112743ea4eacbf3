"""Alarm 100.010's reason from the monitor's node states (controller/db_witness.py): none
when both nodes are healthy and settled; the monitor gone, a node unreachable or moving, each
named in the one sentence the alarm carries."""

from __future__ import annotations

import asyncio
import socket

from edgecloud.controller.db_witness import node_states, verdict


def test_a_healthy_pair_raises_nothing() -> None:
    assert verdict([("n1", "primary", "primary", 1), ("n2", "secondary", "secondary", 1)]) is None


def test_the_monitor_gone_is_said() -> None:
    reason = verdict(None)
    assert reason is not None and "monitor (witness) is unreachable" in reason


def test_a_lost_secondary_leaves_the_primary_alone() -> None:
    reason = verdict(
        [("n1", "wait_primary", "wait_primary", 1), ("n2", "secondary", "catchingup", 0)]
    )
    assert reason == (
        "the database cannot fail over: n2 is unreachable (secondary); "
        "n1 takes writes without a replica"
    )


def test_a_node_in_transition_is_named() -> None:
    reason = verdict([("n1", "primary", "draining", 1), ("n2", "secondary", "secondary", 1)])
    assert reason is not None and "n1 is primary, going draining" in reason


def test_a_monitor_that_does_not_listen_gives_none() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"postgres://autoctl_node@127.0.0.1:{port}/pg_auto_failover?sslmode=disable"
    assert asyncio.run(node_states(uri)) is None
