"""The sites scenario's pure parts: the fake site behind the real link, the bulk enrollment
at central (cached), central's store counts, the table's order (sim/site_*.py, cli/sim_sites.py)."""

from __future__ import annotations

from pathlib import Path

from edgecloud.cli.sim_sites import side_by_side
from edgecloud.controller import central_identity
from edgecloud.protocol import central as wire
from edgecloud.sim import reporting, site_identities
from edgecloud.sim.central_process import store_counts
from edgecloud.sim.fake_sites import FakeSite


async def test_a_fake_site_reports_its_size_and_applies_everything() -> None:
    site = FakeSite(hosts=3, vnfs=5)
    report = await site.summary()
    assert report.inventory.hosts == report.inventory.hosts_online == 3
    assert report.inventory.vnfs_running == 5
    assert await site.summary() is report  # unchanged: the link sends no report
    spec = wire.DeploymentSpec(name="svc", template="heat_template_version: 2018-08-31\n")
    applied = await site.apply(wire.SiteDesired(version=7, deployments=[spec]))
    assert applied.version == 7 and applied.results["svc"].status == "in-sync"
    assert (site.applied, site.applies) == (7, 1)


async def test_sites_are_enrolled_at_central_once(tmp_path: Path) -> None:
    central, sites = tmp_path / "central", tmp_path / "sites"
    folders = await site_identities.ensure_sites(central, sites, 3)
    assert [f.name for f in folders] == ["site-00000", "site-00001", "site-00002"]
    certs = [(f / "site.crt").read_bytes() for f in folders]
    counts = store_counts(central)
    assert counts["sites"] == 3 and counts["online"] == 0 and counts["in_sync"] == 3
    done: list[int] = []
    await site_identities.ensure_sites(central, sites, 3, done.append)
    assert done == [] and [(f / "site.crt").read_bytes() for f in folders] == certs
    site_identities.point_at(folders, "127.0.0.1:9999")
    who = central_identity.load(folders[1])
    assert who is not None and (who.site, who.address) == ("site-00001", "127.0.0.1:9999")
    assert (folders[1] / "site.key").stat().st_mode & 0o077 == 0


def test_each_phase_on_then_off() -> None:
    rows = [
        {"phase": p, "protection": on, "sites": 10, "in_sync_s": 1.0}
        for on in (True, False)
        for p in ("cold start", "steady", "storm", "deploy")
    ]
    ordered = [(r["phase"], r["protection"]) for r in side_by_side(rows)]
    assert ordered[:4] == [("cold start", True), ("cold start", False), ("steady", True),
                           ("steady", False)]  # fmt: skip
    text = reporting.table(side_by_side(rows), reporting.SITE_COLUMNS)
    assert text.splitlines()[0] == "| phase | protection | sites | all in sync (s) |"
    assert "| storm | off | 10 | 1.000 |" in text


async def test_a_smaller_run_groups_only_its_own_sites(tmp_path: Path) -> None:
    central, sites = tmp_path / "central", tmp_path / "sites"
    await site_identities.ensure_sites(central, sites, 3)
    await site_identities.ensure_sites(central, sites, 2)
    assert store_counts(central)["sites"] == 2
