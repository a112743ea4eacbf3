"""`edgecloud sim sites` end to end, small: simulated sites (the real central link, fake sites
behind it) against a real central process on loopback, protections on and then off. Every
site connects and is in sync, a storm cuts every link at once and all come back in sync, a
deployment reaches every site; results are written, and no process is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from edgecloud.cli.sim import sim

SITES = 60


@pytest.mark.timeout(240)
def test_sites_connect_weather_a_storm_and_take_a_deployment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        *("sites", "--sites", str(SITES), "--workers", "2", "--heartbeat", "1"),
        *("--duration", "2", "--timeout", "60", "--state-dir", str(tmp_path / "sim")),
        *("--out", str(out)),
    ]
    try:
        result = CliRunner().invoke(sim, args, catch_exceptions=False)
    finally:
        left = psutil.Process().children(recursive=True)
        for child in left:
            child.kill()
    assert not left, f"processes left running: {[c.pid for c in left]}"
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    phases = [(r["phase"], r["protection"]) for r in runs]
    assert phases == [
        (phase, on) for phase in ("cold start", "steady", "storm", "deploy") for on in (True, False)
    ]
    for row in runs:
        assert row["sites"] == SITES and row["manual_interventions"] == 0, row
        if row["phase"] != "steady":
            assert row["in_sync_s"] is not None, row
        else:
            assert row["all_in_sync"] and row["api"]["errors"] == 0, row
        assert row["central_rss_mib_max"] > 0 and row["central_fds_max"] >= SITES
    assert (out / "sites.png").exists()
    assert "| storm | off | 60 |" in result.output
