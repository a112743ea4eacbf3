"""When a controller may answer its agents' heartbeats (controller/vouching.py): by its last
durable heartbeat, or by the witness while the store does not answer."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.controller.vouching import Vouching, grace_for, refresh_every, witness_vouches


def test_it_vouches_for_grace_after_the_start_of_its_last_committed_heartbeat() -> None:
    v = Vouching(grace=0.5, witness_valid=0.4)
    assert not v.vouches(0.0)  # nothing committed yet
    assert v.stored(began=10.0, now=10.1)  # the first one ends the (initial) lapse
    assert v.vouches(10.5) and not v.vouches(10.51)
    assert not v.stored(began=10.25, now=10.3)  # in time: no lapse
    assert v.vouches(10.75) and not v.vouches(10.76)


def test_a_commit_after_a_lapse_says_so_and_counts_from_its_start() -> None:
    v = Vouching(grace=0.5)
    v.stored(began=0.0, now=0.01)
    # a commit held for 3 s by a dropped link: it ends a lapse, but its start is old
    assert v.stored(began=0.25, now=3.25)
    assert not v.vouches(3.25)
    assert v.stored(began=3.3, now=3.32)  # still lapsed until a fresh one: restamp again
    assert v.vouches(3.5)
    assert not v.stored(began=3.55, now=3.6)
    assert v.lapses == 2  # the first commit ends no lapse


def test_the_witness_vouches_only_while_its_answer_is_fresh_and_a_no_ends_it() -> None:
    v = Vouching(grace=0.5, witness_valid=0.4)
    v.stored(began=0.0, now=0.01)
    assert not v.vouches(1.0)
    v.witnessed(asked=0.9, vouches=True)
    assert v.vouches(1.3) and not v.vouches(1.31)
    v.witnessed(asked=1.1, vouches=True)
    v.witnessed(asked=1.2, vouches=False)  # a later answer says no: at once
    assert not v.vouches(1.25)


def test_overdue_means_a_heartbeat_is_late() -> None:
    v = Vouching(grace=0.5)
    v.stored(began=1.0, now=1.05)
    assert not v.overdue(1.25, every=0.25) and v.overdue(1.26, every=0.25)


def _row(name: str, reported: str, health: int, assigned: str | None = None) -> tuple[Any, ...]:
    return (name, reported, assigned or reported, health, "127.0.0.1", 5432)


@pytest.mark.parametrize(
    ("rows", "streaming", "vouches"),
    [
        (None, False, False),  # the monitor did not answer
        ([], False, False),
        # n1 (the primary, synchronous) died, was cut off or restarts; n2 receives no WAL
        ([_row("n1", "primary", 0), _row("n2", "secondary", 1)], False, True),
        ([_row("n1", "primary", 1), _row("n2", "secondary", 1)], False, True),
        ([_row("n1", "demoted", 0), _row("n2", "wait_primary", 1)], False, True),
        # n2 still streams from n1: n1 commits, a leader there may judge (this controller
        # alone is cut off from it)
        ([_row("n1", "primary", 1), _row("n2", "secondary", 1)], True, False),
        # n2's own database node did not answer
        ([_row("n1", "primary", 0), _row("n2", "secondary", 1)], None, False),
        # n1 commits without n2 (assigned or in a state without a standby), even unreachable
        ([_row("n1", "wait_primary", 1), _row("n2", "secondary", 0)], False, False),
        ([_row("n1", "primary", 0, "wait_primary"), _row("n2", "secondary", 1)], False, False),
        ([_row("n1", "single", 0), _row("n2", "secondary", 1)], False, False),
        # the monitor does not reach n2 (it may let n1 go on alone), or n2 is not registered
        ([_row("n1", "primary", 0), _row("n2", "secondary", 0)], False, False),
        ([_row("n1", "primary", 0)], False, False),
    ],
)
def test_the_witness_vouches_when_no_other_node_can_commit(
    rows: list[tuple[Any, ...]] | None, streaming: bool | None, vouches: bool
) -> None:
    assert witness_vouches(rows, "n2", streaming) is vouches


def test_grace_covers_two_refreshes() -> None:
    assert refresh_every(0.5) == 0.25 and grace_for(0.5) == 0.5
    assert refresh_every(10.0) == 1.0 and grace_for(10.0) == 2.0


def test_the_basis_says_store_first_then_witness() -> None:
    v = Vouching(grace=0.5, witness_valid=0.4)
    v.stored(began=0.0, now=0.01)
    v.witnessed(asked=0.3, vouches=True)
    assert v.basis(0.4) == "store"
    assert v.basis(0.6) == "witness"
    assert v.basis(0.75) is None
