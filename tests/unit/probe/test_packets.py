"""The probe wire format (probe/packets.py): round trip and refusal of foreign datagrams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecloud.errors import InvalidInput, ProtocolError
from edgecloud.probe.packets import PACKET_SIZE, ProbePacket, pack, unpack


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_pack_and_unpack_round_trip(run_id: int, seq: int, sent_ns: int) -> None:
    data = pack(run_id, seq, sent_ns)
    assert len(data) == PACKET_SIZE == 24
    assert unpack(data) == ProbePacket(run_id=run_id, seq=seq, sent_ns=sent_ns)


def test_trailing_padding_is_allowed() -> None:
    assert unpack(pack(7, 3, 9) + b"\0" * 100).seq == 3


@pytest.mark.parametrize("data", [b"", b"ECPR", b"XXXX" + bytes(20)])
def test_foreign_datagrams_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        unpack(data)


def test_a_run_id_out_of_range_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        pack(2**32, 0, 0)
