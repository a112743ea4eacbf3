"""The anonymous peers' figures over a window and their source addresses (sim/anonymous.py),
and the CLI's refusal of --anonymous outside the storm."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgecloud.cli.sim import sim
from edgecloud.sim import anonymous


def _row(gw: int, api: int, closed_gw: int, closed_api: int, failed: int = 0) -> dict[str, int]:
    return {
        "open_gateway": gw,
        "open_api": api,
        "closed_gateway": closed_gw,
        "closed_api": closed_api,
        "failed": failed,
        "cpu": 0,
    }


def test_window_means_and_closes_counted_inside_it() -> None:
    rows = [_row(100, 100, 50, 10), _row(90, 100, 60, 10, 2), _row(80, 98, 75, 14, 3)]
    out = anonymous.window(rows, 200)
    assert out["open_mean"] == pytest.approx((200 + 190 + 178) / 3)
    assert out["open_min"] == 178
    assert out["closed_gateway"] == 25 and out["closed_api"] == 4
    assert out["closed_by_controller"] == 29
    assert out["failed_attempts"] == 3


def test_an_empty_window_says_only_how_many() -> None:
    assert anonymous.window([], 10) == {"connections": 10}


def test_sources_apart_from_the_agents() -> None:
    assert anonymous.sources(3) == ["127.0.0.200", "127.0.0.201", "127.0.0.202"]
    with pytest.raises(ValueError):
        anonymous.sources(56)


def test_anonymous_is_a_storm_option_only() -> None:
    result = CliRunner().invoke(sim, ["steady", "--anonymous", "10"])
    assert result.exit_code == 2
    assert "storm scenario only" in result.output
