"""The replicated database's ports come from below the kernel's ephemeral range
(allinone/replicated_db.py ``_free_ports``): an ephemeral port can be taken by an outgoing
connection before PostgreSQL binds it, which then listens on no IPv4 address."""

from __future__ import annotations

import socket

from edgecloud.allinone import replicated_db


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    low = replicated_db._ephemeral_low()
    ports = replicated_db._free_ports(3)
    assert len(set(ports)) == 3
    assert all(replicated_db.PORTS_FROM <= p < low for p in ports), (ports, low)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free indeed


def test_a_port_in_use_is_not_bindable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert not replicated_db._bindable(taken.getsockname()[1])
