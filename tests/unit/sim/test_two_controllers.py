"""The simulator's two-controller parts: nodes split between the gateways (each knowing every
one), two controllers' samples added up, and --controllers needing a PostgreSQL --db."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgecloud.cli.sim import capacity
from edgecloud.sim.fleet import combine
from edgecloud.sim.identities import point_at


def test_nodes_are_split_between_the_gateways_and_know_both(tmp_path: Path) -> None:
    dirs = []
    for i in range(4):
        node = tmp_path / f"n{i}"
        node.mkdir()
        (node / "agent.json").write_text(json.dumps({"host": f"n{i}", "controller": "old:1"}))
        dirs.append(node)
    point_at(dirs, ["a:1", "b:2"])
    got = [json.loads((d / "agent.json").read_text()) for d in dirs]
    assert [g["controller"] for g in got] == ["a:1", "b:2", "a:1", "b:2"]
    assert [g["controllers"] for g in got] == [["a:1", "b:2"], ["b:2", "a:1"]] * 2
    point_at(dirs, ["c:3"])  # one controller again: the record as before
    assert json.loads((dirs[1] / "agent.json").read_text()) == {"host": "n1", "controller": "c:3"}


def test_two_controllers_samples_add_up() -> None:
    one = {
        "cpu_pct": 40.0,
        "cpu_s": 1.0,
        "rss_mib": 100.0,
        "gw": {
            "time": 10.0,
            "started": 1.0,
            "sessions": 3,
            "heartbeats": 5,
            "hb_lag_max_recent": 0.2,
            "mass_loss": False,
            "image_transfers": {"active": 0},
        },
    }
    two = {
        "cpu_pct": 20.0,
        "cpu_s": 2.0,
        "rss_mib": 50.0,
        "gw": {
            "time": 9.0,
            "started": 2.0,
            "sessions": 4,
            "heartbeats": 7,
            "hb_lag_max_recent": 0.5,
            "mass_loss": True,
            "image_transfers": {"active": 1},
        },
    }
    both = combine([one, two])
    assert (both["cpu_pct"], both["rss_mib"], both["cpu_pct_each"]) == (60.0, 150.0, [40.0, 20.0])
    gw = both["gw"]
    assert (gw["sessions"], gw["heartbeats"], gw["sessions_each"]) == (7, 12, [3, 4])
    assert (gw["time"], gw["started"], gw["hb_lag_max_recent"], gw["mass_loss"]) == (
        9.0,
        2.0,
        0.5,
        True,
    )
    assert combine([one]) is one  # one controller: its sample as it is


def test_several_controllers_need_a_postgresql_store(tmp_path: Path) -> None:
    for extra in ([], ["--db", "sqlite+aiosqlite:///x.db"]):
        result = CliRunner().invoke(
            capacity, ["--controllers", "2", "--nodes", "10", "--state-dir", str(tmp_path), *extra]
        )
        assert result.exit_code == 2, result.output
        assert "several controllers share one PostgreSQL store" in result.output
