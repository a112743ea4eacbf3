"""ProbeStats (probe/packets.py): exact counts on synthetic arrivals, and properties checked
with Hypothesis against an independent oracle written from the definitions."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecloud.probe.packets import ProbeStats, StatsReport

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def feed(sent: int, arrivals: list[tuple[int, float]], **kwargs: Any) -> StatsReport:
    stats = ProbeStats(sent=sent, **kwargs)
    for seq, at in arrivals:
        stats.record(seq, at)
    return stats.report()


def evenly(seqs: list[int], step: float = 0.001) -> list[tuple[int, float]]:
    return [(seq, 100.0 + i * step) for i, seq in enumerate(seqs)]


def test_a_clean_run_has_no_loss_reorder_or_duplicate() -> None:
    report = feed(5, evenly([0, 1, 2, 3, 4]))
    assert (report.received, report.lost, report.reordered, report.duplicated) == (5, 0, 0, 0)
    assert report.last_loss_first_seq is None and report.last_loss_at_s is None
    assert report.longest_gap_ms == pytest.approx(1.0)
    assert report.first_arrival_s == 100.0 and report.last_arrival_s == pytest.approx(100.004)


def test_loss_is_sent_minus_distinct_received_and_the_last_burst_is_dated() -> None:
    arrivals = [(0, 1.0), (1, 1.1), (4, 1.2), (5, 1.3), (8, 1.4), (9, 1.5)]
    report = feed(10, arrivals)
    assert (report.received, report.lost, report.loss_pct) == (6, 4, 40.0)
    assert (report.last_loss_first_seq, report.last_loss_last_seq) == (6, 7)
    assert report.last_loss_at_s == 1.4  # seq 8 jumped over 6-7


def test_loss_at_the_tail_is_dated_by_the_last_arrival() -> None:
    report = feed(6, [(0, 1.0), (1, 1.5), (2, 2.0)])
    assert (report.last_loss_first_seq, report.last_loss_last_seq) == (3, 5)
    assert report.last_loss_at_s == 2.0


def test_loss_at_the_head_is_dated_by_the_first_arrival() -> None:
    report = feed(4, [(2, 7.0), (3, 7.1)])
    assert (report.lost, report.last_loss_first_seq, report.last_loss_last_seq) == (2, 0, 1)
    assert report.last_loss_at_s == 7.0


def test_a_late_packet_counts_as_reordered_and_fills_its_hole() -> None:
    report = feed(5, evenly([0, 2, 3, 1, 4]))
    assert (report.received, report.lost, report.reordered) == (5, 0, 1)
    assert report.last_loss_first_seq is None


def test_every_packet_below_the_highest_seen_is_reordered() -> None:
    report = feed(4, evenly([3, 2, 1, 0]))
    assert (report.reordered, report.lost) == (3, 0)


def test_duplicates_count_once_and_never_as_reordered() -> None:
    report = feed(3, evenly([0, 1, 1, 2, 0, 2]))
    assert (report.received, report.duplicated, report.reordered, report.arrivals) == (3, 3, 0, 6)
    assert report.lost == 0


def test_longest_gap_is_between_consecutive_arrivals_with_the_seqs_around_it() -> None:
    arrivals = [(0, 10.0), (1, 10.001), (2, 10.002), (7, 10.250), (8, 10.251), (3, 10.3)]
    report = feed(9, arrivals)
    assert report.longest_gap_ms == pytest.approx(248.0)
    assert (report.longest_gap_after_seq, report.longest_gap_before_seq) == (2, 7)
    assert report.longest_gap_at_s == 10.002


def test_the_longest_gap_keeps_the_send_times_of_the_packets_around_it() -> None:
    # seq 2 sent at 10.0015 arrives 0.5 ms later; seq 7 sent at 10.0065 sat 243.5 ms in a
    # queue: the gap is the sender's 5 ms plus that delay, less the first packet's
    stats = ProbeStats(sent=9)
    for seq, at, sent in [(0, 10.0, 9.9995), (1, 10.001, 10.0005), (2, 10.002, 10.0015),
                          (7, 10.250, 10.0065), (8, 10.251, 10.0075)]:  # fmt: skip
        stats.record(seq, at, sent)
    report = stats.report()
    assert (report.longest_gap_sent_after_s, report.longest_gap_sent_before_s) == (
        10.0015,
        10.0065,
    )
    sender = report.longest_gap_sent_before_s - report.longest_gap_sent_after_s
    delays = (10.250 - 10.0065) - (10.002 - 10.0015)
    assert report.longest_gap_ms == pytest.approx((sender + delays) * 1000.0)
    assert StatsReport.from_dict(report.as_dict()) == report


def test_without_send_times_the_gap_has_none_and_old_reports_still_read() -> None:
    report = feed(3, evenly([0, 2]))
    assert (report.longest_gap_sent_after_s, report.longest_gap_sent_before_s) == (None, None)
    older = {k: v for k, v in report.as_dict().items() if not k.startswith("longest_gap_sent")}
    assert StatsReport.from_dict(older) == report


def test_no_arrivals_means_everything_lost_and_no_times() -> None:
    report = feed(3, [])
    assert (report.received, report.lost, report.longest_gap_ms) == (0, 3, 0.0)
    assert (report.first_arrival_s, report.last_loss_first_seq, report.last_loss_at_s) == (
        None,
        0,
        None,
    )


def test_seqs_beyond_the_bitmap_are_out_of_range_not_received() -> None:
    report = feed(4, evenly([0, 1, 2, 3, 50, -1]), max_seq=16)
    assert (report.received, report.out_of_range, report.lost) == (4, 2, 0)


def test_a_long_loss_run_is_found_across_many_bitmap_bytes() -> None:
    sent = 100_000
    arrivals = evenly([*range(10), *range(90_000, sent)])
    report = feed(sent, arrivals)
    assert report.lost == 89_990
    assert (report.last_loss_first_seq, report.last_loss_last_seq) == (10, 89_999)


def test_report_survives_a_json_round_trip() -> None:
    report = feed(10, evenly([0, 1, 3, 2, 2, 9]))
    assert StatsReport.from_dict(report.as_dict()) == report
    assert "lost 5 (50.00%)" in report.summary() and "reordered 1" in report.summary()


# --- properties ---------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, list[tuple[int, float]]]:
    """A sent count and an arrival sequence: any drop, duplicate and permutation of seqs."""
    sent = draw(st.integers(0, 200))
    keep = draw(st.lists(st.booleans(), min_size=sent, max_size=sent))
    kept = [seq for seq, wanted in zip(range(sent), keep, strict=True) if wanted]
    dups = draw(st.lists(st.sampled_from(kept), max_size=20)) if kept else []
    seqs = draw(st.permutations(kept + dups))
    gaps = draw(st.lists(st.integers(0, 1000), min_size=len(seqs), max_size=len(seqs)))
    times, now = [], 50.0
    for gap in gaps:
        now += gap / 1000.0
        times.append(now)
    return sent, list(zip(seqs, times, strict=True))


def oracle(sent: int, arrivals: list[tuple[int, float]]) -> dict[str, Any]:
    """The definitions, computed the slow and obvious way."""
    seqs = [seq for seq, _ in arrivals]
    seen: set[int] = set()
    reordered = 0
    for seq in seqs:
        if seq not in seen and seen and seq < max(seen):
            reordered += 1
        seen.add(seq)
    missing = sorted(set(range(sent)) - seen)
    expected: dict[str, Any] = {
        "received": len(seen),
        "lost": sent - len(seen),
        "duplicated": len(seqs) - len(seen),
        "reordered": reordered,
        "last_loss_last_seq": missing[-1] if missing else None,
    }
    if missing:
        first = missing[-1]
        while first - 1 in missing:
            first -= 1
        expected["last_loss_first_seq"] = first
        later = [at for seq, at in arrivals if seq > missing[-1]]
        expected["last_loss_at_s"] = later[0] if later else (arrivals[-1][1] if arrivals else None)
    return expected


def longest_gap(arrivals: list[tuple[int, float]]) -> tuple[float, int | None, int | None]:
    best: tuple[float, int | None, int | None] = (0.0, None, None)
    for (seq_a, at_a), (seq_b, at_b) in pairwise(arrivals):
        if at_b - at_a > best[0]:
            best = (at_b - at_a, seq_a, seq_b)
    return best


@PROPERTY_SETTINGS
@given(runs())
def test_counts_agree_with_the_definitions(run: tuple[int, list[tuple[int, float]]]) -> None:
    sent, arrivals = run
    report = feed(sent, arrivals).as_dict()
    expected = oracle(sent, arrivals)
    assert {key: report[key] for key in expected} == expected


@PROPERTY_SETTINGS
@given(runs())
def test_counts_are_consistent(run: tuple[int, list[tuple[int, float]]]) -> None:
    sent, arrivals = run
    report = feed(sent, arrivals)
    assert report.received + report.lost == sent
    assert report.received + report.duplicated == report.arrivals == len(arrivals)
    assert 0 <= report.reordered <= max(report.received - 1, 0)
    assert (report.lost == 0) == (report.last_loss_first_seq is None)


@PROPERTY_SETTINGS
@given(runs())
def test_longest_gap_is_the_widest_pair_of_consecutive_arrivals(
    run: tuple[int, list[tuple[int, float]]],
) -> None:
    _, arrivals = run
    report = feed(len(arrivals), arrivals)
    gap_s, after, before = longest_gap(arrivals)
    assert report.longest_gap_ms == pytest.approx(gap_s * 1000.0)
    assert (report.longest_gap_after_seq, report.longest_gap_before_seq) == (after, before)
