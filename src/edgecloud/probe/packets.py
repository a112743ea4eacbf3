"""Probe packets on the wire and the receiver's pure accounting of them.

Role: the data layer of the traffic probe. ``pack``/``unpack`` define the datagram a sender
(running.py) emits; ``ProbeStats`` is the accumulator the receiver feeds with
``(seq, arrival time, send time)`` in arrival order; ``StatsReport`` is its frozen, JSON-ready result,
which the worker (worker.py) prints and ``probe_in_namespaces`` (running.py) reads back.
No I/O and no clock here: times are whatever the caller passes (``time.monotonic()``
seconds in practice), so tests can feed exact synthetic sequences.

Wire format (network byte order, 24 bytes)::

    magic  4s  b"ECPR"
    run id u32 ties a packet to one probe run; other runs' packets are ignored
    seq    u64 0, 1, 2, ... in send order
    sent   u64 sender's time.monotonic_ns() (one clock for every netns on a host)
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from dataclasses import asdict, dataclass, fields
from typing import Any

from edgecloud.errors import InvalidInput, ProtocolError

MAGIC = b"ECPR"
HEADER = struct.Struct("!4sIQQ")
PACKET_SIZE = HEADER.size
MAX_RUN_ID = 2**32 - 1
DEFAULT_MAX_SEQ = 2**26  # 8 MiB of bitmap: 67M packets, about 2 h at 10,000 pps


@dataclass(frozen=True)
class ProbePacket:
    """One decoded probe datagram."""

    run_id: int
    seq: int
    sent_ns: int


def pack(run_id: int, seq: int, sent_ns: int) -> bytes:
    """The datagram for packet ``seq`` of run ``run_id`` sent at ``sent_ns``."""
    try:
        return HEADER.pack(MAGIC, run_id, seq, sent_ns)
    except struct.error as exc:
        raise InvalidInput(f"probe packet field out of range: {exc}", field="run_id") from exc


def unpack(data: bytes) -> ProbePacket:
    """Decode a datagram; ProtocolError when it is not a probe packet."""
    if len(data) < PACKET_SIZE:
        raise ProtocolError(f"probe packet too short: {len(data)} < {PACKET_SIZE} bytes")
    magic, run_id, seq, sent_ns = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"not a probe packet (magic {magic!r})")
    return ProbePacket(run_id=run_id, seq=seq, sent_ns=sent_ns)


@dataclass(frozen=True)
class StatsReport:
    """What a probe run saw; times are the caller's clock (monotonic seconds), gaps in ms.

    ``received`` counts distinct sequence numbers, so ``received + lost == sent`` whenever
    every arriving seq is below ``sent``. A duplicate counts only as ``duplicated`` (never as
    reordered). ``longest_gap_*`` describe the longest silence between two consecutive
    arrivals: it ran from ``longest_gap_at_s`` (arrival of seq ``longest_gap_after_seq``) to
    the arrival of seq ``longest_gap_before_seq``; ``longest_gap_sent_*_s`` are when the sender
    sent those two (None when the caller gave no send times): on one clock with the arrivals,
    they split the gap into the sender's own pause and the path's delay of each packet.
    ``last_loss_*`` is the highest run of
    never-received seqs and when the receiver noticed it: the arrival that jumped past it, or
    the last arrival for a loss at the tail of the run.
    """

    sent: int
    received: int
    lost: int
    loss_pct: float
    reordered: int
    duplicated: int
    arrivals: int
    out_of_range: int
    first_arrival_s: float | None
    last_arrival_s: float | None
    longest_gap_ms: float
    longest_gap_at_s: float | None
    longest_gap_after_seq: int | None
    longest_gap_before_seq: int | None
    last_loss_first_seq: int | None
    last_loss_last_seq: int | None
    last_loss_at_s: float | None
    longest_gap_sent_after_s: float | None = None
    longest_gap_sent_before_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatsReport:
        """Inverse of as_dict; InvalidInput names a missing field."""
        names = [f.name for f in fields(cls)]
        optional = {"longest_gap_sent_after_s", "longest_gap_sent_before_s"}
        missing = [name for name in names if name not in data and name not in optional]
        if missing:
            raise InvalidInput(f"probe stats lack {', '.join(missing)}", field=missing[0])
        return cls(**{name: data[name] for name in names if name in data})

    def summary(self) -> str:
        """One line for a terminal or a log."""
        line = (
            f"sent {self.sent} received {self.received} lost {self.lost} "
            f"({self.loss_pct:.2f}%) reordered {self.reordered} duplicated {self.duplicated} "
            f"longest gap {self.longest_gap_ms:.1f} ms"
        )
        if self.longest_gap_after_seq is not None:
            line += f" (seq {self.longest_gap_after_seq}->{self.longest_gap_before_seq})"
        if self.last_loss_first_seq is not None:
            line += f"; last loss seq {self.last_loss_first_seq}-{self.last_loss_last_seq}"
        return line


# seconds, at, after seq, before seq, after's send time, before's send time
_Gap = tuple[float, float | None, int | None, int | None, float | None, float | None]


class _SeenBitmap:
    """One bit per sequence number below ``limit``, grown by doubling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._bits = bytearray(1024)

    def test_and_set(self, seq: int) -> bool:
        """Mark seq as seen; True when it had been seen before."""
        byte, bit = seq >> 3, 1 << (seq & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(len(self._bits), byte + 1 - len(self._bits))))
        seen = bool(self._bits[byte] & bit)
        self._bits[byte] |= bit
        return seen

    def has(self, seq: int) -> bool:
        byte = seq >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (seq & 7)))

    def highest_missing_below(self, end: int) -> int | None:
        """The highest seq in [0, end) not seen, or None; skips full bytes quickly."""
        seq = end - 1
        while seq >= 0:
            byte = seq >> 3
            if (seq & 7) == 7 and byte < len(self._bits) and self._bits[byte] == 0xFF:
                seq -= 8
                continue
            if not self.has(seq):
                return seq
            seq -= 1
        return None

    def missing_run_start(self, last: int) -> int:
        """The first seq of the run of unseen seqs that ends at ``last``."""
        seq = last
        while seq > 0 and not self.has(seq - 1):
            byte = (seq >> 3) - 1
            if (seq & 7) == 0 and (byte >= len(self._bits) or self._bits[byte] == 0):
                seq -= 8
                continue
            seq -= 1
        return seq


class ProbeStats:
    """Accumulates arrivals, O(1) amortised per packet; ``sent`` is set once it is known.

    Memory: a bitmap of seen seqs (1 bit per packet) and, per forward jump in the sequence
    (a loss or a reordering), 16 bytes to date it. Seqs at or above ``max_seq`` are counted
    in ``out_of_range`` and otherwise ignored.
    """

    def __init__(self, sent: int = 0, max_seq: int = DEFAULT_MAX_SEQ) -> None:
        self.sent = sent
        self._seen = _SeenBitmap(max_seq)
        self.received = 0
        self.duplicated = 0
        self.reordered = 0
        self.out_of_range = 0
        self._highest = -1
        self._first_at: float | None = None
        self._last_at: float | None = None
        self._last_seq: int | None = None
        self._last_sent: float | None = None
        self._gap: _Gap = (0.0, None, None, None, None, None)
        self._jump_starts = array("q")  # first skipped seq of each forward jump, ascending
        self._jump_times = array("d")  # arrival that made the jump

    def record(self, seq: int, arrival_s: float, sent_s: float | None = None) -> None:
        """Account one arrival (``sent_s``: the packet's send time, on the arrivals' clock,
        when known); call in arrival order."""
        if seq < 0 or seq >= self._seen.limit:
            self.out_of_range += 1
            return
        self._note_gap(seq, arrival_s, sent_s)
        if self._seen.test_and_set(seq):
            self.duplicated += 1
            return
        self.received += 1
        if seq < self._highest:
            self.reordered += 1
        elif seq > self._highest:
            self._note_jump(seq, arrival_s)

    def _note_gap(self, seq: int, arrival_s: float, sent_s: float | None) -> None:
        if self._last_at is None:
            self._first_at = arrival_s
        elif arrival_s - self._last_at > self._gap[0]:
            gap = arrival_s - self._last_at
            self._gap = (gap, self._last_at, self._last_seq, seq, self._last_sent, sent_s)
        self._last_at, self._last_seq, self._last_sent = arrival_s, seq, sent_s

    def _note_jump(self, seq: int, arrival_s: float) -> None:
        if seq > self._highest + 1:
            self._jump_starts.append(self._highest + 1)
            self._jump_times.append(arrival_s)
        self._highest = seq

    @property
    def arrivals(self) -> int:
        """Every recorded datagram in range, duplicates included."""
        return self.received + self.duplicated

    @property
    def lost(self) -> int:
        return max(self.sent - self.received, 0)

    def report(self) -> StatsReport:
        """A frozen snapshot; finds the last loss burst with one scan of the bitmap."""
        gap_s, gap_at, gap_after, gap_before, sent_after, sent_before = self._gap
        first, last, at = self._last_loss()
        return StatsReport(
            sent=self.sent,
            received=self.received,
            lost=self.lost,
            loss_pct=100.0 * self.lost / self.sent if self.sent else 0.0,
            reordered=self.reordered,
            duplicated=self.duplicated,
            arrivals=self.arrivals,
            out_of_range=self.out_of_range,
            first_arrival_s=self._first_at,
            last_arrival_s=self._last_at,
            longest_gap_ms=gap_s * 1000.0,
            longest_gap_at_s=gap_at,
            longest_gap_after_seq=gap_after,
            longest_gap_before_seq=gap_before,
            last_loss_first_seq=first,
            last_loss_last_seq=last,
            last_loss_at_s=at,
            longest_gap_sent_after_s=sent_after,
            longest_gap_sent_before_s=sent_before,
        )

    def _last_loss(self) -> tuple[int | None, int | None, float | None]:
        end = min(self.sent, self._seen.limit)
        last = self._seen.highest_missing_below(end)
        if last is None:
            return None, None, None
        return self._seen.missing_run_start(last), last, self._noticed_at(last)

    def _noticed_at(self, seq: int) -> float | None:
        """When the receiver first saw a seq above ``seq``: the jump that skipped it."""
        if seq > self._highest:
            return self._last_at
        index = bisect_right(self._jump_starts, seq) - 1
        return self._jump_times[index] if index >= 0 else None

    def as_dict(self) -> dict[str, Any]:
        return self.report().as_dict()

    def summary(self) -> str:
        return self.report().summary()
