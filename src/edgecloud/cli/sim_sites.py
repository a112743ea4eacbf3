"""`edgecloud sim sites`: thousands of simulated site controllers against one real central.

Called by cli/sim.py for the ``sites`` scenario (sim/site_scenarios.py: cold start, steady,
a WAN-restore storm, a deployment to every site). With ``--compare`` (the default) the whole
run is done twice, central's protections on and then off, and the table shows each phase's
two rows side by side. Writes results.json, results.md and sites.png (the storm) to --out.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

PHASES = ("cold start", "steady", "storm", "deploy")


async def _run(runs: list[Any]) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.live import Live

    from edgecloud.sim.site_scenarios import run_sites

    console = Console(stderr=True)
    results: list[dict[str, Any]] = []
    # SIGTERM as Ctrl-C: the run is cancelled and stops central and the workers it started
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    with Live(console=console, refresh_per_second=4) as live:
        for options in runs:
            label = f"[sites, protection {'on' if options.protection else 'off'}] "
            started = time.monotonic()

            def progress(text: str, label: str = label, started: float = started) -> None:
                live.update(f"{label}{text} (total {time.monotonic() - started:.0f} s)")

            results += await run_sites(options, progress)
            console.print(f"{label}done")
    return results


def side_by_side(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ordered by phase, protections on before off within a phase."""
    order = {phase: i for i, phase in enumerate(PHASES)}
    return sorted(results, key=lambda r: (order.get(r["phase"], 99), not r["protection"]))


def run(
    sites: int,
    heartbeat: float,
    duration: float,
    timeout: float,
    workers: int | None,
    protection: bool,
    compare: bool,
    state_dir: Path,
    out: Path,
) -> None:
    from edgecloud.sim import reporting
    from edgecloud.sim.site_scenarios import SitesOptions

    first = SitesOptions(
        state_dir=state_dir / "sites",
        sites=sites,
        protection=protection,
        heartbeat=heartbeat,
        workers=workers or 2,
        duration=duration,
        timeout=timeout,
    )
    runs = [first, replace(first, protection=not protection)] if compare else [first]
    results = side_by_side(asyncio.run(_run(runs)))
    command = "edgecloud " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reporting.write(out, results, command, reporting.SITE_COLUMNS)
    click.echo(reporting.table(results, reporting.SITE_COLUMNS))
    click.echo(f"results in {out}/ (results.json, results.md, sites.png)")
