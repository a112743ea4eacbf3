"""`edgecloud capacity`'s own logic: node-count steps, the SLO verdict per row, and writing the
table between its markers without touching the rest of docs/capacity.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from edgecloud.cli.sim import BEGIN, END, _capacity_row, _node_counts, _write_capacity

MACHINE = {"cores": 2, "cpu": "x86_64", "memory_gib": 23.5, "os": "Linux", "python": "3.11"}


def result(p99: float = 0.1, recovery: float | None = 20.0, **extra: Any) -> dict[str, Any]:
    return {"api": {"p99_s": p99}, "recovery_s": recovery, **extra}


def test_node_counts_must_increase() -> None:
    assert _node_counts("1000, 2500,5000") == [1000, 2500, 5000]
    for bad in ("5000,1000", "a,b", "", "0", "30000"):
        with pytest.raises(click.BadParameter):
            _node_counts(bad)


def test_each_slo_breaks_the_row() -> None:
    assert _capacity_row(10, result(), result())["slo_broken"] == ""
    assert _capacity_row(10, result(p99=1.2), result())["slo_broken"] == "API p99"
    assert _capacity_row(10, result(), result(p99=1.5))["slo_broken"] == "API p99"
    late = _capacity_row(10, result(hb_late=3), result())
    assert late["slo_broken"] == "heartbeats late"
    assert _capacity_row(10, result(), result(recovery=61))["slo_broken"] == "storm recovery"
    assert _capacity_row(10, result(), result(recovery=None))["slo_broken"] == "storm recovery"
    stuck = _capacity_row(10, result(), result(manual_interventions=2))
    assert stuck["slo_broken"] == "manual interventions" and stuck["interventions"] == 2


def test_table_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text(f"# Capacity\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\nkept\n")
    rows = [
        _capacity_row(1000, result(), result()),
        _capacity_row(2000, result(p99=2.0), result()),
    ]
    _write_capacity(doc, rows, MACHINE, 10.0, "edgecloud capacity", "2026-11-25 10:00 UTC")
    text = doc.read_text()
    assert "old table" not in text and "intro" in text and "## Analysis\nkept" in text
    assert "| 1,000 |" in text and "| 2,000 |" in text
    assert "2,000 nodes broke: API p99; the capacity is the row above it." in text
    _write_capacity(doc, rows[:1], MACHINE, 10.0, "edgecloud capacity", "later")
    assert doc.read_text().count(BEGIN) == 1 and "| 2,000 |" not in doc.read_text()


def test_table_is_appended_when_there_are_no_markers(tmp_path: Path) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text("# Capacity\n\nhand-written\n")
    _write_capacity(doc, [_capacity_row(5, result(), result())], MACHINE, 10.0, "c", "now")
    text = doc.read_text()
    assert text.startswith("# Capacity\n\nhand-written\n\n" + BEGIN)
    assert "no SLO broke up to 5 nodes" in text
