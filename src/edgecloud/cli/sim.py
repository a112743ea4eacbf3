"""`edgecloud sim SCENARIO` and `edgecloud capacity`: the scale and storm simulator.

`sim` runs N simulated nodes (real agents, fake driver, own certificates, own mTLS
connections) against a real controller process on loopback (sim/), shows progress, and writes
results.json, results.md and PNG plots. `sim storm` runs with protections on and then off
(`--compare`, the default) so both are reported side by side. `capacity` steps N up until an
SLO breaks and writes the table to docs/capacity.md.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

SLO_API_P99 = 1.0
SLO_STORM_RECOVERY = 60.0


def _options(**kw: Any) -> Any:
    from edgecloud.sim.scenarios import SimOptions

    return SimOptions(**kw)


async def _run(scenario: str, runs: list[Any], quiet: bool) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.live import Live

    from edgecloud.sim.scenarios import SCENARIOS

    console = Console(stderr=True)
    results = []
    with Live(console=console, refresh_per_second=4, transient=quiet) as live:
        for options in runs:
            label = f"[{scenario}, protection {'on' if options.protection else 'off'}] "
            started = time.monotonic()

            def progress(text: str, label: str = label, started: float = started) -> None:
                live.update(f"{label}{text} (total {time.monotonic() - started:.0f} s)")

            result = await SCENARIOS[scenario](options, progress)
            result["scenario"] = scenario
            results.append(result)
            console.print(f"{label}done")
    return results


@click.command("sim")
@click.argument("scenario", type=click.Choice(["steady", "launch", "storm", "dor"]))
@click.option("--nodes", type=click.IntRange(1, 20000), default=100, show_default=True)
@click.option("--vnfs", type=click.IntRange(0), default=0, help="VNFs (launch, dor).")
@click.option("--heartbeat", type=float, default=10.0, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True, help="Steady duration.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
@click.option("--workers", type=click.IntRange(1), help="[default: one per 2,500 nodes, >= 2]")
@click.option("--sources", type=click.IntRange(1, 250), help="127.0.0.x source addresses.")
@click.option(
    "--protection/--no-protection", default=True, help="Controller and agent protections."
)
@click.option(
    "--max-handshakes", type=click.IntRange(1), help="Controller's TLS handshakes in flight."
)
@click.option(
    "--compare/--no-compare", default=None, help="Also run without protections [storm: yes]."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sim"),
    show_default=True,
    help="Simulator state (controller, enrolled nodes: cached between runs).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/sim")
)
def sim(
    scenario: str,
    nodes: int,
    vnfs: int,
    heartbeat: float,
    duration: float,
    timeout: float,
    workers: int | None,
    sources: int | None,
    protection: bool,
    max_handshakes: int | None,
    compare: bool | None,
    state_dir: Path,
    out: Path,
) -> None:
    """Run SCENARIO (steady, launch, storm, dor) with N simulated nodes."""
    from edgecloud.sim import reporting

    if scenario in ("launch", "dor") and vnfs == 0:
        vnfs = max(1, nodes * 2)
    base = dict(
        state_dir=state_dir,
        nodes=nodes,
        heartbeat=heartbeat,
        workers=workers or max(2, math.ceil(nodes / 2500)),
        sources=sources or max(1, math.ceil(nodes / 20000 * 2) + 1),
        duration=duration,
        timeout=timeout,
        vnfs=vnfs,
        max_handshakes=max_handshakes,
    )
    runs = [_options(**base, protection=protection)]
    if compare if compare is not None else scenario == "storm":
        runs.append(_options(**base, protection=not protection))
    results = asyncio.run(_run(scenario, runs, quiet=False))
    command = "edgecloud " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reporting.write(out, results, command)
    click.echo(reporting.table(results))
    click.echo(f"results in {out}/ (results.json, results.md, {scenario}.png)")


@click.command("capacity")
@click.option("--start", "first", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--step", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--max-nodes", type=click.IntRange(1, 20000), default=10000, show_default=True)
@click.option("--heartbeat", type=float, default=10.0, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".sim"))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/capacity.md"),
    show_default=True,
)
def capacity(
    first: int,
    step: int,
    max_nodes: int,
    heartbeat: float,
    duration: float,
    state_dir: Path,
    out: Path,
) -> None:
    """Step N up (steady + storm at each N) until an SLO breaks; write the capacity table."""
    from edgecloud.sim import reporting

    rows = []
    n = first
    while n <= max_nodes:
        base = dict(
            state_dir=state_dir,
            nodes=n,
            heartbeat=heartbeat,
            workers=max(2, math.ceil(n / 2500)),
            sources=max(1, math.ceil(n / 10000) + 1),
            duration=duration,
            timeout=120.0,
        )
        steady = asyncio.run(_run("steady", [_options(**base)], quiet=True))[0]
        storm = asyncio.run(_run("storm", [_options(**base)], quiet=True))[0]
        row = _capacity_row(n, steady, storm)
        rows.append(row)
        click.echo(row)
        if row["slo_broken"]:
            break
        n += step
    _write_capacity(out, rows, reporting.machine(), heartbeat)
    click.echo(f"capacity table written to {out}")


def _capacity_row(n: int, steady: dict[str, Any], storm: dict[str, Any]) -> dict[str, Any]:
    p99 = steady["api"]["p99_s"] or 0.0
    storm_p99 = storm["api"]["p99_s"] or 0.0
    broken = []
    if p99 > SLO_API_P99 or storm_p99 > SLO_API_P99:
        broken.append("API p99")
    if steady.get("hb_late", 0):
        broken.append("heartbeats late")
    if storm["recovery_s"] is None or storm["recovery_s"] > SLO_STORM_RECOVERY:
        broken.append("storm recovery")
    return {
        "nodes": n,
        "api_p99_steady_s": p99,
        "api_p99_storm_s": storm_p99,
        "storm_recovery_s": storm["recovery_s"],
        "hb_late": steady.get("hb_late", 0),
        "cpu_pct_steady": steady.get("controller_cpu_pct_mean"),
        "cpu_pct_storm_max": storm.get("controller_cpu_pct_max"),
        "rss_mib": max(
            steady.get("controller_rss_mib_max") or 0, storm.get("controller_rss_mib_max") or 0
        ),
        "slo_broken": ", ".join(broken),
    }


def _write_capacity(
    out: Path, rows: list[dict[str, Any]], machine: dict[str, Any], heartbeat: float
) -> None:
    lines = [
        "# Capacity: compute nodes per controller",
        "",
        "Generated by `edgecloud capacity`. SLOs: API p99 under 1 s (steady and during a storm), "
        f"every heartbeat processed within its interval ({heartbeat:g} s), storm recovery "
        "within 60 s.",
        "",
        f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}, "
        f"Python {machine['python']} (controller, simulator workers and load share the cores).",
        "",
        "| nodes | API p99 steady (s) | API p99 storm (s) | storm recovery (s) | late heartbeats "
        "| controller CPU steady (%) | controller CPU storm max (%) | controller RSS (MiB) | SLO broken |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['nodes']} | {r['api_p99_steady_s']:.3f} | {r['api_p99_storm_s']:.3f} | "
            f"{'-' if r['storm_recovery_s'] is None else format(r['storm_recovery_s'], '.1f')} | "
            f"{r['hb_late']} | {r['cpu_pct_steady'] or 0:.0f} | {r['cpu_pct_storm_max'] or 0:.0f} | "
            f"{r['rss_mib']:.0f} | {r['slo_broken'] or 'none'} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def register(cli: click.Group) -> None:
    cli.add_command(sim)
    cli.add_command(capacity)
